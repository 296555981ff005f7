"""``hagxai demo``: the main job on the embedded default (synthetic data, locally trained models).

For each demo config it makes (or reuses) the demo set, trains (or reuses) the demo model, checks
the model against its quality bar, then trains HAG-XAI combiners by k-fold cross-validation
(``train`` section of the config) and prints, per model, the learned head's held-out CC and
deletion / insertion AUC next to its initial values (FullGrad-CAM++ with smoothing), FullGrad-CAM++
and Grad-CAM on the same held-out images. The run folder holds everything ``hagxai train`` writes.
Each model ends with ``hagxai evaluate`` on the run (the config's ``evaluate`` section; the learned
head is the run folder unless ``evaluate.learned`` names one): its table and the path of its
``report.html`` (``runs/<name>/evaluation/``) are printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from hagxai.atomic import write_atomic
from hagxai.config import load_config
from hagxai.console import make_console
from hagxai.data import open_dataset
from hagxai.data.demo import demo_dataset
from hagxai.errors import ConfigError
from hagxai.models.demo import demo_adapter, demo_model
from hagxai.report.evaluate import evaluate, output_folder
from hagxai.training import train
from hagxai.training.run import target_rule

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
    console = make_console()
    paths = args.config or [CONFIG_DIR / name for name in DEFAULT_CONFIGS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"demo config {missing[0]} not found; pass --config FILE")
    configs = [load_config(path, args.overrides) for path in paths]
    summary = Table(title="hagxai demo")
    heads = Table(title="held-out explanations (mean over folds)")
    for column in ("model", "method", "CC", "deletion AUC ↓", "insertion AUC ↑"):
        heads.add_column(column, justify="right" if " " in column or column == "CC" else "left")
    # Data and model paths are printed in each task's section; the table keeps to one line a task.
    for column in ("task", "quality", "bar", "run folder"):
        summary.add_column(column, overflow="fold")
    failed = 0
    reports = []
    for cfg in configs:
        started = time.perf_counter()
        console.rule(f"{cfg.name}: {cfg.data.task}")
        data_root = demo_dataset(cfg)
        data = open_dataset(data_root, "hagxai")
        consistency = data.metadata["observer"]["consistency"]["val"]
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
        adapter = demo_adapter(cfg, data_root, trained=model)
        trained = train(cfg, overwrite=True, console=console, adapter=adapter, dataset=data)
        methods = trained["methods"]
        for label, key in [
            ("learned", "learned"),
            ("initial (FullGrad-CAM++ smoothed)", "initial"),
        ]:
            _add_head_row(heads, cfg.data.task, label, methods[key])
        for key in cfg.train.baselines:
            _add_head_row(heads, cfg.data.task, key, methods[key])
        if not cfg.evaluate.learned:
            cfg.evaluate.learned = [run_dir]
        evaluation = evaluate(
            cfg,
            adapter,
            data,
            target_rule(cfg, adapter, data.class_subset),
            command=f"hagxai demo ({cfg.name})",
            console=console,
        )
        reports.append(output_folder(cfg) / "report.html")
        record = {
            "task": cfg.data.task,
            "data": str(data_root),
            "data_fingerprint": data.fingerprint,
            "observer_consistency": data.metadata["observer"]["consistency"],
            "model": str(model.path),
            metric: value,
            "bar": bar,
            "passed": passed,
            "train": {k: trained[k] for k in ("methods", "images", "skipped", "best_fold")},
            "evaluation": str(output_folder(cfg)),
            "evaluation_timing": evaluation["timing"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_atomic(run_dir / "demo_summary.json", (json.dumps(record, indent=1) + "\n").encode())
        verdict = "[green]ok[/green]" if passed else "[red]below bar[/red]"
        summary.add_row(
            cfg.data.task,
            f"{metric} {value:.3f}",
            f"{bar:.2f} {verdict}",
            str(run_dir),
        )
    console.print(summary)
    console.print(heads)
    for report in reports:
        console.print(f"evaluation report: {report}")
    return 1 if failed else 0


def _add_head_row(table: Table, task: str, method: str, stats: dict) -> None:
    def cell(key: str) -> str:
        mean, std = stats[key]["mean"], stats[key]["std"]
        return "–" if mean != mean else f"{mean:.3f} ± {std:.3f}"

    table.add_row(task, method, cell("cc"), cell("deletion"), cell("insertion"))
