"""Instruction-awareness evaluation on real data: do the questions steer the vectors?

Three tests, each run for any embedder (InBedder with any loadable model, and
the plain sentence-embedder baselines) in the same run:

- two-facet clustering: texts with two label facets (MASSIVE intent/scenario,
  CLINC and MTOP intent/domain) are embedded under one question per facet;
  k-means (FAISS, k = number of labels of the scored facet) is scored with
  v-measure against each facet: a 2x2 table whose diagonal should win;
- robustness (the paper's test): FewRel and Few-NERD clustering under the
  paper's 10 correct, 10 implicit and 10 incorrect instructions; a model that
  follows instructions scores correct >= implicit > incorrect;
- STS-B test: Spearman correlation of cosine similarity with the gold score.

Subsets are seeded random samples (the files are not shuffled), so a `rows`
limit keeps every label represented in proportion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from inbedder.data_splits import HELD_OUT_DOMAINS

if TYPE_CHECKING:
    from inbedder.engine import InBedder

INSTRUCTIONS_FILE = "inbedder_instructions/inbedder_task_instructions.json"
ROBUSTNESS_GROUPS = ("correct", "implicit", "incorrect")
STSB_QUESTION = "What does this sentence describe?"


class EvalEmbedder(Protocol):
    """Anything that embeds texts under several named questions at once."""

    name: str

    def encode_many(self, texts: Sequence[str], questions: Mapping[str, str]) -> dict[str, np.ndarray]: ...


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

ROBUSTNESS_SETS = {  # name -> (file, task in the paper's instruction file)
    "fewrel": ("clustering/few_rel_nat.small.parquet", "FewRelClustering"),
    "fewnerd": ("clustering/few_nerd_nat.small.parquet", "FewNerdClustering"),
}


@dataclass
class EvalOptions:
    rows: int | None = None             # two-facet sets: sample this many texts (None: all)
    robustness_rows: int | None = 1000  # FewRel / Few-NERD sample size
    stsb_pairs: int | None = None       # STS-B test pairs (None: all 1,379)
    per_group: int = 10                 # robustness instructions per group (the paper: 10)
    seed: int = 0
    kmeans_seeds: int = 1               # v-measure averaged over this many k-means seeds (seed, seed+1, ...)
    stsb_question: str = STSB_QUESTION
    tests: tuple[str, ...] = ("clustering", "robustness", "stsb", "transfer", "facets")
    transfer_rows: int | None = 1000    # held-out SGD requests for the taxonomy-transfer check
    facet_rows: int | None = 500        # breadth suite: texts sampled per facet set
    facet_sets: tuple[str, ...] = ()    # breadth suite sets (empty: all of facets.FACET_SETS)
    trained_on: tuple[str, ...] = ()    # facet sets training saw: scored apart from the breadth score
    datasets: tuple[str, ...] = tuple(TWO_FACET_SETS)
    robustness_sets: tuple[str, ...] = tuple(ROBUSTNESS_SETS)
    extra: dict = field(default_factory=dict)


class InBedderUnderTest:
    """The engine in the harness: all questions of a test in one call (shared input work)."""

    def __init__(self, embedder: InBedder, progress: bool = False):
        self.embedder, self.progress = embedder, progress
        self.name = embedder.model_name

    def encode_many(self, texts: Sequence[str], questions: Mapping[str, str]) -> dict[str, np.ndarray]:
        return self.embedder.encode(list(texts), dict(questions), show_progress_bar=self.progress)


# --- scoring primitives ----------------------------------------------------------------

def kmeans_labels(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from inbedder.kmeans import kmeans

    return kmeans(vectors, k, seed)[1]


def v_measure(vectors: np.ndarray, labels: Sequence[object], seed: int = 0, seeds: int = 1) -> float:
    """Mean over `seeds` k-means runs: one run's seed moves a margin by about +-0.02 (bench/margin_noise.py)."""
    from sklearn.metrics import v_measure_score

    labels = list(labels)
    k = len(set(labels))
    return float(np.mean([v_measure_score(labels, kmeans_labels(vectors, k, s)) for s in range(seed, seed + seeds)]))


def facet_table(embedder: EvalEmbedder, texts: Sequence[str], facets: Mapping[str, tuple[Sequence[object], str]],
                seed: int = 0, seeds: int = 1) -> dict[str, dict[str, float]]:
    """table[question facet][label facet] = v-measure of k-means under that question."""
    vectors = embedder.encode_many(texts, {f: q for f, (_, q) in facets.items()})
    return {asked: {scored: v_measure(vectors[asked], labels, seed, seeds) for scored, (labels, _) in facets.items()}
            for asked in facets}


