"""``hagxai config show [-c FILE] [key=value ...]``: the resolved run configuration as YAML.

Every key with its value: the defaults, then the file's values, then the overrides, validated as
``train`` and ``demo`` validate them (an unknown key or a wrong type is one line, exit code 2).
"""

from __future__ import annotations

import argparse

import yaml

from hagxai.commands._common import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("config", help="show the resolved run configuration")
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    show = actions.add_parser("show", help="print the resolved config (defaults included) as YAML")
    add_config_arguments(show)
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0
