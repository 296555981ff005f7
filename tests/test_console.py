"""The progress bar helper: counts what it is told, shows nothing when disabled."""

from __future__ import annotations

from hagxai.console import progress_bar


def test_progress_bar_yields_an_advance_function():
    for enabled in (True, False):
        with progress_bar("work", 3, enabled) as advance:
            advance(1)
            advance(2)
    with progress_bar("nothing to do", 0) as advance:
        advance(0)
