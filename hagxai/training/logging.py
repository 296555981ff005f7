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
import re
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

    def finish(
        self,
        summary: dict,
        plots: list[Path],
        combiners: dict[str, Path] | None = None,
        overlays: list[Path] | None = None,
    ) -> None:
        """Log the summary, the plots, the combiners and the overlays, and close the W&B run.

        Args:
            summary: the run's summary (``hagxai.training.run.summarise``): its learned-head
                means go to the run summary, its per-fold and per-method rows to a table.
            plots: image files logged under their stem.
            combiners: artifact name -> exported combiner folder; each is logged as a W&B
                artifact of type ``combiner`` holding the folder (card and tensors), with the
                card's model, layers and metrics as metadata.
            overlays: held-out images with the learned map over them, logged as images.
        """
        if self.wandb is None:
            return
        import wandb

        self.wandb.summary.update(summary.get("mean", {}))
        table = wandb.Table(columns=summary_columns(), data=summary_rows(summary))
        self.wandb.log({"summary": table, **{p.stem: wandb.Image(str(p)) for p in plots}})
        if overlays:
            images = [wandb.Image(str(p), caption=p.stem) for p in overlays]
            self.wandb.log({"held_out_overlays": images})
        for name, folder in (combiners or {}).items():
            # W&B allows letters, digits, '-', '_' and '.' in artifact names.
            safe = re.sub(r"[^\w.-]", "-", name)
            artifact = wandb.Artifact(safe, type="combiner", metadata=_card_metadata(folder))
            artifact.add_dir(str(folder))
            self.wandb.log_artifact(artifact)
        self.wandb.finish()


def summary_columns() -> list[str]:
    """Columns of the W&B summary table: the row's name, then every metric."""
    return ["row", *NAMES]


def summary_rows(summary: dict) -> list[list[Any]]:
    """Per fold the best epoch's metrics, then each method's mean over folds (``None`` where a
    value is missing or not finite)."""
    rows = []
    for fold in summary.get("folds", []):
        label = f"fold {fold['fold']} (epoch {fold['best_epoch']})"
        rows.append([label, *(_clean(fold["best"].get(k)) for k in NAMES)])
    for method, stats in summary.get("methods", {}).items():
        rows.append([f"{method} mean", *(_clean(stats[k]["mean"]) for k in NAMES)])
    return rows


def _card_metadata(folder: Path) -> dict[str, Any]:
    card = json.loads((folder / "combiner.json").read_text())
    return {key: card.get(key) for key in ("model", "layers", "input_size", "metrics")}


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
