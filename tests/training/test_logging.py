"""W&B logging of a finished run, offline: combiners as artifacts, the summary as a table,
held-out overlays as images (read back from the offline run's folder, no network)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import wandb
from PIL import Image

from hagxai.combiner import HAGCombiner
from hagxai.config import load_config
from hagxai.export import save_combiner
from hagxai.training.logging import RunLog, summary_columns, summary_rows
from hagxai.training.metrics import NAMES


def _summary() -> dict:
    best = {name: 0.5 for name in NAMES}
    stats = {name: {"mean": 0.5, "std": 0.0} for name in NAMES}
    return {
        "folds": [{"fold": 0, "best_epoch": 3, "best": best}],
        "methods": {"learned": stats, "initial": stats},
        "mean": {name: 0.5 for name in NAMES},
    }


def test_summary_rows_match_columns() -> None:
    rows = summary_rows(_summary())
    assert [r[0] for r in rows] == ["fold 0 (epoch 3)", "learned mean", "initial mean"]
    assert all(len(r) == len(summary_columns()) for r in rows)


@pytest.mark.slow
def test_finish_logs_artifacts_table_and_overlays(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(None, ["name=logtest", f"output_dir={tmp_path}"])
    combiner = save_combiner(HAGCombiner(), run_dir / "fold_0" / "combiner", model_name="m")
    picture = run_dir / "sample_7.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(picture)
    log = RunLog(cfg, run_dir)
    log.epoch({"fold": 0, "epoch": 1, "lr": 0.05, "train_loss": 1.0})
    log.finish(_summary(), [picture], {"logtest fold0": combiner}, [picture])

    (offline,) = run_dir.glob("wandb/offline-run-*")
    table = json.loads(next(offline.glob("files/media/table/summary_*.table.json")).read_text())
    assert table["columns"] == summary_columns()
    assert [row[0] for row in table["data"]] == ["fold 0 (epoch 3)", "learned mean", "initial mean"]
    images = {p.name.split("_")[0] for p in offline.glob("files/media/images/*.png")}
    assert images == {"sample", "held"}  # the plot and the overlay
    # The artifact record (name, type, manifest of the folder's files) sits in the run's
    # transaction log, which W&B syncs later; its strings are stored as they are.
    # wandb.finish() returns before W&B's service process has flushed that log (CI once read
    # just its 7-byte header), so shut the service down, then wait briefly for the bytes.
    wandb.teardown()
    wanted = [t.encode() for t in ("logtest-fold0", "combiner.safetensors", "combiner.json")]
    deadline = time.monotonic() + 60
    while True:
        log = next(offline.glob("run-*.wandb")).read_bytes()
        if all(t in log for t in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for text in wanted:
        assert text in log
