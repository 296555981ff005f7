"""Where hagxai prints its progress and result tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def make_console() -> Console:
    """The terminal's width, or 140 columns when the output goes to a file or a CI log (rich
    would otherwise wrap the result tables at 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=140)


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar over ``total`` items, labelled ``label``.

    Yields:
        ``advance(n)``: count ``n`` more items done. Nothing is shown when ``enabled`` is false
        or there is nothing to do.
    """
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, disable=not enabled or total <= 0) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
