"""Where hagxai prints its progress and result tables."""

from __future__ import annotations

from rich.console import Console


def make_console() -> Console:
    """The terminal's width, or 140 columns when the output goes to a file or a CI log (rich
    would otherwise wrap the result tables at 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=140)
