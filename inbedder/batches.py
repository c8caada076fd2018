"""Arrow batches through one engine per process: the path the job's replicas, `inbedder.spark.embed` and
`inbedder.ray.Embed` share.

A worker process (a Ray replica, a Spark Python worker, a Ray Data actor) loads
its model once (`engine_for`) and reuses it across partitions and calls. What a
vector column needs to be traced back (model, fingerprint, template, question)
is known before any model loads (`describe`), so a DataFrame can carry it in its
schema while staying lazy, and a wrong model or adapter fails on the driver in
one line. Nothing here imports Spark or Ray.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from inbedder.errors import InBedderError
from inbedder.lake.columns import ERROR, KEY_HASH, META_KEY, answer_column, embedding_column

if TYPE_CHECKING:
    from inbedder.engine import InBedder

ON_ERROR = ("row", "raise")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which engine a worker holds; hashable, so it keys the per-process cache."""

    name: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    max_length: int = 512
    token_budget: int | None = None
    allow_pickle: bool = False
    threads: int | None = None
    answers: bool = False
    max_answer_tokens: int = 16

    def load(self) -> InBedder:
        from inbedder.engine import InBedder

        return InBedder.from_pretrained(self.name, dtype=self.dtype, max_length=self.max_length,
                                        token_budget=self.token_budget, allow_pickle=self.allow_pickle,
                                        num_threads=self.threads, adapter=self.adapter)


_engines: dict[ModelSpec, InBedder] = {}
_lock = threading.Lock()
_loads = 0


def engine_for(spec: ModelSpec) -> InBedder:
    """This process's engine for `spec`, loaded on first use and kept for every later partition and call."""
    global _loads
    with _lock:
        if spec not in _engines:
            _engines[spec] = spec.load()
            _loads += 1
        return _engines[spec]


def loads() -> int:
    """How many models this process has loaded (the tests check that calls share one)."""
    return _loads


@dataclass(frozen=True)
class VectorRecord:
    """How a vector column was made: stored in its field's metadata (and, by the job, in the table's)."""

    model: str
    fingerprint: str
    template: str
    dim: int
    key: str | None
    instruction: str
    question: str
    text: str | None = None  # the column embedded

    def field_metadata(self) -> dict[bytes, bytes]:
        return {META_KEY.encode(): json.dumps(asdict(self), sort_keys=True).encode()}


def describe(spec: ModelSpec) -> tuple[str, str, str, int]:
    """(model name, fingerprint, template, dim) without loading the model; a model that is not there or an
    adapter of another base fails here, in one line."""
    from inbedder.engine.embedder import fingerprint_of, template_for
    from inbedder.engine.loading import describe_weights, resolve_model_dir
    from inbedder.engine.pooling import pooling_for

    described = describe_weights(spec.name, spec.adapter)
    if described is None:  # a hub id (or a path that is not there): resolving it names the problem
        model_dir, _ = resolve_model_dir(spec.name, None, spec.allow_pickle)
        local = describe_weights(str(model_dir), spec.adapter)
        if local is None:
            raise InBedderError(f"model {spec.name}: {model_dir} holds no config.json")
        described = (str(spec.name), local[1], local[2])
    name, digest, masked = described
    pooling = pooling_for(masked)
    return name, fingerprint_of(digest, pooling, spec.max_length), template_for(pooling), hidden_size(spec)


def hidden_size(spec: ModelSpec) -> int:
    """The model's vector size from its config (or GGUF header), without loading weights."""
    from inbedder.engine.gguf import default_gguf_path
    from inbedder.engine.loading import EMBEDDED_MODELS, resolve_model_dir

    if spec.name is None or spec.name in EMBEDDED_MODELS or str(spec.name).endswith(".gguf"):
        from gguf import GGUFReader

        path = default_gguf_path() if spec.name is None or spec.name in EMBEDDED_MODELS else Path(spec.name)
        fields = GGUFReader(str(path)).fields
        length = next(f for k, f in fields.items() if k.endswith(".embedding_length"))
        return int(length.parts[length.data[0]][0])
    model_dir, _ = resolve_model_dir(spec.name, None, spec.allow_pickle)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return int(config.get("hidden_size") or config["d_model"])


