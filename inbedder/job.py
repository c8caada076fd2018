"""The batch job: a Spark DataFrame streamed through Ray replicas, committed to the lake.

Spark reads and schedules; Ray holds the models; `tables` commits. The work per
partition (`embed_partition`) knows nothing about Spark beyond Arrow batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from inbedder import local_cluster, tables
from inbedder.config import JobConfig
from inbedder.replicas import NAMESPACE, PoolClient, PoolHandle, start_pool
from inbedder.tables import ERROR, KEY_HASH, OutputMeta, TableError, answer_column, embedding_column, quote

TEXT_TYPES = (pa.string(), pa.large_string())
log_ = logging.getLogger(__name__)  # `log` is the run's progress callback


class JobError(RuntimeError):
    """The run failed for a reason the user can act on; the message is one line."""


@dataclass
class InstructionCounts:
    embedded: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class RunReport:
    run_id: str
    input: str
    input_version: int | None
    output: str
    output_format: str
    output_version: int | None = None
    model: str = ""
    fingerprint: str = ""
    rows_read: int = 0
    rows_embedded: int = 0
    rows_failed: int = 0
    rows_deleted: int = 0
    waves: int = 0
    instructions: dict[str, InstructionCounts] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: {"start_up": 0.0, "read": 0.0, "embed": 0.0,
                                                               "commit": 0.0, "total": 0.0})
    rows_per_second: float = 0.0
    padding_share: float = 0.0
    error_rate: float = 0.0
    status: str = "running"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        per = ", ".join(f"{n}: {c.embedded} embedded / {c.skipped} skipped / {c.failed} failed"
                        for n, c in self.instructions.items())
        s = self.seconds
        return (f"inbedder run {self.run_id}: {self.status}\n"
                f"  {self.rows_read} rows read from {self.input} (version {self.input_version}); "
                f"{self.rows_embedded} embedded, {self.rows_failed} with errors, {self.rows_deleted} removed\n"
                f"  {per}\n"
                f"  {self.rows_per_second:.1f} rows/s while embedding; padding {self.padding_share:.1%}; "
                f"time: start-up {s['start_up']:.1f}s, read {s['read']:.1f}s, embed {s['embed']:.1f}s, "
                f"commit {s['commit']:.1f}s, total {s['total']:.1f}s\n"
                f"  output {self.output} ({self.output_format}) version {self.output_version}; "
                f"model {self.model} ({self.fingerprint})")


# --- the per-partition work ----------------------------------------------------------

def output_schema(config: JobConfig, source: pa.Schema, instructions: list[str]) -> pa.Schema:
    key = config.input.key
    fields = [source.field(key), pa.field(KEY_HASH, pa.string())]
    fields += [source.field(c) for c in config.input.passthrough]
    for name in instructions:
        fields.append(pa.field(embedding_column(name), pa.list_(pa.float32())))
        if config.model.answers:
            fields.append(pa.field(answer_column(name), pa.string()))
    fields.append(pa.field(ERROR, pa.string()))
    return pa.schema(fields)


def embed_partition(batches: Iterator[pa.RecordBatch], client: PoolClient, questions: dict[str, str],
                    text_col: str, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Arrow batches in, Arrow batches with vectors out; rows keep their order."""

    def requests():
        for batch in batches:
            for start in range(0, batch.num_rows, batch_rows):
                chunk = batch.slice(start, batch_rows)
                yield chunk, chunk.column(text_col).to_pylist()

    for chunk, result in client.map(requests(), questions):
        yield _result_batch(chunk, result, questions, schema)


def _result_batch(chunk: pa.RecordBatch, result: dict, questions: dict[str, str], schema: pa.Schema) -> pa.RecordBatch:
    failed = np.array([e is not None for e in result["errors"]], dtype=bool)
    columns = {}
    for f in schema:
        if f.name in chunk.schema.names:
            columns[f.name] = chunk.column(f.name)
    for name in questions:
        vectors = np.ascontiguousarray(result["vectors"][name], dtype=np.float32)
        n, dim = vectors.shape
        offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
        columns[embedding_column(name)] = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)),
                                                                   mask=pa.array(failed))
        if result.get("answers"):
            columns[answer_column(name)] = pa.array(result["answers"][name], type=pa.string())
    columns[ERROR] = pa.array(result["errors"], type=pa.string())
    columns["_real_tokens"] = pa.array([result["real_tokens"]] + [0] * (chunk.num_rows - 1), type=pa.int64())
    columns["_computed_tokens"] = pa.array([result["computed_tokens"]] + [0] * (chunk.num_rows - 1), type=pa.int64())
    full = pa.schema(list(schema) + [pa.field("_real_tokens", pa.int64()), pa.field("_computed_tokens", pa.int64())])
    return pa.record_batch([columns[f.name] for f in full], schema=full)


