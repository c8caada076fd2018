"""The engine's errors (subclasses of the package's one root, `inbedder.errors.InBedderError`)."""

from __future__ import annotations

from inbedder.errors import InBedderError, InvalidInputError, ModelLoadError

__all__ = ["InBedderError", "InvalidInputError", "ModelLoadError", "describe_problems"]


def describe_problems(problems: list[tuple[object, str]], limit: int = 5) -> str:
    """Render the first few problems so an error stays one readable line."""
    shown = "; ".join(f"{where}: {why}" for where, why in problems[:limit])
    more = len(problems) - limit
    return shown + (f"; ... and {more} more" if more > 0 else "")
