"""The CLI's one error type: a problem the user can fix, told in one line."""

from __future__ import annotations


class CliError(Exception):
    """``inferq`` prints the message on one line to stderr and exits with status 1."""
