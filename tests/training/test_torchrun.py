"""``torchrun --nproc_per_node=2`` (gloo, CPU) on a tiny demo run: the evidence extracted by both
ranks, the metrics of one process, one run folder, and a SIGKILL-ed distributed run that resumes to
the uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hagxai.config import load_config, save_config
from hagxai.training import train
from hagxai.training.checkpoint import CHECKPOINT, load_checkpoint
from hagxai.training.run import build_model_and_data
from tests.training.test_training import REPO
from tests.training.test_training import TINY as TRAINING_TINY

# the training tests' tiny demo run, shortened, with a baseline row (later overrides win); its
# batches of 8 images fall into groups of 3, 3 and 2: rank 0 takes two groups, rank 1 one
TINY = [*TRAINING_TINY, "train.epochs=2", "train.baselines=[gradcam]", "train.grad_group=3"]
# Each step's gradient is the sum of its groups' gradients in batch order, however many processes
# share the groups (README, "Many processes: torchrun"), so the two runs agree; measured bit for
# bit here, the bound leaves room for kernels whose bits change with the thread count.
METRIC_TOLERANCE = 1e-5

# Training whose optimiser steps sleep, so a kill soon after a checkpoint lands mid-epoch.
_SLOW_TRAIN = """
import sys, time
from hagxai import distributed
from hagxai.config import load_config
from hagxai.training import train
cfg = load_config(sys.argv[1], sys.argv[2:])
distributed.init(cfg.device)
train(cfg, progress=False, on_step=lambda: time.sleep(0.3))
distributed.shutdown()
"""


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.Popen(
        [*command, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # one process group: the launcher and its workers die together
    )


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _pairs(first: Path, second: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    a, b = _combiners(first), _combiners(second)
    assert a.keys() == b.keys()
    return [(a[key], b[key]) for key in a]


def _combiners(run: Path) -> dict[str, torch.Tensor]:
    out = {}
    for fold in sorted(run.glob("fold_*")):
        for key, value in load_file(fold / "combiner" / "combiner.safetensors").items():
            out[f"{fold.name}/{key}"] = value
    return out


@pytest.mark.slow
def test_two_processes_match_one_and_a_killed_run_resumes(tmp_path):
    cfg = load_config(
        REPO / "configs" / "demo_classifier.yaml",
        [*TINY, f"cache_dir={tmp_path / 'cache'}", f"output_dir={tmp_path / 'runs'}"],
    )
    adapter, dataset = build_model_and_data(cfg, progress=False)  # demo data and model, cached
    started = time.monotonic()
    one = train(
        cfg.model_copy(update={"name": "one"}), progress=False, adapter=adapter, dataset=dataset
    )
    print(f"one process: {time.monotonic() - started:.1f} s")
    # the two processes extract the evidence again, each shard on one rank
    shutil.rmtree(tmp_path / "cache" / "evidence")
    config = save_config(cfg, tmp_path / "tiny.yaml")
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    args = ["train.py", "-c", str(config), "--no-progress"]
    started = time.monotonic()
    two = _torchrun([*args, "name=two"], env)
    assert two.wait(timeout=600) == 0, two.stderr.read().decode()[-3000:]
    print(f"two processes (evidence extracted again): {time.monotonic() - started:.1f} s")

    runs = tmp_path / "runs"
    rows_one, rows_two = _rows(runs / "one"), _rows(runs / "two")
    assert [(r["fold"], r["epoch"]) for r in rows_two] == [
        (r["fold"], r["epoch"]) for r in rows_one
    ]
    worst: dict[str, float] = {}
    for a, b in zip(rows_one, rows_two):
        for key, value in a.items():
            if isinstance(value, float):
                where = (a["fold"], a["epoch"], key)
                assert b[key] == pytest.approx(value, abs=METRIC_TOLERANCE, nan_ok=True), where
                if value == value:
                    worst[key] = max(worst.get(key, 0.0), abs(b[key] - value))
    print("largest |two processes - one| per column:", worst)
    # the learned values too: before the groups, act_pos and grad_amp ended 0.13 apart
    apart = max(float((a - b).abs().max()) for a, b in _pairs(runs / "one", runs / "two"))
    print("largest |two processes - one| of a learned value:", apart)
    assert apart <= METRIC_TOLERANCE
    summary = json.loads((runs / "two" / "summary.json").read_text())
    assert summary["images"] == one["images"] and summary["best_fold"] == one["best_fold"]
    assert json.loads((runs / "two" / "folds.json").read_text()) == json.loads(
        (runs / "one" / "folds.json").read_text()
    )
    assert (runs / "two" / "best" / "combiner.safetensors").is_file()

    script = tmp_path / "slow_train.py"
    script.write_text(_SLOW_TRAIN)
    killed = _torchrun([str(script), str(config), "name=killed"], env)
    checkpoint = runs / "killed" / CHECKPOINT
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and killed.poll() is None:
        try:
            if load_checkpoint(checkpoint)[1]["epoch"] >= 1:
                break
        except Exception:  # not written yet
            pass
        time.sleep(0.05)
    time.sleep(0.4)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    state = load_checkpoint(checkpoint)[1]
    assert (state["fold"], state["epoch"]) == (0, 1), "the kill must land in fold 0, epoch 2"

    resumed = _torchrun([*args[:1], "--resume", str(runs / "killed"), "--no-progress"], env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-3000:]
    assert (runs / "killed" / "metrics.jsonl").read_text() == (
        runs / "two" / "metrics.jsonl"
    ).read_text()
    expected, got = _combiners(runs / "two"), _combiners(runs / "killed")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
