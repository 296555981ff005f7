"""``hagxai train``: k-fold training of combiners on human attention (``hagxai.training``).

``hagxai train --config FILE [key=value ...]`` starts a run in ``runs/<name>/``;
``hagxai train --resume RUN_DIR`` continues an interrupted one with its saved config.
Both run as many processes under ``torchrun`` (:mod:`hagxai.distributed`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hagxai.commands._common import add_config_arguments, config_from_args
from hagxai.config import load_config
from hagxai.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train combiners on human attention (k-fold)")
    add_config_arguments(parser)
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run")
    parser.add_argument("--force", action="store_true", help="replace an existing run folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.config or args.overrides:
            raise ConfigError("--resume uses the run's saved config; drop --config and overrides")
        saved = args.resume / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"{saved} not found: is {args.resume} a run folder?")
        cfg = load_config(saved)
        # the folder may have moved since the run started
        cfg.output_dir, cfg.name = args.resume.parent, args.resume.name
    else:
        cfg = config_from_args(args)
    from hagxai import distributed
    from hagxai.training import train

    # under torchrun: join the process group (gloo on the CPU, NCCL on GPUs); else nothing
    distributed.init(cfg.device)
    train(cfg, resume=args.resume is not None, overwrite=args.force, progress=not args.no_progress)
    distributed.shutdown()
    return 0
