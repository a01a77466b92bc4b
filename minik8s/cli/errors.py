"""A user mistake mkctl reports itself (as opposed to an error the server answered), kept
apart so the top level can print every failure as kubectl's one ``error: ...`` line."""

from __future__ import annotations


class CliError(Exception):
    """Printed as ``error: <message>``, exit code 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


__all__ = ["CliError"]
