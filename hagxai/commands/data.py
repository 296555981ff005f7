"""``hagxai data make|check``: write a demo set, or check a dataset folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from hagxai.commands._common import add_config_arguments, config_from_args
from hagxai.console import make_console
from hagxai.data.check import check_dataset
from hagxai.data.demo import demo_dataset, make_demo_dataset
from hagxai.data.open import FORMATS
from hagxai.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="make the demo dataset or check a dataset folder")
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    make = actions.add_parser("make", help="write the synthetic demo set of a config")
    make.add_argument("--out", type=Path, help="folder to write (default: the cache)")
    make.add_argument("--force", action="store_true", help="replace an existing --out folder")
    add_config_arguments(make)
    check = actions.add_parser("check", help="report counts, sizes and every bad file")
    check.add_argument("path", type=Path, help="dataset folder")
    check.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="how the folder is laid out (default: told from its contents)",
    )
    check.add_argument(
        "-o",
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a format option, e.g. -o sigma_px=25 -o 'classes=[car, bus, truck]' (repeatable)",
    )
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _options(texts: list[str]) -> dict[str, Any]:
    """``["sigma_px=25", "classes=[car, bus]"]`` -> ``{"sigma_px": 25, "classes": [...]}``."""
    options = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"option {text!r}: expected key=value, e.g. sigma_px=25")
        options[key] = yaml.safe_load(raw) if raw.strip() else None
    return options


def run(args: argparse.Namespace) -> int:
    console = make_console()
    if args.action == "make":
        cfg = config_from_args(args)
        if args.out is None:
            root = demo_dataset(cfg)
        else:
            if args.out.exists() and any(args.out.iterdir()):
                if not args.force:
                    raise UserError(f"{args.out} exists and is not empty (use --force to replace)")
                shutil.rmtree(args.out)
            demo = cfg.data
            root = make_demo_dataset(args.out, demo.task, demo.demo, demo.observer, cfg.seed)
        console.print(f"demo {cfg.data.task} set: [bold]{root}[/bold]")
        args.path = root
        args.format, args.options = "hagxai", []
    progress = not getattr(args, "no_progress", False)
    report = check_dataset(args.path, args.format, progress=progress, **_options(args.options))
    table = Table(title=f"dataset {report.root}", show_header=False)
    table.add_row("format", report.format or "?")
    table.add_row("task", report.task or "?")
    for split, count in sorted(report.counts.items()):
        table.add_row(f"{split} images", str(count))
    table.add_row("image sizes", ", ".join(f"{k} ({v})" for k, v in report.sizes.most_common()))
    table.add_row("fixations", str(report.fixations))
    table.add_row("problems", str(len(report.problems)))
    console.print(table)
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
    return 0 if report.ok else 1
