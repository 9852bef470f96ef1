"""An error the service answers with an HTTP status (the CLI prints it as one line too)."""

from __future__ import annotations

from deephash.errors import DeephashError


class ApiError(DeephashError):
    """A request the service refuses: ``status`` (4xx) and a message naming the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
