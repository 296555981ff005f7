"""``hagxai sweep``: train over ``sweep.layers`` × ``sweep.combiner`` × ``sweep.train`` with the
same folds and print one table of plausibility and faithfulness per combination
(:mod:`hagxai.training.sweep`).

``hagxai sweep -c CONFIG 'sweep.layers=[null, [head]]' 'sweep.train=[{lr: 0.02}, {lr: 0.05}]'``
"""

from __future__ import annotations

import argparse

from hagxai.commands._common import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sweep", help="train over layer sets, combiner and training settings with the same folds"
    )
    add_config_arguments(parser)
    parser.add_argument("--force", action="store_true", help="replace existing run folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from hagxai.training.sweep import sweep

    sweep(cfg, overwrite=args.force, progress=not args.no_progress)
    return 0
