"""``hagxai.distributed`` in one process (every helper a no-op), its arithmetic of shares, and
the gathering of shared-out rows between two gloo processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hagxai import distributed
from hagxai.errors import UserError


@pytest.mark.parametrize(("n", "world"), [(0, 2), (1, 2), (7, 3), (24, 2), (5, 8)])
def test_shares_cover_each_item_once_in_order(n, world):
    shares = [distributed.shard_range(n, r, world) for r in range(world)]
    assert [i for share in shares for i in share] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_one_process_is_rank_zero_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard([3, 4, 5]) == [3, 4, 5]
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.gather_objects(2) == [2]
    assert distributed.all_gather_list([1, 2]) == [1, 2]
    assert distributed.broadcast_object("x") == "x"
    grads = [torch.ones(2)]
    distributed.all_reduce_sum_(grads)
    assert grads[0].tolist() == [1.0, 1.0]
    rows = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_shards(rows, 3) is rows
    with pytest.raises(ValueError, match=r"rows 0\.\.4 of 4"):
        distributed.all_gather_shards(rows, 4)
    distributed.barrier()
    with distributed.main_first():
        pass
    assert distributed.init("cuda:3") == "cuda:3"  # not launched: nothing changes


def test_torchrun_ranks_get_their_own_gpu_and_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.device_for("cpu") == "cpu"
    assert distributed.device_for("cuda:0") == "cuda:1"
    assert distributed.device_for("cuda") == "cuda:1"
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match=r"MASTER_ADDR.*torchrun"):
        distributed.init("cpu")


def _gather_rows(rank: int, world: int, port: int, out: str) -> None:
    """One rank of :func:`test_two_processes_gather_their_rows_in_order`: for several ``n``, its
    rows ``(i, rank)`` of its share of ``range(n)``, gathered and saved."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    distributed.init("cpu")
    results = {}
    for n in (5, 1, 4):
        share = distributed.shard_range(n)
        local = torch.tensor([[float(i), float(rank)] for i in share]).view(len(share), 2)
        results[n] = distributed.all_gather_shards(local, n)
    torch.save(results, Path(out) / f"{rank}.pt")
    distributed.shutdown()


@pytest.mark.slow
def test_two_processes_gather_their_rows_in_order(tmp_path, monkeypatch):
    # The spawned processes unpickle ``tests.test_distributed._gather_rows`` by name, with this
    # process's sys.path (multiprocessing copies it); pytest's importlib mode left the
    # repository root off it.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mp.spawn(_gather_rows, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        results = torch.load(tmp_path / f"{rank}.pt")
        for n, gathered in results.items():
            owner = [r for r in (0, 1) for _ in distributed.shard_range(n, r, 2)]
            assert gathered.tolist() == [[float(i), float(owner[i])] for i in range(n)], n
