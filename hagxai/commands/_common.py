"""Options shared by the commands that take a run configuration."""

from __future__ import annotations

import argparse

from hagxai.config import RunConfig, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and trailing ``key=value`` overrides."""
    parser.add_argument("--config", "-c", help="YAML config file (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=5"
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated config named by ``--config`` with the overrides applied."""
    return load_config(args.config, args.overrides)
