"""Explained clusters: k-means on one instruction's vectors, read back through the model.

Each cluster is explained three ways, as the paper does: the words that set its
answers apart (greedy answers for a sample of its rows, TF-IDF of each cluster's
answers against the other clusters'), the tokens the model's LM head reads from
the cluster's direction (centroid minus corpus mean, through the output
embedding matrix), and the rows nearest its centroid. The assignment is written
back to the output table as `NAME_cluster`, guarded by each row's text hash so
a row whose text changed since its vector was read gets no stale label.

Memory: the instruction's vectors are held in memory (rows x dim x 4 bytes:
2.3 GB for 1M rows of SmolLM2's 576 dims); k-means trains on at most 256 rows
per centroid (FAISS's default sample).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inbedder import lake
from inbedder.errors import ClusterError
from inbedder.kmeans import kmeans
from inbedder.lake import VectorSource, cluster_column, embedded_text_column, open_dataset, require_same_model

if TYPE_CHECKING:
    from inbedder.engine import InBedder


@dataclass
class ClusterOptions:
    k: int
    sample_per_cluster: int = 12  # rows per cluster whose answers are generated
    top_words: int = 8
    top_tokens: int = 8
    nearest: int = 3
    max_answer_tokens: int = 16
    seed: int = 0
    write_back: bool = True
    texts: str | None = None       # table holding key + text, when the output table has no text column
    text_column: str | None = None  # default: the column the job recorded it embedded, else `text`
    plot_points: int = 5000


@dataclass
class ClusterExplanation:
    cluster: int
    size: int
    answer_words: list[str]
    head_tokens: list[str]
    nearest: list[dict]
    sample_answers: list[str] = field(default_factory=list)


@dataclass
class ClusterResult:
    table: str
    instruction: str
    question: str
    k: int
    rows: int
    table_version: int | None
    column: str | None
    stale_texts: int
    clusters: list[ClusterExplanation]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


@dataclass
class ClusterData:
    """One instruction's vectors with their keys and text hashes, as read."""

    keys: pa.Array
    hashes: pa.Array
    vectors: np.ndarray


def read_vectors(source: VectorSource) -> ClusterData:
    keys, hashes, parts = [], [], []
    for ids, vectors in source.batches():
        keys.append(ids.column("key").combine_chunks().cast(pa.string()))
        hashes.append(ids.column("text_sha256").combine_chunks().cast(pa.string()))
        parts.append(vectors)
    if not parts:
        raise ClusterError(f"{source.path} has no vectors for instruction {source.instruction!r} yet")
    return ClusterData(pa.concat_arrays(keys), pa.concat_arrays(hashes), np.concatenate(parts))


def nearest_rows(labels: np.ndarray, distances: np.ndarray, cluster: int, n: int) -> np.ndarray:
    members = np.flatnonzero(labels == cluster)
    return members[np.argsort(distances[members], kind="stable")[:n]]


def head_tokens(embedder: InBedder, direction: np.ndarray, n: int) -> list[str]:
    """Tokens whose output embeddings align best with a direction in the final hidden space."""
    import torch

    model = embedder.loaded.model
    weight = model.get_output_embeddings().weight.detach().float()
    scores = weight @ torch.from_numpy(np.ascontiguousarray(direction, dtype=np.float32))
    tokenizer = embedder.loaded.tokenizer
    words: list[str] = []
    for token_id in torch.argsort(scores, descending=True).tolist():
        word = tokenizer.decode([token_id]).strip()
        if word and word not in words and any(ch.isalnum() for ch in word):
            words.append(word)
        if len(words) == n:
            break
    return words


