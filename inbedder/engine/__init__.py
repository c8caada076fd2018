"""The InBedder engine: model loading, prompts, batching, forward. No Spark, Ray, Delta or FAISS."""

from inbedder.engine.embedder import Embeddings, InBedder
from inbedder.engine.errors import InBedderError, InvalidInputError, ModelLoadError
from inbedder.engine.prompts import PROMPT_TEMPLATE

__all__ = ["Embeddings", "InBedder", "InBedderError", "InvalidInputError", "ModelLoadError", "PROMPT_TEMPLATE"]
