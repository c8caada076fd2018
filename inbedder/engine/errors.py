"""Errors the engine raises; each names what is wrong and where."""

from __future__ import annotations


class InBedderError(Exception):
    """Base class so callers can catch every engine failure in one place."""


class ModelLoadError(InBedderError):
    """A model could not be found, reached or loaded safely."""


class InvalidInputError(InBedderError, ValueError):
    """Bad texts or instructions; `problems` lists (position or name, reason)."""

    def __init__(self, message: str, problems: list[tuple[object, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


def describe_problems(problems: list[tuple[object, str]], limit: int = 5) -> str:
    """Render the first few problems so an error stays one readable line."""
    shown = "; ".join(f"{where}: {why}" for where, why in problems[:limit])
    more = len(problems) - limit
    return shown + (f"; ... and {more} more" if more > 0 else "")
