"""The training loop's error, apart from the loop so that a command can catch it without
importing torch."""

from __future__ import annotations


class TrainingError(Exception):
    """The run cannot go on (a NaN loss, an unusable resume); nothing saved is lost."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


__all__ = ["TrainingError"]