def distinguishing_words(answers_by_cluster: list[list[str]], n: int) -> list[list[str]]:
    """TF-IDF with each cluster's answers as one document: words frequent here and rare elsewhere."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [" ".join(a) for a in answers_by_cluster]
    if not any(d.strip() for d in docs):
        return [[] for _ in docs]
    # max_df: a word in most clusters' answers explains none of them
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, max_df=0.5 if len(docs) > 1 else 1.0,
                                 token_pattern=r"(?u)\b[^\W\d_]{2,}\b")
    try:
        matrix = vectorizer.fit_transform(docs).toarray()
    except ValueError:  # only stop words in every answer
        return [[] for _ in docs]
    vocab = vectorizer.get_feature_names_out()
    return [[str(vocab[j]) for j in np.argsort(-row, kind="stable")[:n] if row[j] > 0] for row in matrix]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fetch_texts(source: VectorSource, data: ClusterData, wanted: np.ndarray, options: ClusterOptions) -> dict[int, str]:
    """Texts of the wanted rows whose text still hashes to what was embedded (position -> text)."""
    path, column = source.path, options.text_column or embedded_text_column(source.meta.text)
    schema_names = source.dataset().schema.names
    if column in schema_names:
        dataset, key = source.dataset(), source.meta.key
    elif options.texts:
        dataset = open_dataset(options.texts)
        if column not in dataset.schema.names or source.meta.key not in dataset.schema.names:
            raise ClusterError(f"{options.texts} needs columns {source.meta.key!r} and {column!r} "
                               f"(it has {', '.join(dataset.schema.names)})")
        key = source.meta.key
    else:
        raise ClusterError(f"{path} has no {column!r} column: pass the job's input table as --texts "
                           "(and --text-column) so the answers can be generated")
    keys = data.keys.take(pa.array(wanted))
    found: dict[str, str] = {}
    for batch in dataset.scanner(columns=[key, column]).to_batches():  # streamed; Delta may expose string_view
        chosen = batch.filter(pc.is_in(batch.column(key).cast(pa.string()), value_set=keys))
        for k, t in zip(chosen.column(key).cast(pa.string()).to_pylist(), chosen.column(column).to_pylist()):
            found[k] = t
    texts = {}
    for position, k in zip(wanted.tolist(), keys.to_pylist()):
        text = found.get(k)
        if text is not None and sha256_text(text) == data.hashes[position].as_py():
            texts[position] = text
    return texts


def write_clusters(source: VectorSource, data: ClusterData, labels: np.ndarray, k: int) -> str:
    """`NAME_cluster` for every row: the label where the text is unchanged, NULL elsewhere."""
    column = cluster_column(source.instruction)
    output = lake.open_output_table(source.path, source.format, source.meta.key)
    output.write_cluster_labels(data.keys, data.hashes, column, pa.array(labels, pa.int32()),
                                f"cluster {source.instruction} k={k}")
    return column


def cluster_table(table: str, instruction: str, options: ClusterOptions,
                  embedder: InBedder) -> tuple[ClusterResult, ClusterData, np.ndarray]:
    """k-means one instruction's column, explain every cluster, write the labels back."""
    source = VectorSource.open(table, instruction)
    require_same_model(table, (source.meta.model, source.meta.fingerprint), (embedder.model_name, embedder.fingerprint),
                       "Its answers and LM head would explain other vectors: load the model the table names.",
                       ClusterError)
    data = read_vectors(source)
    centroids, labels, distances = kmeans(data.vectors, options.k, options.seed)
    rng = np.random.default_rng(options.seed)
    picks = {c: nearest_rows(labels, distances, c, options.nearest) for c in range(options.k)}
    samples = {}
    for c in range(options.k):
        members = np.flatnonzero(labels == c)
        samples[c] = rng.choice(members, min(options.sample_per_cluster, len(members)), replace=False)
    wanted = np.unique(np.concatenate([*picks.values(), *samples.values()]))
    texts = fetch_texts(source, data, wanted, options)
    question = source.meta.instructions[instruction]
    answerable = sorted(p for c in range(options.k) for p in samples[c].tolist() if p in texts)
    answers = dict(zip(answerable, embedder.answer([texts[p] for p in answerable], question,
                                                   max_new_tokens=options.max_answer_tokens))) if answerable else {}
    per_cluster = [[answers[p] for p in samples[c].tolist() if p in answers] for c in range(options.k)]
    words = distinguishing_words(per_cluster, options.top_words)
    mean = data.vectors.mean(axis=0)
    clusters = [
        ClusterExplanation(
            cluster=c, size=int((labels == c).sum()), answer_words=words[c],
            head_tokens=head_tokens(embedder, centroids[c] - mean, options.top_tokens),
            nearest=[{"key": data.keys[p].as_py(), "text": texts.get(p), "distance": float(distances[p])}
                     for p in picks[c].tolist()],
            sample_answers=per_cluster[c][:5])
        for c in range(options.k)]
    column = write_clusters(source, data, labels, options.k) if options.write_back else None
    result = ClusterResult(table, instruction, question, options.k, len(labels), source.version, column,
                           stale_texts=int(len(wanted) - len(texts)), clusters=clusters)
    return result, data, labels


def plot_clusters(vectors: np.ndarray, labels: np.ndarray, path: Path, title: str, points: int = 5000,
                  seed: int = 0) -> None:
    """PCA of (a sample of) the vectors, coloured by cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(vectors), min(points, len(vectors)), replace=False)
    xy = PCA(n_components=2, random_state=seed).fit_transform(vectors[chosen])
    fig, ax = plt.subplots(figsize=(7, 6))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels[chosen], cmap="tab20", s=8)
    for c in np.unique(labels[chosen]):
        centre = xy[labels[chosen] == c].mean(axis=0)
        ax.annotate(str(c), centre, fontsize=11, weight="bold", ha="center")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.colorbar(scatter, ax=ax, label="cluster")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_markdown(result: ClusterResult, plot_name: str | None = None) -> str:
    lines = [f"# Clusters of `{result.instruction}` in {result.table}", "",
             f"Question: *{result.question}*  ", f"k = {result.k}, {result.rows} rows with vectors"
             + (f", table version {result.table_version}" if result.table_version is not None else "")
             + (f"; labels written to `{result.column}`" if result.column else "; labels not written"), ""]
    if result.stale_texts:
        lines += [f"{result.stale_texts} sampled rows had no text matching the embedded one (changed or missing) "
                  "and were left out of the explanations.", ""]
    if plot_name:
        lines += [f"![clusters]({plot_name})", ""]
    lines += ["| cluster | rows | answer words (TF-IDF) | LM-head tokens (centroid - mean) |", "|---|---|---|---|"]
    for c in result.clusters:
        lines.append(f"| {c.cluster} | {c.size} | {', '.join(c.answer_words)} | {', '.join(c.head_tokens)} |")
    lines.append("")
    for c in result.clusters:
        lines.append(f"## Cluster {c.cluster} ({c.size} rows)")
        lines.append("")
        if c.sample_answers:
            lines.append("Sample answers: " + "; ".join(f"*{a}*" for a in c.sample_answers))
            lines.append("")
        lines.append("Nearest the centroid:")
        for row in c.nearest:
            lines.append(f"- `{row['key']}`: {row['text'] if row['text'] is not None else '(text unavailable)'}")
        lines.append("")
    return "\n".join(lines)


def write_report(result: ClusterResult, data: ClusterData, labels: np.ndarray, out_dir: str | Path,
                 points: int = 5000) -> Path:
    """report.md, clusters.png and clusters.json in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_clusters(data.vectors, labels, out / "clusters.png",
                  f"{result.instruction}: k-means k={result.k} (PCA of the vectors)", points)
    (out / "clusters.json").write_text(result.to_json())
    report = out / "report.md"
    report.write_text(to_markdown(result, "clusters.png"))
    return report
