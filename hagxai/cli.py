"""The ``hagxai`` command line: ``hagxai <command> [options] [key=value ...]``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hagxai.allocator import tune_malloc
from hagxai.atomic import restrict_umask
from hagxai.errors import UserError

# Each name is a module in hagxai/commands with ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS = [
    "demo",
    "train",
    "sweep",
    "evaluate",
    "explain",
    "data",
    "layers",
    "import-reference",
    "cache",
    "config",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="hagxai",
        description="Learn explanation heads for vision models from human attention (HAG-XAI).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"hagxai.commands.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    restrict_umask()
    tune_malloc()
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"hagxai {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        # The machine's problem, not the input's (a full disk, a read-only folder): one line.
        where = f"{err.filename}: " if err.filename else ""
        print(f"hagxai {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hagxai {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
