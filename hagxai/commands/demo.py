"""``hagxai demo``: the main job on the embedded default (synthetic data, locally trained models).

For each demo config it makes (or reuses) the demo set, trains (or reuses) the demo model, checks
the model against its quality bar and writes a run folder with the resolved config and a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hagxai.config import load_config, save_config
from hagxai.data.demo import demo_dataset
from hagxai.data.format import HumanAttentionDataset
from hagxai.errors import ConfigError
from hagxai.models.demo import demo_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIGS = ("demo_classifier.yaml", "demo_detector.yaml")
# The bars the demo models must clear on their validation split.
QUALITY_BARS = {"classification": ("val_accuracy", 0.90), "detection": ("val_map50", 0.80)}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="run the main job on the embedded demo sets")
    parser.add_argument(
        "--config",
        "-c",
        action="append",
        type=Path,
        help="demo config(s); default: configs/demo_classifier.yaml and demo_detector.yaml",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="overrides applied to every config"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    console = Console()
    paths = args.config or [CONFIG_DIR / name for name in DEFAULT_CONFIGS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"demo config {missing[0]} not found; pass --config FILE")
    configs = [load_config(path, args.overrides) for path in paths]
    summary = Table(title="hagxai demo")
    for column in ("task", "data", "model", "quality", "bar", "run folder"):
        summary.add_column(column, overflow="fold")
    failed = 0
    for cfg in configs:
        started = time.perf_counter()
        console.rule(f"{cfg.name}: {cfg.data.task}")
        data_root = demo_dataset(cfg)
        data = HumanAttentionDataset(data_root)
        consistency = data.manifest["observer"]["consistency"]["val"]
        console.print(
            f"data: {data_root}\n  {len(data)} images, simulated observer with "
            f"{cfg.data.observer.viewers} viewers; leave-one-viewer-out CC "
            f"{consistency['loo_cc']:.3f} (another image's map: {consistency['shuffled_cc']:.3f})"
        )
        model = demo_model(cfg, data_root)
        metric, bar = QUALITY_BARS[cfg.data.task]
        value = model.card[metric]
        passed = value >= bar
        failed += not passed
        console.print(f"model: {model.path}\n  {metric} = {value:.3f} (bar {bar:.2f})")
        run_dir = cfg.run_dir
        save_config(cfg, run_dir / "config.yaml")
        record = {
            "task": cfg.data.task,
            "data": str(data_root),
            "data_fingerprint": data.fingerprint,
            "observer_consistency": data.manifest["observer"]["consistency"],
            "model": str(model.path),
            metric: value,
            "bar": bar,
            "passed": passed,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (run_dir / "demo_summary.json").write_text(json.dumps(record, indent=1) + "\n")
        verdict = "[green]ok[/green]" if passed else "[red]below bar[/red]"
        summary.add_row(
            cfg.data.task,
            str(data_root),
            str(model.path),
            f"{metric} {value:.3f}",
            f"{bar:.2f} {verdict}",
            str(run_dir),
        )
    console.print(summary)
    console.print(
        "Training combiners on these sets is not built yet: the demo prepares data and models."
    )
    return 1 if failed else 0