# --- Spark and Ray -------------------------------------------------------------------

def start_spark(config: JobConfig):
    """(session, whether this call created it): a session the caller made is reused and left running."""
    if config.spark.master.startswith("local"):
        local_cluster.pin_to_loopback()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False

    builder = (SparkSession.builder.master(config.spark.master).appName("inbedder-embed")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.ray.batch_rows * 4))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.task.maxFailures", "4")
               .config("spark.ui.showConsoleProgress", "false"))  # the job prints its own progress line
    if config.spark.master.startswith("local"):
        # loopback only; and a handful of shuffle partitions instead of 200 tiny tasks on one machine
        quiet = Path(__file__).parent / "data" / "log4j2.properties"  # no JVM log lines between the job's own
        if not any(k.startswith("spark.driver.extraJavaOptions") for k in config.spark.conf):
            builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{quiet}")
        builder = (builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2))))
    for k, v in config.spark.conf.items():
        builder = builder.config(k, v)
    if config.spark.master.startswith("local"):
        local_cluster.watch_driver([local_cluster.SPARK_MARKER])  # a killed driver must not leave its JVM behind
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


@contextmanager
def ray_cluster(config: JobConfig) -> Iterator[str]:
    """Connect to the configured Ray cluster, or start a loopback-only one and stop it after."""
    if config.ray.address == "local":
        local_cluster.pin_to_loopback()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():  # the caller (a test session, a notebook) already holds a cluster
        yield ray.get_runtime_context().gcs_address
        return
    if config.ray.address == "local":
        try:
            info = local_cluster.start_local_ray(object_store_mb=config.ray.object_store_mb, namespace=NAMESPACE,
                                                 num_cpus=max(2, os.cpu_count() or 2))
        except local_cluster.LocalClusterError as exc:
            raise JobError(str(exc)) from exc
        local_cluster.watch_driver([info["session_dir"]])
        address = info["gcs_address"]
    else:
        ray.init(address=config.ray.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        address = config.ray.address if config.ray.address.startswith("ray://") else \
            ray.get_runtime_context().gcs_address
    try:
        yield address
    finally:
        ray.shutdown()


# --- the run -------------------------------------------------------------------------

def default_run_id(config: JobConfig, snapshot_version: int | None) -> str:
    """Stable across re-runs of the same job, so a re-run resumes the same staging and transactions."""
    basis = json.dumps({"in": config.input.path, "v": snapshot_version, "out": config.output.path,
                        "i": config.instructions, "m": config.model.name}, sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def check_source(snapshot: tables.Snapshot, config: JobConfig) -> None:
    names = snapshot.schema.names
    wanted = [config.input.key, config.input.text, *config.input.passthrough]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TableError(f"input {config.input.path} has no column(s) {', '.join(missing)} "
                         f"(it has: {', '.join(names)})")
    text_type = snapshot.schema.field(config.input.text).type
    if text_type not in TEXT_TYPES:
        raise TableError(f"input.text column {config.input.text!r} is {text_type}, not a string column")
    key_type = snapshot.schema.field(config.input.key).type
    if not (pa.types.is_integer(key_type) or pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
        raise TableError(f"input.key column {config.input.key!r} is {key_type}: use an integer or string key")
    reserved = [c for c in config.input.passthrough
                if c.startswith("_inbedder") or c.endswith(("_embedding", "_answer"))]
    if reserved:
        raise TableError(f"passthrough column(s) {reserved} collide with the output's own column names")


def run_job(config: JobConfig, log: Callable[[str], None] = print) -> RunReport:
    started = time.perf_counter()
    snapshot = tables.open_snapshot(config.input.path, config.input.format, config.input.version)
    check_source(snapshot, config)
    run_id = config.run_id or default_run_id(config, snapshot.version)
    report = RunReport(run_id, config.input.path, snapshot.version, config.output.path, config.output.format)
    existing = tables.existing_output(config.output.path, config.output.format)
    check_key_unchanged(existing, snapshot, config)
    if _made_by_this_model(existing, config):
        _rerun(config, snapshot, existing, report, started, log)
    else:
        _first_run(config, snapshot, existing, report, started, log)
    if config.index.out:
        report.seconds["index"] = _index_step(config, log)
    report.seconds["total"] = time.perf_counter() - started
    report.error_rate = report.rows_failed / report.rows_read if report.rows_read else 0.0
    report.status = "succeeded"
    if report.error_rate > config.max_error_rate:
        report.status = "failed"
        raise JobError(f"{report.rows_failed} of {report.rows_read} rows failed ({report.error_rate:.1%}), over "
                       f"max_error_rate {config.max_error_rate:.1%}; the rows and their errors are in the output")
    return report


def _made_by_this_model(existing: tables.ExistingOutput | None, config: JobConfig) -> bool:
    """The output holds this model's vectors, known from files alone (a hub model can't be known so)."""
    if existing is None or existing.meta is None:
        return False
    from inbedder.engine.embedder import expected_fingerprint

    expected = expected_fingerprint(config.model.name, adapter=config.model.adapter,
                                    max_length=config.model.max_length)
    return expected == existing.meta.fingerprint


def _rerun(config: JobConfig, snapshot: tables.Snapshot, existing: tables.ExistingOutput, report: RunReport,
           started: float, log: Callable[[str], None]) -> None:
    """Plan first, and start Ray and the model only when some row needs a vector: an unchanged source costs
    one Spark read, no replica."""
    spark, own_spark = start_spark(config)
    try:
        with spark_failures_explained():
            plan = plan_run(spark, config, snapshot, existing, report, log)
            if plan.rows_to_embed == 0:
                meta = OutputMeta(existing.meta.model, existing.meta.fingerprint, existing.meta.template,
                                  existing.meta.dim, config.input.key, dict(config.instructions))
                _check_existing(existing, meta, config)
                report.model, report.fingerprint = meta.model, meta.fingerprint
                report.seconds["start_up"] = time.perf_counter() - started - report.seconds["read"]
                finish(config, plan, existing, meta, report, [])
                tables.sweep_staging(config.output.path)
                log("nothing to embed: the output already holds every vector (no replica was started)")
                return
        ready: Future = Future()
        ready.set_result((spark, False))
        with ray_cluster(config) as address:
            _run_with_replicas(config, snapshot, existing, report, ready, address, started, log, plan)
    finally:
        if own_spark:
            spark.stop()


def _first_run(config: JobConfig, snapshot: tables.Snapshot, existing: tables.ExistingOutput | None,
               report: RunReport, started: float, log: Callable[[str], None]) -> None:
    """The JVM starts while Ray starts and the replicas load their model: the two waits overlap."""
    with ThreadPoolExecutor(1, thread_name_prefix="spark-start") as pool:
        spark_future = pool.submit(start_spark, config)
        try:
            with ray_cluster(config) as address:
                _run_with_replicas(config, snapshot, existing, report, spark_future, address, started, log)
        finally:
            if spark_future.exception() is None:
                spark, own_spark = spark_future.result()
                if own_spark:
                    spark.stop()


def _index_step(config: JobConfig, log: Callable[[str], None]) -> float:
    from inbedder.index import BuildOptions, build_or_update

    t0 = time.perf_counter()
    options = BuildOptions(metric=config.index.metric, memory_budget_bytes=int(config.index.memory_budget_gb * 2**30),
                           recall_target=config.index.recall_target)
    for name, (manifest, counts) in build_or_update(config.output.path, config.index.out,
                                                    list(config.instructions), options).items():
        log(f"index {name}: {manifest.factory} {manifest.rows} rows, recall@10 {manifest.recall_at_10} {counts}")
    return time.perf_counter() - t0


def _run_with_replicas(config: JobConfig, snapshot: tables.Snapshot, existing: tables.ExistingOutput | None,
                       report: RunReport, spark_future, address: str, started: float,
                       log: Callable[[str], None], plan: Plan | None = None) -> None:
    import ray

    attempt = uuid.uuid4().hex[:8]  # this process's try at the run: names its replicas and staging
    handle, actors = start_pool(config, address, f"{report.run_id[:8]}-{attempt}")
    try:
        spark, _ = spark_future.result()
        identity = ray.get(actors[0].identity.remote())
        report.model, report.fingerprint = identity["model"], identity["fingerprint"]
        meta = OutputMeta(identity["model"], identity["fingerprint"], identity["template"], identity["dim"],
                          config.input.key, dict(config.instructions))
        _check_existing(existing, meta, config)
        # a re-run planned before starting the replicas: its read time is not start-up
        report.seconds["start_up"] = time.perf_counter() - started - (report.seconds["read"] if plan else 0.0)
        with tables.StagingLease(config.output.path, f"{report.run_id}/{attempt}"), spark_failures_explained():
            plan = plan or plan_run(spark, config, snapshot, existing, report, log)
            execute(spark, config, plan, snapshot, existing, meta, handle, report, attempt, log)
    finally:
        for actor in actors:
            ray.kill(actor)


@contextmanager
def spark_failures_explained() -> Iterator[None]:
    """A Spark or Py4J exception leaves as a one-line JobError (the Java trace stays on it as the cause)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except (Py4JJavaError, PySparkException) as exc:
        raise JobError(explain_spark_failure(exc)) from exc


_FAILED_FILE = re.compile(r"error while reading file (\S+?)\.?(?:\s|$)")
_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.+)$", re.MULTILINE)


def explain_spark_failure(exc: BaseException) -> str:
    """One line for a Spark failure: which input file, and what to do; the Java trace goes to the log."""
    log_.debug("Spark failed", exc_info=exc)
    text = str(exc)
    failed = _FAILED_FILE.search(text)
    if failed:
        path = failed.group(1)
        return f"Spark could not read file {path}: it {tables.unreadable_file_reason(path)}"
    causes = _CAUSE.findall(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = causes[-1] if causes else (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)
    return f"Spark failed: {detail[:300]}"


def check_key_unchanged(existing: tables.ExistingOutput | None, snapshot: tables.Snapshot,
                        config: JobConfig) -> None:
    """An output keyed by integers can't take string keys (or the reverse): rows would never match again."""
    key = config.input.key
    if existing is None or key not in existing.schema.names:
        return
    before, now = existing.schema.field(key).type, snapshot.schema.field(key).type

    def kind(t: pa.DataType) -> str:
        return "integer" if pa.types.is_integer(t) else "string" if t in TEXT_TYPES else str(t)

    if kind(before) != kind(now):
        raise TableError(f"output {config.output.path} is keyed by {key!r} of type {before}, but the source's "
                         f"{key!r} is now {now}: no row would match its earlier output. Write to a new output "
                         f"path, or give the source key its earlier type")


def _check_existing(existing: tables.ExistingOutput | None, meta: OutputMeta, config: JobConfig) -> None:
    if existing is None:
        return
    if existing.meta is None:
        if config.output.mode == "merge":
            return  # a source table that has not been embedded into yet
        raise TableError(f"output {config.output.path} exists but was not written by inbedder: refusing to modify it")
    if existing.meta.fingerprint != meta.fingerprint:
        raise TableError(
            f"output {config.output.path} holds vectors from model {existing.meta.model!r} "
            f"(fingerprint {existing.meta.fingerprint}); this run uses {meta.model!r} ({meta.fingerprint}). "
            "Mixing them would make the vectors incomparable: write to a new output path.")
    if existing.meta.key != config.input.key:
        raise TableError(f"output {config.output.path} is keyed by {existing.meta.key!r}, not {config.input.key!r}")


# --- the Spark plan ------------------------------------------------------------------

def spark_uri(path: str) -> str:
    """delta-rs and pyarrow say s3://; Spark's Hadoop connector wants s3a://."""
    return "s3a://" + path[len("s3://"):] if path.startswith("s3://") else path


def read_source(spark, snapshot: tables.Snapshot):
    reader = spark.read
    if snapshot.format == "parquet" and not tables.is_remote(snapshot.path) and os.path.isdir(snapshot.path):
        reader = reader.option("basePath", snapshot.path)  # keeps hive partition columns
        return reader.parquet(*snapshot.files)
    if snapshot.format == "delta" and snapshot.partition_columns:
        reader = reader.option("basePath", spark_uri(snapshot.path.rstrip("/")))
    return reader.parquet(*[spark_uri(f) for f in snapshot.files])


def existing_state(spark, config: JobConfig, existing: tables.ExistingOutput, usable: list[str]):
    """Per output row: its key, the hash of the text its vectors came from, and which vectors it has."""
    from pyspark.sql import functions as F

    files = tables.output_files(config.output.path, existing.format)
    if not files:
        return None
    out = spark.read.parquet(*[spark_uri(f) for f in files])
    has_error = F.col(ERROR).isNotNull() if ERROR in out.columns else F.lit(False)
    cols = [F.col(quote(config.input.key)).alias("_k"),
            (F.col(KEY_HASH) if KEY_HASH in out.columns else F.lit(None).cast("string")).alias("_h")]
    for name in usable:
        cols.append((F.col(embedding_column(name)).isNotNull() | has_error).alias(f"_has_{name}"))
    return out.select(*cols)


@dataclass
class Plan:
    """What a run must embed: the source rows (cached), the rows missing a vector, and how many per
    combination of missing instructions."""

    df: object
    todo: object
    combos: dict[tuple[bool, ...], int]
    state: object | None  # the output's keys and hashes as of the start (None: no output yet)
    stale: list[str]

    @property
    def rows_to_embed(self) -> int:
        return sum(self.combos.values())


def plan_run(spark, config: JobConfig, snapshot: tables.Snapshot, existing: tables.ExistingOutput | None,
             report: RunReport, log: Callable[[str], None]) -> Plan:
    from pyspark.sql import functions as F

    t_read = time.perf_counter()
    key, text, passthrough = config.input.key, config.input.text, config.input.passthrough
    names = list(config.instructions)
    df = read_source(spark, snapshot).select(*[F.col(quote(c)) for c in (key, text, *passthrough)])
    if config.input.filter:
        df = df.where(config.input.filter)
    df = df.withColumn(KEY_HASH, F.sha2(F.col(quote(text)), 256)).cache()
    # one pass over the source for the row count and both key checks
    stats = df.agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col(quote(key)).isNull().cast("long")).alias("nulls"),
                   F.countDistinct(F.col(quote(key))).alias("distinct")).first()
    report.rows_read = int(stats["rows"])
    if report.rows_read == 0:
        raise TableError(f"input {config.input.path} has no rows to embed" +
                         (f" after filter {config.input.filter!r}" if config.input.filter else ""))
    if stats["nulls"]:
        raise TableError(f"input.key column {key!r} has {stats['nulls']} null value(s): every row needs a key")
    if stats["distinct"] < report.rows_read:
        repeated = df.groupBy(F.col(quote(key))).count().where("count > 1")
        examples = [str(r[key]) for r in repeated.limit(3).collect()]
        raise TableError(f"input.key column {key!r} is not unique: {repeated.count()} key(s) repeat, e.g. "
                         f"{', '.join(examples)}")

    recorded = existing.meta.instructions if existing and existing.meta else {}
    changed = [n for n in names if n in recorded and recorded[n] != config.instructions[n]]
    stale = [n for n in recorded if n not in config.instructions]  # kept, but nulled where a text changes
    present_cols = set(existing.schema.names) if existing else set()
    usable = [n for n in names if embedding_column(n) in present_cols and n not in changed]
    if changed and existing is not None and existing.format == "delta":
        report.seconds["commit"] += _clear_columns(config, changed, log)
    state = existing_state(spark, config, existing, usable) if existing is not None else None
    if state is None:
        todo = df.select("*", *[F.lit(True).alias(f"_miss_{n}") for n in names])
    else:
        joined = df.join(state, df[quote(key)] == state["_k"], "left")
        same = joined["_h"].eqNullSafe(joined[KEY_HASH]) & joined["_k"].isNotNull()
        miss = [(~same | ~F.coalesce(F.col(f"_has_{n}"), F.lit(False))) if n in usable else F.lit(True)
                for n in names]
        todo = joined.select(*[df[quote(c)] for c in df.columns], *[m.alias(f"_miss_{n}") for n, m in zip(names, miss)])
    todo = todo.where(" OR ".join(f"_miss_{n}" for n in names)).cache()
    combos = {tuple(bool(r[f"_miss_{n}"]) for n in names): int(r["count"])
              for r in todo.groupBy(*[f"_miss_{n}" for n in names]).count().collect()}
    report.seconds["read"] = time.perf_counter() - t_read
    for n in names:
        report.instructions[n] = InstructionCounts()
    return Plan(df, todo, combos, state, stale)


def execute(spark, config: JobConfig, plan: Plan, snapshot: tables.Snapshot, existing: tables.ExistingOutput | None,
            meta: OutputMeta, handle: PoolHandle, report: RunReport, attempt: str,
            log: Callable[[str], None]) -> None:
    """Embed the plan's rows wave by wave through the replicas, committing each wave, then finish."""
    from pyspark.sql import functions as F

    key, names, todo, combos, stale = config.input.key, list(config.instructions), plan.todo, plan.combos, plan.stale
    parquet_parts: list[pa.Table] = []
    wave_seq = tables.delta_transaction_version(config.output.path, report.run_id) + 1 \
        if config.output.format == "delta" else 0
    real = computed = 0
    embed_rows = 0
    t_embed_total = 0.0
    progress = _Progress(sum(combos.values()), config.progress, log)
    for combo, rows in sorted(combos.items(), reverse=True):
        chosen = [n for n, m in zip(names, combo) if m]
        subset = todo.where(" AND ".join([f"_miss_{n}" if m else f"NOT _miss_{n}" for n, m in zip(names, combo)]))
        waves = max(1, math.ceil(rows / config.output.wave_rows))
        subset = subset.withColumn("_wave", F.pmod(F.xxhash64(F.col(quote(key))), F.lit(waves)))
        schema = output_schema(config, snapshot.schema, chosen)
        for w in range(waves):
            t0 = time.perf_counter()
            data = _run_wave(spark, config, subset.where(F.col("_wave") == w), math.ceil(rows / waves), schema,
                             chosen, handle,
                             f"{report.run_id}/{attempt}", wave_seq, progress)
            t1 = time.perf_counter()
            t_embed_total += t1 - t0
            real += pa.compute.sum(data.column("_real_tokens")).as_py() or 0
            computed += pa.compute.sum(data.column("_computed_tokens")).as_py() or 0
            errors = data.num_rows - data.column(ERROR).null_count
            embed_rows += data.num_rows
            report.rows_embedded += data.num_rows - errors
            report.rows_failed += errors
            for n in chosen:
                report.instructions[n].embedded += data.num_rows - errors
                report.instructions[n].failed += errors
            data = data.drop_columns(["_real_tokens", "_computed_tokens"])
            if config.output.format == "delta":
                update = [c for c in data.column_names if c != key]
                version = tables.commit_delta_wave(
                    config.output.path, data, key, meta_with(meta, existing), report.run_id, wave_seq,
                    update_columns=update, null_when_changed=[embedding_column(n) for n in stale])
                report.output_version = version if version is not None else report.output_version
                tables.remove_staging(config.output.path, f"{report.run_id}/{attempt}/wave-{wave_seq}")
            else:
                parquet_parts.append(data)
            report.waves += 1
            wave_seq += 1
            report.seconds["commit"] += time.perf_counter() - t1
    progress.close()
    report.seconds["embed"] = t_embed_total
    report.rows_per_second = embed_rows / t_embed_total if t_embed_total else 0.0
    report.padding_share = 1 - real / computed if computed else 0.0
    finish(config, plan, existing, meta, report, parquet_parts)
    tables.remove_staging(config.output.path, f"{report.run_id}/{attempt}")


def finish(config: JobConfig, plan: Plan, existing: tables.ExistingOutput | None, meta: OutputMeta,
           report: RunReport, parquet_parts: list[pa.Table]) -> None:
    """Count what was skipped, remove rows whose key left the source, record the output's metadata."""
    from pyspark.sql import functions as F

    key, df, state = config.input.key, plan.df, plan.state
    for n in config.instructions:
        c = report.instructions[n]
        c.skipped = report.rows_read - c.embedded - c.failed
    t_commit = time.perf_counter()
    if config.output.format == "delta":
        if config.output.mode == "sidecar" and state is not None:
            # keys that left the source: an anti-join in Spark; only those reach the driver, never all keys
            gone = state.join(df, state["_k"] == df[quote(key)], "left_anti").select("_k").toArrow().column("_k")
            report.rows_deleted = tables.delete_keys(config.output.path, key, gone, report.run_id)
        if report.waves == 0 and existing is not None:
            tables.set_output_meta(config.output.path, meta_with(meta, existing))
        report.output_version = tables.delta_version(config.output.path)
    else:  # Parquet output is rewritten whole at each run (no log to commit to): the source keys are needed
        keys = df.select(F.col(quote(key))).toArrow().column(key)
        report.rows_deleted = tables.commit_parquet_output(config.output.path, existing, parquet_parts, key, keys,
                                                          meta_with(meta, existing))
    report.seconds["commit"] += time.perf_counter() - t_commit
    df.unpersist()
    plan.todo.unpersist()


def meta_with(meta: OutputMeta, existing: tables.ExistingOutput | None) -> OutputMeta:
    """The output's record after this run: instructions from before are kept."""
    instructions = dict(existing.meta.instructions) if existing and existing.meta else {}
    instructions.update(meta.instructions)
    return OutputMeta(meta.model, meta.fingerprint, meta.template, meta.dim, meta.key, instructions)


def _clear_columns(config: JobConfig, changed: list[str], log: Callable[[str], None]) -> float:
    t0 = time.perf_counter()
    log(f"instruction text changed for {', '.join(changed)}: clearing those vectors before re-embedding")
    tables.clear_columns(config.output.path, [embedding_column(n) for n in changed] +
                         ([answer_column(n) for n in changed] if config.model.answers else []))
    return time.perf_counter() - t0


def _run_wave(spark, config: JobConfig, part, expected_rows: int, schema: pa.Schema, chosen: list[str],
              handle: PoolHandle, run_id: str, wave_seq: int, progress: _Progress) -> pa.Table:
    """One wave through the replicas into staged Parquet files, read back as one Arrow table."""
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    key, text_col = config.input.key, config.input.text
    questions = {n: config.instructions[n] for n in chosen}
    full = pa.schema(list(schema) + [pa.field("_real_tokens", pa.int64()), pa.field("_computed_tokens", pa.int64())])
    # Spark's mapInArrow resolves output fields by parsed name (a dot would split one): the leg through
    # Spark uses positional names, the Arrow side the real ones
    keep = list(dict.fromkeys([key, KEY_HASH, text_col, *config.input.passthrough]))
    inner_in = [f"_c{i}" for i in range(len(keep))]
    inner_out = [f"_c{i}" for i in range(len(full))]
    spark_schema = from_arrow_schema(pa.schema([f.with_name(n) for f, n in zip(full, inner_out)]))
    partitions = max(1, math.ceil(expected_rows / config.spark.rows_per_partition))
    accumulator = progress.accumulator(spark)
    batch_rows = config.ray.batch_rows

    def embed_fn(batches):
        client = PoolClient(handle)
        named = (b.rename_columns(keep) for b in batches)
        for out in embed_partition(named, client, questions, text_col, schema, batch_rows):
            accumulator.add(out.num_rows)
            yield out.rename_columns(inner_out)

    staged = tables.staging_dir(config.output.path, f"{run_id}/wave-{wave_seq}")
    out = (part.select(*[F.col(quote(c)).alias(n) for c, n in zip(keep, inner_in)]).repartition(partitions)
           .mapInArrow(embed_fn, spark_schema))
    out.write.mode("overwrite").parquet(spark_uri(staged))
    data = ds.dataset(staged, format="parquet").to_table().select(inner_out).rename_columns(full.names)
    progress.wave_done(data.num_rows)
    return data


class _Progress:
    """A live line: rows done, rows/s, ETA; fed by a Spark accumulator as tasks finish."""

    def __init__(self, total: int, enabled: bool, log: Callable[[str], None]):
        self.total, self.enabled, self.log = total, enabled, log
        self.done_before = 0
        self.acc = None
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = None
        if enabled and total:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def accumulator(self, spark):
        self.acc = spark.sparkContext.accumulator(0)
        return self.acc

    def wave_done(self, rows: int) -> None:
        self.done_before += rows
        self.acc = None

    def current(self) -> int:
        return self.done_before + (self.acc.value if self.acc is not None else 0)

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self._print()

    def _print(self) -> None:
        done = min(self.current(), self.total)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        print(f"\r[inbedder] {done}/{self.total} rows  {rate:.1f} rows/s  ETA {eta:.0f}s", end="",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._print()
            print(file=sys.stderr)
