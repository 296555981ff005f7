"""Sweeps: one training run per (layer set, combiner setting, training setting) of ``cfg.sweep``,
same folds.

``runs/<name>/`` holds one run folder per combination (``00``, ``01``, …, each a full
:func:`~hagxai.training.train` run) and ``sweep.md`` / ``sweep.json``: per combination the learned
head's plausibility and faithfulness (mean ± std over folds), its worst validation-CC drop, and
the hand-made baselines (``train.baselines``) of each layer set on the same held-out images.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hagxai.config import CombinerConfig, RunConfig, TrainConfig
from hagxai.console import make_console
from hagxai.errors import UserError
from hagxai.training.metrics import NAMES
from hagxai.training.run import build_model_and_data, train


def combinations(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    """``(label, run config)`` of every layer set × combiner setting × training setting, in the
    sweep's order; each run goes to ``cfg.run_dir / "<nn>"``."""
    runs = []
    base = cfg.combiner.model_dump()
    base_train = cfg.train.model_dump()
    grid = product(cfg.sweep.layers, cfg.sweep.combiner, cfg.sweep.train)
    for number, (layers, setting, schedule) in enumerate(grid):
        run = cfg.model_copy(deep=True)
        run.model.layers = layers
        run.combiner = CombinerConfig.model_validate({**base, **setting})
        run.train = TrainConfig.model_validate({**base_train, **schedule})
        run.output_dir, run.name = cfg.run_dir, f"{number:02d}"
        shown = ", ".join(f"{k}={v}" for k, v in setting.items()) or "combiner as configured"
        label = f"layers {'default' if layers is None else '+'.join(layers)}; {shown}"
        if len(cfg.sweep.train) > 1 or schedule:
            trained = ", ".join(f"{k}={v}" for k, v in schedule.items())
            label += f"; {trained or 'train as configured'}"
        runs.append((label, run))
    return runs


def _cell(stats: dict[str, float]) -> str:
    mean, std = stats["mean"], stats["std"]
    return "–" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def sweep(
    cfg: RunConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train every combination of ``cfg.sweep`` with the same folds and tabulate them.

    Baseline rows are added once per layer set, from its first run (their maps depend on the
    layer set only).

    Returns:
        ``{"rows": [...]}`` (also in ``sweep.json``): per row its label, run folder, metric
        means and std over folds, and worst validation-CC drop.

    Raises:
        UserError: two runs whose folds differ (a layer set that skips other images).
    """
    console = console or make_console()
    quiet = Console(quiet=True)
    adapter, dataset = build_model_and_data(cfg, progress)
    rows: list[dict[str, Any]] = []
    folds: str | None = None
    baselines_done: set[str] = set()
    for label, run in combinations(cfg):
        console.print(f"sweep {cfg.name}: {run.name}: {label}")
        summary = train(
            run,
            overwrite=overwrite,
            progress=progress,
            console=quiet,
            adapter=adapter,
            dataset=dataset,
        )
        held = json.loads((run.run_dir / "folds.json").read_text())["folds"]
        text = json.dumps(held)
        if folds is not None and text != folds:
            raise UserError(
                f"{run.run_dir / 'folds.json'}: the folds differ from the sweep's first run "
                "(this layer set left out other images); the table would not compare like with like"
            )
        folds = text
        rows.append(
            {
                "row": f"learned: {label}",
                "run": str(run.run_dir),
                "metrics": summary["methods"]["learned"],
                "worst_cc_drop": summary["worst_cc_drop"],
            }
        )
        layers_key = json.dumps(run.model.layers)
        if layers_key not in baselines_done:
            baselines_done.add(layers_key)
            shown = "default" if run.model.layers is None else "+".join(run.model.layers)
            for name in run.train.baselines:
                rows.append(
                    {
                        "row": f"{name} @ layers {shown}",
                        "run": str(run.run_dir),
                        "metrics": summary["methods"][name],
                        "worst_cc_drop": None,
                    }
                )
    result = {"name": cfg.name, "rows": rows}
    out = Path(cfg.run_dir)
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "sweep.md").write_text(sweep_markdown(result))
    console.print(sweep_table(result))
    return result


def sweep_table(result: dict[str, Any]) -> Table:
    """A rich table: one row per combination and baseline, mean ± std over folds."""
    table = Table(title=f"sweep {result['name']}: held-out folds, mean ± std over folds")
    table.add_column("row")
    for key in NAMES:
        table.add_column(key, justify="right")
    table.add_column("worst CC drop", justify="right")
    for row in result["rows"]:
        drop = row["worst_cc_drop"]
        table.add_row(
            row["row"],
            *[_cell(row["metrics"][k]) for k in NAMES],
            "" if drop is None else f"{drop:.3f}",
        )
    return table


def sweep_markdown(result: dict[str, Any]) -> str:
    """The sweep's table as Markdown."""
    lines = [
        f"# sweep {result['name']}",
        "",
        "Held-out folds (the same for every row), mean ± std over folds.",
        "",
        "| row | " + " | ".join(NAMES) + " | worst CC drop |",
        "|---" * (len(NAMES) + 2) + "|",
    ]
    for row in result["rows"]:
        drop = row["worst_cc_drop"]
        cells = [_cell(row["metrics"][k]) for k in NAMES]
        cells.append("" if drop is None else f"{drop:.3f}")
        lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
