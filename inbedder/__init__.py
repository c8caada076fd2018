"""InBedder for data lakes: instruction-following embeddings for Parquet and Delta tables."""

from __future__ import annotations

from inbedder.exports import lazy_exports

__version__ = "0.1.0"
# keep `import inbedder` light: torch loads only when the engine is used
_engine_names, __getattr__, __dir__ = lazy_exports(__name__, {"engine": ("InBedder", "Embeddings")})
__all__ = [*_engine_names, "__version__"]
