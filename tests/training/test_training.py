"""The trainer on a tiny demo set and a tiny random-init demo classifier (seconds, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hagxai.config import load_config, save_config
from hagxai.data import open_dataset
from hagxai.errors import ConfigError, UserError
from hagxai.training import learning_rate, train
from hagxai.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)
from hagxai.training.data import load_human_data
from hagxai.training.folds import make_folds
from hagxai.training.run import build_model_and_data, open_run_evidence, target_rule
from hagxai.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "device=cpu",
    "data.demo.num_train=40",
    "data.demo.num_val=24",
    "data.demo.image_size=64",
    "data.observer.viewers=3",
    "model.demo.epochs=1",
    "model.demo.width=8",
    "train.folds=2",
    "train.epochs=3",
    "train.batch_size=8",
    "train.splits=[val]",
    "train.faithfulness_images=3",
    "train.faithfulness_steps=4",
    "train.faithfulness_every=2",
    "wandb.mode=disabled",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny config with its own cache, and its (cached) adapter and dataset."""
    base = tmp_path_factory.mktemp("train")
    cfg = load_config(
        REPO / "configs" / "demo_classifier.yaml",
        [*TINY, f"cache_dir={base / 'cache'}", f"output_dir={base / 'runs'}"],
    )
    adapter, dataset = build_model_and_data(cfg, progress=False)
    return cfg, adapter, dataset


def test_learning_rate_falls_from_lr_to_lr_final_in_steps():
    rates = [learning_rate(e, 5e-2, 1e-2, 20, 120) for e in range(1, 121)]
    assert rates[0] == rates[19] == 5e-2
    assert rates[20] < rates[19]
    assert rates[100] == pytest.approx(1e-2) and rates[-1] == pytest.approx(1e-2)
    assert len(set(rates)) == 6
    assert learning_rate(3, 5e-2, 1e-2, 20, 10) == 5e-2


def test_folds_are_seeded_disjoint_and_cover():
    ids = [f"s{i}" for i in range(11)]
    folds = make_folds(ids, 3, seed=1)
    assert folds == make_folds(list(reversed(ids)), 3, seed=1)
    assert sorted(i for f in folds for i in f) == sorted(ids)
    assert sorted(len(f) for f in folds) == [3, 4, 4]
    assert folds != make_folds(ids, 3, seed=2)
    with pytest.raises(UserError):
        make_folds(ids[:2], 3, seed=0)


def test_checkpoint_round_trips_adam_without_pickle(tmp_path):
    weight = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.Adam([weight], lr=0.1)
    weight.sum().backward()
    optimizer.step()
    tensors, meta = optimizer_tensors(optimizer)
    save_checkpoint(tmp_path / CHECKPOINT, tensors, {"optimizer": meta, "x": [1, 2]})
    loaded, state = load_checkpoint(tmp_path / CHECKPOINT)
    other = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=0.5)
    restore_optimizer(other, loaded, state["optimizer"])
    assert state["x"] == [1, 2]
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(other.state_dict()["state"][0][key], value)
    assert other.param_groups[0]["lr"] == 0.1


def test_bad_select_metric_stops_before_any_work(tiny, tmp_path):
    cfg = tiny[0].model_copy(deep=True)
    cfg.train.select_metric = "accuracy"
    cfg.output_dir = tmp_path
    with pytest.raises(ConfigError, match="select_metric"):
        train(cfg, progress=False)
    assert not (tmp_path / cfg.name).exists()


def test_run_writes_outputs_and_skips_bad_samples(tiny, tmp_path):
    cfg, adapter, dataset = tiny
    root = tmp_path / "data"
    shutil.copytree(dataset.root, root)
    copy = open_dataset(root, "hagxai")
    val = copy.split("val")
    val[0].image_path.write_bytes(b"not an image")
    np.save(val[1].map_path, np.full((64, 64), np.nan, np.float32))
    cfg = cfg.model_copy(deep=True)
    cfg.output_dir = tmp_path / "runs"
    cfg.train.baselines = ["gradcam"]
    summary = train(cfg, progress=False, adapter=adapter, dataset=open_dataset(root, "hagxai"))
    run = cfg.run_dir
    assert summary["skipped"] == 2
    assert set(summary["skipped_samples"]) == {val[0].id, val[1].id}
    assert summary["images"] == len(val) - 2
    for name in ("config.yaml", "folds.json", "metrics.csv", "summary.json", "summary.md"):
        assert (run / name).is_file(), name
    for name in ("fold_0", "fold_1"):
        assert (run / name / "combiner" / "combiner.safetensors").is_file()
    assert (run / "best" / "combiner.json").is_file()
    assert (run / "plots" / "training_curves.png").is_file()
    assert (run / "plots" / "learned_functions.png").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["fold"], r["epoch"]) for r in rows] == [(f, e) for f in (0, 1) for e in range(4)]
    assert rows[0]["deletion"] is not None and rows[1].get("deletion") is None
    for fold in summary["folds"]:
        assert {"cc", "nss", "auc_judd", "kld", "sim", "deletion", "insertion"} <= set(fold["best"])
        assert "cc" in fold["initial"] and "cc" in fold["baselines"]["gradcam"]
    assert set(summary["methods"]) == {"learned", "initial", "gradcam"}
    # the exported epoch of each fold is the best by select_metric in the logged history
    select = cfg.train.select_metric
    assert select == "val_loss"  # lower is better; ties keep the earlier epoch
    for fold in summary["folds"]:
        history = [r for r in rows if r["fold"] == fold["fold"]]
        values = [r[select] for r in history]
        chosen = history[values.index(min(values))]
        assert fold["best_epoch"] == chosen["epoch"]
        for key in ("val_loss", "cc", "nss", "auc_judd", "kld", "sim"):
            assert fold["best"][key] == pytest.approx(chosen[key], rel=1e-6), key
        assert fold["initial"]["val_loss"] == pytest.approx(history[0]["val_loss"], rel=1e-6)
    best = [fold["best"][select] for fold in summary["folds"]]
    assert summary["best_fold"] == best.index(min(best))
    card = json.loads((run / "best" / "combiner.json").read_text())
    assert f"fold {summary['best_fold']}," in card["provenance"]
    with pytest.raises(UserError, match="already holds a run"):
        train(cfg, progress=False, adapter=adapter, dataset=open_dataset(root, "hagxai"))


