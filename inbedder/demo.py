"""The quickstart: one corpus, two questions, two different neighbourhoods."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pyarrow.parquet as pq

from inbedder.engine import InBedder

DEMO_INSTRUCTIONS = {
    "intent": "What does the customer want the bank to do?",
    "feeling": "How does the customer feel?",
}


def sample_table_path() -> str:
    return str(resources.files("inbedder") / "data" / "banking77_sample.parquet")


@dataclass
class Neighbours:
    query: int
    by_instruction: dict[str, list[tuple[int, float]]]


def nearest(vectors: np.ndarray, queries: list[int], k: int) -> list[list[tuple[int, float]]]:
    """Cosine neighbours, excluding the query itself."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit[queries] @ unit.T
    scores[np.arange(len(queries)), queries] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    return [[(int(j), float(scores[r, j])) for j in row] for r, row in enumerate(top)]


def label_agreement(vectors: np.ndarray, labels: list[str], k: int) -> float:
    """Share of each row's k nearest neighbours that carry its label."""
    hits = nearest(vectors, list(range(len(labels))), k)
    return float(np.mean([[labels[j] == labels[i] for j, _ in row] for i, row in enumerate(hits)]))


def run_demo(model: InBedder, rows: int | None, shown: int, k: int, show_progress_bar: bool = True) -> str:
    table = pq.read_table(sample_table_path())
    if rows:
        table = table.slice(0, rows)
    texts = table.column("text").to_pylist()
    labels = table.column("category").to_pylist()
    vectors = model.encode(texts, DEMO_INSTRUCTIONS, show_progress_bar=show_progress_bar)
    assert isinstance(vectors, dict)
    queries = list(np.random.default_rng(7).choice(len(texts), size=min(shown, len(texts)), replace=False))
    found = {name: nearest(v, [int(q) for q in queries], k) for name, v in vectors.items()}
    lines = [f"model: {model.model_name}  fingerprint: {model.fingerprint}  dim: {model.dim}",
             f"corpus: {len(texts)} Banking77 texts (CC BY 4.0, PolyAI)", ""]
    for r, q in enumerate(queries):
        lines.append(f"> {texts[q]!r}  [{labels[q]}]")
        for name, question in DEMO_INSTRUCTIONS.items():
            lines.append(f"  under {name!r} ({question})")
            for j, score in found[name][r]:
                lines.append(f"    {score:.3f}  {texts[j][:70]!r}  [{labels[j]}]")
        overlap = len({j for j, _ in found["intent"][r]} & {j for j, _ in found["feeling"][r]})
        lines.append(f"  neighbours shared by both questions: {overlap} of {k}\n")
    lines.append(f"share of {k} nearest neighbours with the same Banking77 intent label:")
    for name in DEMO_INSTRUCTIONS:
        lines.append(f"  under {name!r}: {label_agreement(vectors[name], labels, k):.3f}")
    return "\n".join(lines)