def vector_records(spec: ModelSpec, questions: Mapping[str, str], key: str | None,
                   text: str | None = None) -> dict[str, VectorRecord]:
    name, fingerprint, template, dim = describe(spec)
    return {n: VectorRecord(name, fingerprint, template, dim, key, n, q, text) for n, q in questions.items()}


def output_fields(records: Mapping[str, VectorRecord], answers: bool) -> list[pa.Field]:
    """The columns a batch gains: the text's hash, one vector (and answer) per question, the row's error."""
    fields = [pa.field(KEY_HASH, pa.string())]
    for name, record in records.items():
        fields.append(pa.field(embedding_column(name), pa.list_(pa.float32()), metadata=record.field_metadata()))
        if answers:
            fields.append(pa.field(answer_column(name), pa.string()))
    return fields + [pa.field(ERROR, pa.string())]


def vector_array(vectors: np.ndarray, failed: np.ndarray) -> pa.ListArray:
    """One list<float32> per row, null where the row failed."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)), mask=pa.array(failed))


def text_hashes(texts: list[object]) -> pa.Array:
    """sha256 of each text's UTF-8 bytes, as the job's Spark `sha2(text, 256)` writes it (null for a non-text)."""
    return pa.array([hashlib.sha256(t.encode()).hexdigest() if isinstance(t, str) else None for t in texts],
                    pa.string())


def embed_batch(batch: pa.RecordBatch, text: str, questions: Mapping[str, str], spec: ModelSpec,
                fields: list[pa.Field], on_error: str = "row") -> pa.RecordBatch:
    """The batch with `fields` appended (see `output_fields`); a bad text gets a per-row error, or raises with
    on_error="raise". Rows keep their order and count."""
    texts = batch.column(text).to_pylist()
    columns = {f.name: batch.column(f.name) for f in batch.schema}
    if texts:
        result = engine_for(spec).embed(texts, dict(questions), on_error=on_error, answers=spec.answers,
                                        max_answer_tokens=spec.max_answer_tokens)
        failed = np.array([e is not None for e in result.errors], dtype=bool)
        errors, answers = result.errors, result.answers or {}
        vectors = result.vectors
    else:
        failed, errors, answers = np.zeros(0, bool), [], {}
        vectors = {n: np.zeros((0, 1), np.float32) for n in questions}
    columns[KEY_HASH] = text_hashes(texts)
    for name in questions:
        columns[embedding_column(name)] = vector_array(vectors[name], failed)
        if spec.answers:
            columns[answer_column(name)] = pa.array(answers.get(name, [None] * len(texts)), pa.string())
    columns[ERROR] = pa.array(errors, pa.string())
    schema = pa.schema(list(batch.schema) + fields)
    return pa.record_batch([columns[f.name] for f in schema], schema=schema)


def check_request(columns: list[str], text: str, questions: Mapping[str, str], on_error: str) -> None:
    """Refuse a call that can't work before any task runs, naming the problem."""
    from inbedder.engine.validation import check_instructions

    if text not in columns:
        raise InBedderError(f"text column {text!r} is not in the input; it has: {', '.join(columns)}")
    if on_error not in ON_ERROR:
        raise InBedderError(f"on_error must be 'row' or 'raise', got {on_error!r}")
    if not questions:
        raise InBedderError("questions is empty: give at least one {name: question}")
    check_instructions(questions)
    taken = [c for c in columns if c in {KEY_HASH, ERROR} or any(c == embedding_column(n) for n in questions)]
    if taken:
        raise InBedderError(f"the input already has column(s) {', '.join(taken)}: drop or rename them first")