def test_a_step_gradient_is_the_sum_of_its_groups_gradients(tiny, tmp_path):
    cfg, adapter, dataset = tiny
    samples = [s for s in dataset.samples if s.split == "val"]
    rule = target_rule(cfg, adapter, dataset.class_subset)
    cache = open_run_evidence(cfg, adapter, samples, rule=rule, progress=False)
    human = load_human_data(cache, samples)
    cpu = torch.device("cpu")
    trainer = Trainer(cfg, adapter, cache, human, [human.keep], None, tmp_path, cpu, progress=False)
    combiner = trainer._build_combiner()
    params = list(combiner.parameters())
    batch = human.keep[:8]
    loss = trainer._combiner_loss(combiner, batch)
    grads = torch.autograd.grad(loss, params)
    whole = torch.cat([*(g.reshape(-1) for g in grads), loss.detach().reshape(1)])
    # the loss on the combiner's grid (the default) is the loss of the full-size maps
    full = trainer._loss(trainer._maps(lambda e, s: combiner(e, s, validate=False), batch), batch)
    trainer.train = trainer.train.model_copy(update={"grid_loss": False})
    assert torch.equal(trainer._combiner_loss(combiner, batch), full)
    trainer.train = trainer.train.model_copy(update={"grid_loss": True})
    assert float(abs(loss.detach() - full.detach())) < 1e-6
    full_flat = torch.cat([g.reshape(-1) for g in torch.autograd.grad(full, params)])
    # map_amp's gradient nearly cancels (rounding noise on either path): an absolute bound
    torch.testing.assert_close(
        whole[:-1], full_flat, rtol=1e-4, atol=1e-5 * float(full_flat.abs().max())
    )
    # one group is the one-pass step exactly; groups of 3, 3 and 2 images, each weighted as its
    # share of the batch mean, add up to it (up to float order)
    assert torch.equal(trainer._group_gradient(combiner, params, batch, len(batch)), whole)
    parts = [trainer._group_gradient(combiner, params, batch[i : i + 3], 8) for i in (0, 3, 6)]
    scale = float(whole.abs().max())  # map_amp's gradient nearly cancels: absolute bound
    torch.testing.assert_close(parts[0] + parts[1] + parts[2], whole, rtol=1e-5, atol=1e-6 * scale)
    assert not torch.allclose(parts[0], whole, rtol=0.1)  # a part alone is not the whole


def _final_tensors(run: Path) -> dict[str, torch.Tensor]:
    out = {}
    for fold in sorted(run.glob("fold_*")):
        for key, value in load_file(fold / "combiner" / "combiner.safetensors").items():
            out[f"{fold.name}/{key}"] = value
    out.update(load_checkpoint(run / CHECKPOINT)[0])
    return out


def _hagxai(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hagxai", "train", *args, "--no-progress"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# ``hagxai train`` whose optimiser steps each sleep, through the trainer's step callback, so a
# kill shortly after epoch 2's checkpoint lands mid-epoch 3.
_SLOW_TRAIN = """
import sys, time
from hagxai.config import load_config
from hagxai.training import train
train(load_config(sys.argv[1], sys.argv[2:]), progress=False, on_step=lambda: time.sleep(0.3))
"""


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tiny, tmp_path):
    cfg = tiny[0].model_copy(deep=True)
    cfg.output_dir = tmp_path
    cfg.train.epochs = 4
    config = save_config(cfg, tmp_path / "tiny.yaml")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    straight = _hagxai(["-c", str(config), "name=straight"], env)
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()

    killed = subprocess.Popen(
        [sys.executable, "-c", _SLOW_TRAIN, str(config), "name=killed"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if checkpoint.exists() and load_checkpoint(checkpoint)[1]["epoch"] >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.4)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    state = load_checkpoint(checkpoint)[1]
    assert (state["fold"], state["epoch"]) == (0, 2), "the kill must land in fold 0, epoch 3"

    resumed = _hagxai(["--resume", str(tmp_path / "killed")], env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    expected = _final_tensors(tmp_path / "straight")
    got = _final_tensors(tmp_path / "killed")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    straight_rows = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert (tmp_path / "killed" / "metrics.jsonl").read_text() == straight_rows
