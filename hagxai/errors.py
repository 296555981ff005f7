"""Errors that reach the user as one line, not a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (a file, a key, a value): printed as one line.

    ``exit_code`` is 2 for configuration errors (as argparse uses for usage errors), 1 otherwise.
    """

    exit_code = 1


class ConfigError(UserError):
    """An unknown key, a wrong type or an unreadable config file."""

    exit_code = 2


class DataError(UserError):
    """A dataset file that is missing, unreadable or malformed; the message names the file."""


def cut_list(items: Iterable[object], limit: int = 5) -> str:
    """A list for a one-line message: the first ``limit`` items, then how many more there are.

    ``cut_list(["a", "b", "c"], 2)`` is ``"a, b … and 1 more"``; strings are shown as they are,
    other items by ``str``. A long list (700 class names) would otherwise fill the terminal.

    Args:
        items: any iterable.
        limit: how many items to show.

    Returns:
        The items joined by ``", "``, cut after ``limit`` with a count of the rest.
    """
    values = [str(item) for item in items]
    shown = ", ".join(values[:limit])
    rest = len(values) - limit
    return f"{shown} … and {rest} more" if rest > 0 else shown
