"""``hagxai.distributed`` in one process (every helper a no-op) and its arithmetic of shares."""

from __future__ import annotations

import pytest
import torch

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
