"""Instruction-awareness evaluation: does asking about a facet cluster texts by that facet?

For datasets with two label facets (MASSIVE intent/scenario, CLINC and MTOP
intent/domain) every text is embedded under one question per facet; k-means
(FAISS, raw vectors, k = number of labels of the facet) is scored with
v-measure against each facet. The result is a 2x2 table per dataset whose
diagonal should win. Any embed function can be evaluated, so baselines run in
the same harness.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

EmbedFn = Callable[[Sequence[str], str], np.ndarray]


@dataclass(frozen=True)
class TwoFacetSet:
    file: str
    facets: dict[str, tuple[str, str]]  # facet -> (label column, question asking about it)


TWO_FACET_SETS = {
    "massive": TwoFacetSet("clustering/massive_intent_scenario.small.parquet", {
        "intent": ("intent", "What does the user want the assistant to do?"),
        "scenario": ("scenario", "Which area of the assistant is this about, such as alarm, music or weather?")}),
    "clinc": TwoFacetSet("clustering/clinc_intent_domain.small.parquet", {
        "intent": ("intent", "What does the user want to do?"),
        "domain": ("domain", "Which domain is this request about, such as banking, travel or cooking?")}),
    "mtop": TwoFacetSet("clustering/mtop_intent_domain.small.parquet", {
        "intent": ("intent", "What does the user want to do?"),
        "domain": ("domain", "Which domain is this request about, such as messaging, weather or music?")}),
}


def kmeans_labels(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0]


def facet_table(embed: EmbedFn, texts: Sequence[str], facets: dict[str, tuple[Sequence[object], str]],
                seed: int = 0) -> dict[str, dict[str, float]]:
    """table[question facet][label facet] = v-measure of k-means under that question."""
    from sklearn.metrics import v_measure_score

    table: dict[str, dict[str, float]] = {}
    for asked, (_, question) in facets.items():
        vectors = embed(texts, question)
        table[asked] = {}
        for scored, (labels, _) in facets.items():
            k = len(set(labels))
            table[asked][scored] = float(v_measure_score(labels, kmeans_labels(vectors, k, seed)))
    return table


def diagonal_margins(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per facet: v-measure under its own question minus under the other question(s)."""
    return {f: table[f][f] - max(table[o][f] for o in table if o != f) for f in table}


def clustering_eval(embed: EmbedFn, data_dir: Path, datasets: Sequence[str], rows: int | None = None,
                    seed: int = 0) -> dict[str, dict]:
    results = {}
    for name in datasets:
        spec = TWO_FACET_SETS[name]
        table = pq.read_table(Path(data_dir) / spec.file)
        if rows:
            table = table.slice(0, rows)
        texts = table.column("text").to_pylist()
        facets = {f: (table.column(col).to_pylist(), q) for f, (col, q) in spec.facets.items()}
        scores = facet_table(embed, texts, facets, seed)
        results[name] = {"rows": len(texts), "questions": {f: q for f, (_, q) in facets.items()},
                         "v_measure": scores, "diagonal_margin": diagonal_margins(scores)}
    return results


def to_markdown(results: dict[str, dict], title: str) -> str:
    lines = [f"### {title}", ""]
    for name, r in results.items():
        facets = list(r["v_measure"])
        lines += [f"**{name}** ({r['rows']} texts): v-measure, rows = question asked, columns = labels scored", "",
                  "| asked \\ scored | " + " | ".join(facets) + " |", "|---" * (len(facets) + 1) + "|"]
        for asked in facets:
            cells = [f"**{r['v_measure'][asked][s]:.3f}**" if s == asked else f"{r['v_measure'][asked][s]:.3f}"
                     for s in facets]
            lines.append(f"| {asked} | " + " | ".join(cells) + " |")
        lines += ["", "diagonal margin: " + ", ".join(f"{f} {m:+.3f}" for f, m in r["diagonal_margin"].items()), ""]
    return "\n".join(lines)


def write_results(results: dict, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2))
