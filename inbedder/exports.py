"""Package attributes imported on first use.

A Spark Python worker unpickles the job's per-partition function, which imports
`inbedder.job.waves` and `inbedder.lake.staging`; Python runs each package's
`__init__` first. Eager package imports made every new worker load the commit
path, the driver's run module and the pydantic settings (0.77 s; pyarrow.dataset alone pulls pandas) before
its first row, and the first wave of every run waits for that worker.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]
                 ) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package`: each name is imported from its submodule when first
    read, and `dir()` (and so tab completion) lists the names before they are."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return sorted(where), __getattr__, __dir__
