"""``hagxai train``: not built yet; it says so plainly and exits with code 3."""

from __future__ import annotations

import argparse
import sys

from hagxai.commands._common import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train combiners on human attention (k-fold)")
    add_config_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    config_from_args(args)
    print("hagxai train: the config is valid, but this command is not built yet", file=sys.stderr)
    return 3
