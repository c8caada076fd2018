"""Every error the product raises on purpose: one root, one subclass per stage.

Entry points catch `InBedderError` and print its message as one line; the message
names the problem and the fix. Anything else is a defect and goes to the log
with its traceback.
"""

from __future__ import annotations


def validation_problems(exc) -> str:
    """A pydantic ValidationError as one line: `field.path: reason; ...` (a whole-config check names no field)."""
    def one(error: dict) -> str:
        where = ".".join(str(p) for p in error["loc"])
        reason = error["msg"].removeprefix("Value error, ")
        return f"{where}: {reason}" if where else reason
    return "; ".join(one(e) for e in exc.errors())


class InBedderError(Exception):
    """The root: a failure the user can act on, described in one line."""


class ConfigError(InBedderError, ValueError):
    """The configuration is invalid; the message names every wrong field."""


class ModelLoadError(InBedderError):
    """A model could not be found, reached or loaded safely."""


class InvalidInputError(InBedderError, ValueError):
    """Bad texts or instructions; `problems` lists (position or name, reason)."""

    def __init__(self, message: str, problems: list[tuple[object, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


class TableError(InBedderError, ValueError):
    """A source or output table can't be used as asked; the message says why."""


class JobError(InBedderError):
    """The batch job failed for a reason the user can act on (a run's limits, its cluster)."""


class LocalClusterError(JobError):
    """The loopback-only Ray cluster a run starts could not be started or checked."""


class IndexBuildError(TableError):
    """An index can't be built, updated, loaded or queried as asked."""


class ClusterError(TableError):
    """A cluster request that cannot be served as asked."""


class TrainingError(InBedderError, ValueError):
    """Training data or settings that can't be used; the message says which."""


class MissingExtraError(InBedderError):
    """A command needs an optional part of the package that is not installed."""


def require_extra(extra: str) -> None:
    """Fail in one line naming the `pip install` when a package of `extra` (as pyproject.toml declares it)
    is missing: the check and the install instruction read the same list."""
    missing = missing_from_extra(extra)
    if missing:
        raise MissingExtraError(f"this needs {', '.join(missing)}, part of the [{extra}] extra: "
                                f"pip install 'inbedder[{extra}]'")


def missing_from_extra(extra: str) -> list[str]:
    """The distributions `extra` declares that are not installed (none, when the package is not installed
    as a distribution, e.g. run from a source tree: then nothing can be checked)."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    try:
        declared = requires("inbedder") or []
    except PackageNotFoundError:
        return []
    missing = []
    for line in declared:
        requirement = Requirement(line)
        if requirement.name == "inbedder" or requirement.marker is None:
            continue
        if not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            version(requirement.name)
        except PackageNotFoundError:
            missing.append(requirement.name)
    return missing
