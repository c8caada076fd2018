"""InBedder for data lakes: instruction-following embeddings for Parquet and Delta tables."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["InBedder", "Embeddings", "__version__"]


def __getattr__(name: str):  # keep `import inbedder` light: torch loads only when the engine is used
    if name in ("InBedder", "Embeddings"):
        from inbedder import engine

        return getattr(engine, name)
    raise AttributeError(name)
