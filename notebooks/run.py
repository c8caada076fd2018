"""Execute the notebooks in place so the committed copies carry fresh outputs and plots.

    python notebooks/run.py            # all notebooks
    python notebooks/run.py 02_*.ipynb # some

The test suite executes copies (tests/test_notebooks.py) and fails on any error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel, from the notebooks folder; raises on the first failing cell."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def main(patterns: list[str]) -> None:
    paths = sorted({p for pattern in (patterns or ["*.ipynb"]) for p in HERE.glob(pattern)})
    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        nbformat.write(execute(path), path)


if __name__ == "__main__":
    main(sys.argv[1:])
