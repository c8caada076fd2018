"""Index shards built on Spark executors from one centrally trained IVF quantizer.

Memory model: the driver holds the training sample (train_sample x dim x 4 bytes)
and, when merging, the final index (rows x bytes per vector, as the manifest's
index_bytes); each executor task holds the trained empty index (nlist x dim x 4)
plus its own partition's codes. Shards are written as FAISS files under
OUT/shards/ and merged into one index on the driver (`faiss.merge_into`); for
indexes larger than the driver's memory, keep the shards and serve them with
`faiss.IndexShards` (each shard file is a complete IVF index over its rows).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from inbedder.errors import IndexBuildError
from inbedder.index.build import BuildOptions, count_and_sample, new_manifest
from inbedder.index.choose import choose_index, forced_choice
from inbedder.index.manifest import Manifest
from inbedder.index.store import write_index
from inbedder.index.tune import tune_and_measure
from inbedder.index.vectors import faiss_metric, prepare
from inbedder.lake import KEY_HASH, VectorSource, embedding_column, output_files, quote, spark_uri


def spark_paths(table: str, fmt: str) -> list[str]:
    """The output's current files as Spark must name them (s3:// becomes s3a://)."""
    return [spark_uri(f) for f in output_files(table, fmt)]


def build_index_on_spark(spark, table: str, instruction: str, out_dir: str | Path,
                         options: BuildOptions | None = None, partitions: int | None = None) -> Manifest:
    import faiss

    options = options or BuildOptions()
    started = time.perf_counter()
    source = VectorSource.open(table, instruction)
    rows, sample = count_and_sample(source, options)
    if rows == 0:
        raise IndexBuildError(f"{table} has no vectors for instruction {instruction!r}")
    dim = sample.shape[1]
    choice = forced_choice(options.factory, rows) if options.factory else \
        choose_index(rows, dim, options.memory_budget_bytes)
    if not choice.spec.shardable:
        raise IndexBuildError(f"{choice.factory} is not an IVF index: shard building needs a shared quantizer; "
                          "build this size on one machine (inbedder index)")
    trained = faiss.index_factory(dim, choice.factory, faiss_metric(options.metric))
    trained.train(prepare(sample, options.metric))
    blob = spark.sparkContext.broadcast(faiss.serialize_index(trained).tobytes())
    out_dir = Path(out_dir)
    shard_dir = out_dir.parent / f".{out_dir.name}.shards"
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    key, column, metric = source.meta.key, embedding_column(instruction), options.metric
    from pyspark.sql import functions as F

    frame = spark.read.parquet(*spark_paths(table, source.format)).where(F.col(quote(column)).isNotNull())
    # keys keep the table's type, as in an index built on one machine (`build_index`)
    frame = frame.select(F.col(quote(key)).alias("key"), F.col(KEY_HASH).alias("text_sha256"), F.col(quote(column)),
                         F.monotonically_increasing_id().alias("id"))
    key_type = frame.schema["key"].dataType
    if partitions:
        frame = frame.repartition(partitions)
    folder = str(shard_dir)

    def add_partition(batches):
        import uuid

        import faiss as f

        shard = f.deserialize_index(np.frombuffer(blob.value, dtype=np.uint8))
        for batch in batches:
            vectors = batch.column(column).flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            shard.add_with_ids(prepare(vectors.reshape(batch.num_rows, -1), metric),
                               batch.column("id").to_numpy().astype(np.int64))
            yield pa.record_batch([batch.column("id"), batch.column("key"), batch.column("text_sha256")],
                                  names=["id", "key", "text_sha256"])
        f.write_index(shard, f"{folder}/shard-{uuid.uuid4().hex}.faiss")

    from pyspark.sql.types import LongType, StringType, StructField, StructType

    out_schema = StructType([StructField("id", LongType()), StructField("key", key_type),
                             StructField("text_sha256", StringType())])
    id_map = frame.mapInArrow(add_partition, out_schema).toArrow()
    merged = faiss.deserialize_index(np.frombuffer(blob.value, dtype=np.uint8))
    for shard_file in sorted(shard_dir.glob("shard-*.faiss")):
        faiss.merge_into(merged, faiss.read_index(str(shard_file)), False)
    shutil.rmtree(shard_dir, ignore_errors=True)
    if merged.ntotal != rows:
        raise IndexBuildError(f"shards hold {merged.ntotal} vectors but the table has {rows}: "
                              "a task ran twice or failed")
    keys_in_order = pa.concat_tables([k for k, _ in source.batches()]).column("key").to_pylist()
    id_by_key = dict(zip(id_map.column("key").to_pylist(), id_map.column("id").to_pylist()))
    id_of_position = np.array([id_by_key[k] for k in keys_in_order], dtype=np.int64)
    params, recall, queries = tune_and_measure(merged, choice, source, options, sample, id_of_position)
    manifest = new_manifest(source, dim, options, choice, params, recall, queries, int(merged.ntotal))
    return write_index(merged, id_map.sort_by("id"), manifest, out_dir, started)
