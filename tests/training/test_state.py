"""The typed run state round-trips through the checkpoint's JSON and flat tensor names."""

from __future__ import annotations

import json

import torch

from hagxai.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from hagxai.training.state import Best, FoldTensors, RunState


def test_run_state_round_trips_through_the_checkpoint(tmp_path):
    state = RunState(fold=1, epoch=3, history=[{"fold": 1, "epoch": 3, "cc": 0.5}])
    state.best = Best(epoch=2, score=0.25, metrics={"val_loss": 0.25})
    state.bad_epochs, state.initial, state.optimizer = 1, {"cc": 0.4}, {"param_groups": []}
    tensors = FoldTensors(
        model={"a": torch.arange(3.0)},
        best={"a": torch.zeros(3)},
        optimizer={"optim/0/step": torch.tensor(4.0)},
        rng=torch.get_rng_state(),
    )
    save_checkpoint(tmp_path / CHECKPOINT, tensors.flat(), state.to_json())
    flat, saved = load_checkpoint(tmp_path / CHECKPOINT)
    # the file format: flat names and plain JSON, readable without hagxai's classes
    assert set(flat) == {"model/a", "best/a", "optim/0/step", "rng/torch"}
    assert json.loads(json.dumps(saved))["best"] == {
        "epoch": 2,
        "score": 0.25,
        "metrics": {"val_loss": 0.25},
    }
    assert RunState.from_json(saved) == state
    back = FoldTensors.from_flat(flat)
    assert torch.equal(back.model["a"], torch.arange(3.0)) and torch.equal(back.rng, tensors.rng)
    assert set(back.optimizer) == {"optim/0/step"} and set(back.best) == {"a"}


def test_start_fold_resets_only_the_fold():
    state = RunState(fold=0, epoch=5, bad_epochs=2, stopped=True, history=[{"epoch": 5}])
    state.best = Best(1, 0.1, {})
    state.start_fold(1)
    assert (state.fold, state.epoch, state.best, state.bad_epochs, state.stopped) == (
        1,
        -1,
        None,
        0,
        False,
    )
    assert state.history == [{"epoch": 5}] and not state.in_progress