def diagonal_margins(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per facet: v-measure under its own question minus the best under another question."""
    return {f: table[f][f] - max(table[o][f] for o in table if o != f) for f in table}


def spearman_of_cosines(a: np.ndarray, b: np.ndarray, gold: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return float(spearmanr((a * b).sum(1), np.asarray(gold, dtype=np.float64)).statistic)


def sample_rows(table: pa.Table, rows: int | None, seed: int) -> pa.Table:
    if not rows or rows >= table.num_rows:
        return table
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, rows, replace=False))
    return table.take(pa.array(picked))


# --- the three tests ------------------------------------------------------------------

def clustering_eval(embedder: EvalEmbedder, data_dir: Path, datasets: Sequence[str], rows: int | None = None,
                    seed: int = 0, seeds: int = 1) -> dict[str, dict]:
    results = {}
    for name in datasets:
        spec = TWO_FACET_SETS[name]
        table = sample_rows(pq.read_table(Path(data_dir) / spec.file), rows, seed)
        texts = table.column("text").to_pylist()
        facets = {f: (table.column(col).to_pylist(), q) for f, (col, q) in spec.facets.items()}
        scores = facet_table(embedder, texts, facets, seed, seeds)
        results[name] = {"rows": len(texts), "kmeans_seeds": seeds, "questions": {f: q for f, (_, q) in facets.items()},
                         "v_measure": scores, "diagonal_margin": diagonal_margins(scores)}
    return results


TRANSFER_FILE = "sgd/sgd_intent_turns.parquet"
TRANSFER_QUESTIONS = {"domain": "Which broad kind of service is this request for?",
                      "intent": "What specific action does the user ask for?"}


def held_out_requests(data_dir: str | Path, rows: int, seed: int = 0) -> pa.Table:
    """Requests of the domains training never saw (all splits), with their domain and intent: the transfer check."""
    table = pq.read_table(Path(data_dir) / TRANSFER_FILE,
                          columns=["text", "domain", "intent", "split"])
    held = table.filter(pc.is_in(table.column("domain"), pa.array(list(HELD_OUT_DOMAINS))))
    order = np.sort(np.random.default_rng(seed).choice(held.num_rows, min(rows, held.num_rows), replace=False))
    return held.take(pa.array(order))


def transfer_eval(embedder: EvalEmbedder, data_dir: Path, rows: int | None = 1000, seed: int = 0,
                  seeds: int = 1) -> dict:
    """Taxonomy transfer: requests of SGD domains training never saw, under a domain and an intent question.

    A model that learned the skill groups unseen domains under the domain question
    (and keeps intents apart under the intent question); one that memorised the
    training taxonomy has no words for them.
    """
    table = held_out_requests(data_dir, rows or 10**9, seed)
    facets = {f: (table.column(f).to_pylist(), q) for f, q in TRANSFER_QUESTIONS.items()}
    scores = facet_table(embedder, table.column("text").to_pylist(), facets, seed, seeds)
    return {"sgd-held-out": {"rows": table.num_rows, "kmeans_seeds": seeds, "domains": list(HELD_OUT_DOMAINS),
                             "questions": dict(TRANSFER_QUESTIONS), "v_measure": scores,
                             "diagonal_margin": diagonal_margins(scores)}}


def paper_instructions(data_dir: Path, task: str, per_group: int = 10) -> dict[str, list[str]]:
    """The paper's correct / implicit / incorrect paraphrases for one task."""
    tasks = json.loads((Path(data_dir) / INSTRUCTIONS_FILE).read_text())["tasks"]
    if task not in tasks:
        raise KeyError(f"task {task!r} is not in {INSTRUCTIONS_FILE}; it has {', '.join(sorted(tasks))}")
    return {g: list(tasks[task][f"{g}_instructions"])[:per_group] for g in ROBUSTNESS_GROUPS}


def robustness_eval(embedder: EvalEmbedder, data_dir: Path, sets: Sequence[str], rows: int | None = 1000,
                    per_group: int = 10, seed: int = 0, seeds: int = 1) -> dict[str, dict]:
    results = {}
    for name in sets:
        file, task = ROBUSTNESS_SETS[name]
        table = sample_rows(pq.read_table(Path(data_dir) / file), rows, seed)
        texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
        groups = paper_instructions(data_dir, task, per_group)
        questions = {f"{g}_{i}": q for g, qs in groups.items() for i, q in enumerate(qs)}
        vectors = embedder.encode_many(texts, questions)
        scores = {g: [v_measure(vectors[f"{g}_{i}"], labels, seed, seeds) for i in range(len(qs))]
                  for g, qs in groups.items()}
        results[name] = {"rows": len(texts), "kmeans_seeds": seeds, "labels": len(set(labels)), "task": task,
                         "v_measure": scores,
                         "mean": {g: float(np.mean(s)) for g, s in scores.items()},
                         "std": {g: float(np.std(s)) for g, s in scores.items()},
                         "correct_minus_incorrect": float(np.mean(scores["correct"]) - np.mean(scores["incorrect"]))}
    return results


def stsb_eval(embedder: EvalEmbedder, data_dir: Path, pairs: int | None = None, question: str = STSB_QUESTION,
              seed: int = 0) -> dict:
    table = sample_rows(pq.read_table(Path(data_dir) / "stsb/sts-test.parquet"), pairs, seed)
    first, second = table.column("sentence1").to_pylist(), table.column("sentence2").to_pylist()
    vectors = embedder.encode_many(first + second, {"q": question})["q"]
    return {"pairs": len(first), "question": question,
            "spearman": spearman_of_cosines(vectors[: len(first)], vectors[len(first):], table.column("score"))}


def required_files(options: EvalOptions) -> list[str]:
    files = []
    if "clustering" in options.tests:
        files += [TWO_FACET_SETS[d].file for d in options.datasets]
    if "robustness" in options.tests:
        files += [ROBUSTNESS_SETS[r][0] for r in options.robustness_sets] + [INSTRUCTIONS_FILE]
    if "stsb" in options.tests:
        files.append("stsb/sts-test.parquet")
    if "transfer" in options.tests:
        files.append(TRANSFER_FILE)
    if "facets" in options.tests:
        from inbedder.evaluation.facets import FACET_SETS

        files += [FACET_SETS[s].file for s in options.facet_sets or FACET_SETS]
    return files


def check_data(data_dir: Path, options: EvalOptions) -> None:
    """Fail before any model work when an evaluation file is missing."""
    missing = [f for f in required_files(options) if not (Path(data_dir) / f).is_file()]
    if missing:
        raise FileNotFoundError(f"evaluation data missing under {data_dir}: {', '.join(missing)}")


def evaluate(embedder: EvalEmbedder, data_dir: Path, options: EvalOptions) -> dict:
    """Every requested test for one embedder: {"clustering": ..., "robustness": ..., "stsb": ...}."""
    out: dict = {}
    if "clustering" in options.tests:
        out["clustering"] = clustering_eval(embedder, data_dir, options.datasets, options.rows, options.seed,
                                            options.kmeans_seeds)
    if "robustness" in options.tests:
        out["robustness"] = robustness_eval(embedder, data_dir, options.robustness_sets, options.robustness_rows,
                                            options.per_group, options.seed, options.kmeans_seeds)
    if "stsb" in options.tests:
        out["stsb"] = stsb_eval(embedder, data_dir, options.stsb_pairs, options.stsb_question, options.seed)
    if "transfer" in options.tests:
        out["transfer"] = transfer_eval(embedder, data_dir, options.transfer_rows, options.seed, options.kmeans_seeds)
    if "facets" in options.tests:
        from inbedder.evaluation.facets import FACET_SETS, facets_eval

        out["facets"] = facets_eval(embedder, data_dir, options.facet_sets or tuple(FACET_SETS), options.facet_rows,
                                    options.seed, options.kmeans_seeds, options.trained_on)
    return out


# --- reporting ------------------------------------------------------------------------

def _facet_tables(results: Mapping[str, dict], test: str, title: str) -> list[str]:
    lines: list[str] = []
    models = list(results)
    sets = sorted({d for r in results.values() for d in r.get(test, {})})
    if sets:
        lines += [f"### {title} (v-measure; rows: question asked, columns: labels scored)", ""]
        for name in sets:
            first = next(r[test][name] for r in results.values() if name in r.get(test, {}))
            facets = list(first["v_measure"])
            header = ["model", *[f"{a} q -> {s}" for a in facets for s in facets], *[f"margin {f}" for f in facets]]
            lines += [f"**{name}** ({first['rows']} texts)", "", "| " + " | ".join(header) + " |",
                      "|---" * len(header) + "|"]
            for m in models:
                r = results[m].get(test, {}).get(name)
                if r:
                    cells = [f"{r['v_measure'][a][s]:.3f}" for a in facets for s in facets]
                    cells += [f"{r['diagonal_margin'][f]:+.3f}" for f in facets]
                    lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def to_markdown(results: Mapping[str, dict]) -> str:
    """results: {model name: evaluate(...) output}."""
    from inbedder.evaluation.facets import breadth_markdown

    lines: list[str] = [breadth_markdown(results)]
    models = list(results)
    for test, title in (("clustering", "Two-facet clustering"),
                        ("transfer", "Taxonomy transfer: SGD domains never trained on")):
        lines += _facet_tables(results, test, title)
    robust_sets = sorted({d for r in results.values() for d in r.get("robustness", {})})
    if robust_sets:
        lines += ["### Robustness (v-measure, mean ± std over the paper's instructions per group)", "",
                  "| model | set | correct | implicit | incorrect | correct - incorrect |", "|---|---|---|---|---|---|"]
        for m in models:
            for name in robust_sets:
                r = results[m].get("robustness", {}).get(name)
                if r:
                    cells = [f"{r['mean'][g]:.3f} ± {r['std'][g]:.3f}" for g in ROBUSTNESS_GROUPS]
                    lines.append(f"| {m} | {name} ({r['rows']}) | " + " | ".join(cells)
                                 + f" | {r['correct_minus_incorrect']:+.3f} |")
        lines.append("")
    if any("stsb" in r for r in results.values()):
        lines += ["### STS-B test (Spearman of cosine vs. gold)", "", "| model | pairs | Spearman |", "|---|---|---|"]
        for m in models:
            r = results[m].get("stsb")
            if r:
                lines.append(f"| {m} | {r['pairs']} | {r['spearman']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: Mapping[str, dict], path: Path) -> None:
    """One figure: diagonal margins, robustness groups, STS-B, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    width = 0.8 / max(len(models), 1)
    cells = sorted({(d, f) for r in results.values() for d, c in r.get("clustering", {}).items()
                    for f in c["diagonal_margin"]})
    for i, m in enumerate(models):
        margins = [results[m].get("clustering", {}).get(d, {}).get("diagonal_margin", {}).get(f, np.nan)
                   for d, f in cells]
        axes[0].bar(np.arange(len(cells)) + i * width, margins, width, label=m)
    axes[0].set_xticks(np.arange(len(cells)) + 0.4 - width / 2, [f"{d}\n{f}" for d, f in cells], fontsize=8)
    axes[0].axhline(0, color="black", lw=0.8)
    axes[0].set_title("two-facet: own question minus other (v-measure)")
    groups = [(d, g) for d in sorted({d for r in results.values() for d in r.get("robustness", {})})
              for g in ROBUSTNESS_GROUPS]
    for i, m in enumerate(models):
        rob = results[m].get("robustness", {})
        means = [rob.get(d, {}).get("mean", {}).get(g, np.nan) for d, g in groups]
        stds = [rob.get(d, {}).get("std", {}).get(g, 0.0) for d, g in groups]
        axes[1].bar(np.arange(len(groups)) + i * width, means, width, yerr=stds, capsize=2, label=m)
    axes[1].set_xticks(np.arange(len(groups)) + 0.4 - width / 2, [f"{d}\n{g}" for d, g in groups], fontsize=8)
    axes[1].set_title("robustness: v-measure per instruction group")
    axes[2].bar(range(len(models)), [results[m].get("stsb", {}).get("spearman", np.nan) for m in models],
                color=[f"C{i}" for i in range(len(models))])
    axes[2].set_xticks(range(len(models)), [m[:24] for m in models], fontsize=7, rotation=15)
    axes[2].set_title("STS-B test: Spearman")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: Mapping[str, dict], json_path: Path, extra_markdown: str = "") -> tuple[Path, Path, Path]:
    """JSON, markdown and PNG side by side (same stem)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    md.write_text(to_markdown(results) + extra_markdown + f"\n![evaluation]({png.name})\n")
    plot(results, png)
    if any(r.get("facets") for r in results.values()):
        from inbedder.evaluation.facets import plot_breadth

        breadth_png = json_path.with_name(json_path.stem + "_breadth.png")
        plot_breadth(results, breadth_png)
        with md.open("a") as f:
            f.write(f"\n![breadth]({breadth_png.name})\n")
    return json_path, md, png
