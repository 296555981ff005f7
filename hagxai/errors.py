"""Errors that reach the user as one line, not a traceback."""

from __future__ import annotations


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
