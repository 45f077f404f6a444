"""User-facing errors.

Anything a user can cause (bad paths, bad files, bad config values) raises :class:`UserError`.
The CLI prints its message on one line and exits with code 2 instead of showing a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input, with a message that says what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message
