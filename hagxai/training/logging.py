"""Per-epoch metrics to CSV and JSON lines in the run folder, and to Weights & Biases.

W&B's mode comes from ``wandb.mode`` (``offline`` by default): it is written to ``WANDB_MODE``
before ``wandb.init``, because only the environment variable stops every network attempt in
offline mode (ENVIRONMENT.md). An existing ``WANDB_MODE=disabled`` (the tests) wins. W&B files go
to ``<run>/wandb``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from hagxai.config import RunConfig
from hagxai.training.metrics import NAMES

COLUMNS = ["fold", "epoch", "lr", "train_loss", *NAMES]
"""``metrics.csv``'s columns: the row's place and schedule, then every training metric."""


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RunLog:
    """Writes metric rows to ``metrics.csv`` / ``metrics.jsonl`` and to W&B.

    Args:
        cfg: the run's config.
        run_dir: the run folder.
        history: rows already logged (a resumed run rewrites the files from its checkpoint, so
            rows of an epoch that was cut off never appear twice).
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, history: list[dict] | None = None) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self.jsonl_path = run_dir / "metrics.jsonl"
        with self.csv_path.open("w", newline="") as handle:
            csv.writer(handle).writerow(COLUMNS)
        self.jsonl_path.write_text("")
        for row in history or []:
            self._write(row)
        self.wandb = _start_wandb(cfg, run_dir)

    def _write(self, row: dict) -> None:
        with self.csv_path.open("a", newline="") as handle:
            csv.writer(handle).writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
        with self.jsonl_path.open("a") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def epoch(self, row: dict) -> None:
        """Log one epoch's row."""
        self._write(row)
        if self.wandb is not None:
            fold = row["fold"]
            values = {f"fold{fold}/{k}": v for k, v in row.items() if k not in ("fold",)}
            self.wandb.log({k: v for k, v in values.items() if _clean(v) is not None})

    def finish(self, summary: dict, plots: list[Path]) -> None:
        """Log the summary and the plots, and close the W&B run."""
        if self.wandb is None:
            return
        import wandb

        self.wandb.summary.update(summary.get("mean", {}))
        self.wandb.log({p.stem: wandb.Image(str(p)) for p in plots})
        self.wandb.finish()


def _start_wandb(cfg: RunConfig, run_dir: Path):
    if os.environ.get("WANDB_MODE") != "disabled":
        os.environ["WANDB_MODE"] = cfg.wandb.mode
    if os.environ["WANDB_MODE"] == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        warnings.warn("wandb is not installed; metrics go to the run folder only", stacklevel=2)
        return None
    folder = run_dir / "wandb"
    folder.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        name=cfg.name,
        dir=str(run_dir),
        config=cfg.model_dump(mode="json"),
        mode=os.environ["WANDB_MODE"],
        reinit=True,
    )
