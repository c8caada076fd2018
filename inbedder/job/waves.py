"""One wave: the plan's rows through the replicas (Spark mapInArrow) into Parquet files the executors stage.

The per-partition work (`embed_partition`) knows nothing about Spark beyond Arrow batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from inbedder.batches import vector_array
from inbedder.job.replicas import PoolClient, PoolHandle
from inbedder.lake import (ERROR, KEY_HASH, StagedFile, StagedWave, answer_column, embedding_column, quote,
                           status_column, write_staged_files)

if TYPE_CHECKING:  # the workers that run a wave never read the settings
    from inbedder.job.settings import JobConfig

DEFAULT_FILE_MB = 128  # an executor's staged file is cut at this size when output.target_file_mb is not set


def output_schema(config: JobConfig, source: pa.Schema, instructions: list[str]) -> pa.Schema:
    key = config.input.key
    fields = [source.field(key), pa.field(KEY_HASH, pa.string())]
    fields += [source.field(c) for c in config.input.passthrough]
    for name in instructions:
        fields.append(pa.field(embedding_column(name), pa.list_(pa.float32())))
        fields.append(pa.field(status_column(name), pa.bool_()))
        if config.model.answers:
            fields.append(pa.field(answer_column(name), pa.string()))
    fields.append(pa.field(ERROR, pa.string()))
    return pa.schema(fields)


class WaveCounters:
    """Rows and tokens counted on the executors (Spark accumulators), read on the driver for the report and the
    progress bar; a retried task counts twice, so these are statistics, never bookkeeping."""

    def __init__(self, spark):
        context = spark.sparkContext
        self.rows, self.real_tokens, self.computed_tokens = (context.accumulator(0), context.accumulator(0),
                                                             context.accumulator(0))

    def add(self, rows: int, real_tokens: int, computed_tokens: int) -> None:
        self.rows.add(rows)
        self.real_tokens.add(real_tokens)
        self.computed_tokens.add(computed_tokens)


def embed_partition(batches: Iterator[pa.RecordBatch], client: PoolClient, questions: dict[str, str],
                    text_col: str, schema: pa.Schema, batch_rows: int,
                    counters: WaveCounters | None = None) -> Iterator[pa.RecordBatch]:
    """Arrow batches in, Arrow batches with vectors out; rows keep their order."""

    def requests():
        for batch in batches:
            for start in range(0, batch.num_rows, batch_rows):
                chunk = batch.slice(start, batch_rows)
                yield chunk, chunk.column(text_col).to_pylist()

    for chunk, result in client.map(requests(), questions):
        if counters is not None:
            counters.add(chunk.num_rows, result["real_tokens"], result["computed_tokens"])
        yield result_batch(chunk, result, questions, schema)


def result_batch(chunk: pa.RecordBatch, result: dict, questions: dict[str, str], schema: pa.Schema) -> pa.RecordBatch:
    failed = np.array([e is not None for e in result["errors"]], dtype=bool)
    columns = {}
    for f in schema:
        if f.name in chunk.schema.names:
            columns[f.name] = chunk.column(f.name)
    for name in questions:
        columns[embedding_column(name)] = vector_array(result["vectors"][name], failed)
        columns[status_column(name)] = pa.array(np.ones(len(failed), dtype=bool), mask=failed)
        if result.get("answers"):
            columns[answer_column(name)] = pa.array(result["answers"][name], type=pa.string())
    columns[ERROR] = pa.array(result["errors"], type=pa.string())
    return pa.record_batch([columns[f.name] for f in schema], schema=schema)


def request_rows(batch_rows: int, wave_rows: int, replicas: int) -> int:
    """Rows per request: `batch_rows`, or fewer when a wave is too small to give every replica two requests
    (a single-threaded CPU replica works on one request at a time; 200 rows in one request left the other
    replica idle and took twice as long)."""
    return max(1, min(batch_rows, math.ceil(wave_rows / (2 * max(1, replicas)))))


def run_wave(spark, config: JobConfig, part, expected_rows: int, schema: pa.Schema, chosen: tuple[str, ...],
             handle: PoolHandle, staged: str, counters: WaveCounters) -> StagedWave:
    """One wave through the replicas into Parquet files the executors write under `staged`; the driver
    gets back only the files' description (no vector passes through it)."""
    from pyspark import TaskContext
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    key, text_col = config.input.key, config.input.text
    questions = {n: config.instructions[n] for n in chosen}
    # Spark resolves a frame's fields by parsed name (a dot would split one): the leg through Spark
    # uses positional names, the Arrow side the real ones
    keep = list(dict.fromkeys([key, KEY_HASH, text_col, *config.input.passthrough]))
    inner_in = [f"_c{i}" for i in range(len(keep))]
    partitions = max(1, math.ceil(expected_rows / config.spark.rows_per_partition))
    batch_rows = request_rows(config.ray.batch_rows, expected_rows, len(handle.actor_names))
    target_bytes = (config.output.target_file_mb or DEFAULT_FILE_MB) * 2**20

    def embed_fn(batches):
        client = PoolClient(handle)
        named = (b.rename_columns(keep) for b in batches)
        prefix = f"p{TaskContext.get().partitionId():05d}"
        files = write_staged_files(embed_partition(named, client, questions, text_col, schema, batch_rows, counters),
                                   staged, schema, key, prefix, target_bytes)
        yield pa.record_batch([pa.array([f.to_json() for f in files], pa.string())], names=["file"])

    described = StructType([StructField("file", StringType())])
    rows = (part.select(*[F.col(quote(c)).alias(n) for c, n in zip(keep, inner_in)]).repartition(partitions)
            .mapInArrow(embed_fn, described).collect())
    return StagedWave(tuple(StagedFile.from_json(r["file"]) for r in rows), schema)
