"""The batch job: a Spark DataFrame streamed through Ray replicas, committed to the lake.

Spark reads and schedules; Ray holds the models; `lake` commits. A run is:
check (before anything starts) -> plan (one Spark read of the source and the
output's state) -> execute the plan's waves through the replicas, one commit
each -> finish (deletions, metadata) -> the optional index step. A re-run whose
source and settings are those of the output's last run starts neither Spark, Ray
nor the model; any other re-run plans while the replicas start.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from inbedder import lake
from inbedder.errors import JobError, TableError
from inbedder.job.cluster import ray_cluster, start_spark
from inbedder.job.plan import (Plan, Wave, check_existing, check_key_unchanged, check_source, default_run_id,
                               made_by_this_model, meta_with, plan_instructions, source_settings)
from inbedder.job.replicas import PoolHandle, start_pool
from inbedder.job.report import InstructionCounts, RunReport
from inbedder.job.settings import JobConfig
from inbedder.job.spark import existing_state, read_source, spark_failures_explained
from inbedder.job.waves import WaveCounters, output_schema, run_wave
from inbedder.lake import KEY_HASH, OutputMeta, quote, vector_columns
from inbedder.console import PolledProgress

log = logging.getLogger(__name__)


def run_job(config: JobConfig) -> RunReport:
    """Run the job the configuration describes; raises an `InBedderError` subclass on a user-fixable problem."""
    started = time.perf_counter()
    snapshot = lake.open_snapshot(config.input.path, config.input.format, config.input.version)
    check_source(snapshot, config)
    run_id = config.run_id or default_run_id(config, snapshot.version)
    output = lake.open_output_table(config.output.path, config.output.format, config.input.key,
                                    config.output.target_file_mb and config.output.target_file_mb * 2**20)
    check_key_unchanged(output.existing, snapshot, config)
    run = _Run(config, snapshot, output, RunReport(run_id, config.input.path, snapshot.version,
                                                   config.output.path, config.output.format), started)
    if not made_by_this_model(output.existing, config):
        run.first_run()
    elif not run.unchanged_since_last_run():
        run.rerun()
    report = run.report
    if config.index.out:
        report.seconds["index"] = _index_step(config)
    report.seconds["total"] = time.perf_counter() - started
    report.error_rate = report.rows_failed / report.rows_read if report.rows_read else 0.0
    report.status = "succeeded"
    if report.error_rate > config.max_error_rate:
        report.status = "failed"
        raise JobError(f"{report.rows_failed} of {report.rows_read} rows failed ({report.error_rate:.1%}), over "
                       f"max_error_rate {config.max_error_rate:.1%}; the rows and their errors are in the output")
    return report


def _index_step(config: JobConfig) -> float:
    from inbedder.index import build_or_update

    t0 = time.perf_counter()
    assert config.index.out is not None
    for name, (manifest, counts) in build_or_update(config.output.path, config.index.out, list(config.instructions),
                                                    config.index.build_options()).items():
        log.info("index %s: %s %d rows, recall@10 %s %s", name, manifest.factory, manifest.rows,
                 manifest.recall_at_10, counts)
    return time.perf_counter() - t0


@dataclass
class _Run:
    """One run's inputs, its output table and its report, shared by its steps."""

    config: JobConfig
    snapshot: lake.Snapshot
    output: lake.OutputTable  # opened once: every read of the output's state and every write goes through it
    report: RunReport
    started: float

    @property
    def existing(self) -> lake.ExistingOutput | None:
        """What the output held when the run opened it."""
        return self.output.existing

    # --- the three ways a run starts -------------------------------------------------

    def unchanged_since_last_run(self) -> bool:
        """The source snapshot and settings are those of the output's last run, and no commit since has touched
        its rows: done, having read only the output's log (no Spark, no Ray, no model)."""
        existing, report = self.existing, self.report
        if existing is None or existing.meta is None:
            return False
        state = self.output.unchanged_state(self.digest(existing.meta.fingerprint))
        if state is None:
            return False
        check_existing(existing, existing.meta, self.config)
        report.model, report.fingerprint = existing.meta.model, existing.meta.fingerprint
        report.rows_read, report.rows_failed, rows = state.rows, state.failed, state.rows
        report.instructions = {n: InstructionCounts(skipped=rows) for n in self.config.instructions}
        report.output_version = existing.version
        report.seconds["start_up"] = time.perf_counter() - self.started
        self.output.sweep_staging()
        log.info("nothing to embed: the source and the settings are those of the output's last run "
                 "(no Spark read; no replica was started)%s",
                 f"; {state.failed} of its rows failed then (their errors are in the output)" if state.failed else "")
        return True

    def digest(self, fingerprint: str) -> str:
        return lake.source_digest(self.snapshot, source_settings(self.config, fingerprint))

    def rerun(self) -> None:
        """The source (or the settings) changed since the output's last run: Spark plans while Ray starts and
        the replicas load their model, so the two waits overlap as on a first run. A plan with nothing to
        embed (rows rewritten, none changed) stops the replicas unused: they cost CPU, not wall time."""
        with ThreadPoolExecutor(1, thread_name_prefix="spark-plan") as pool:
            planned = pool.submit(self._start_spark_and_plan)
            try:
                with ray_cluster(self.config) as address:
                    self.with_replicas(lambda: planned.result()[0], address, lambda: planned.result()[2])
            finally:
                if planned.exception() is None:
                    spark, own_spark, _ = planned.result()
                    if own_spark:
                        spark.stop()

    def _start_spark_and_plan(self) -> tuple[object, bool, Plan]:
        spark, own_spark = start_spark(self.config)
        try:
            with spark_failures_explained():
                return spark, own_spark, self.plan(spark)
        except BaseException:
            if own_spark:
                spark.stop()
            raise

    def first_run(self) -> None:
        """The JVM starts while Ray starts and the replicas load their model: the two waits overlap."""
        with ThreadPoolExecutor(1, thread_name_prefix="spark-start") as pool:
            spark_future = pool.submit(start_spark, self.config)
            try:
                with ray_cluster(self.config) as address:
                    self.with_replicas(lambda: spark_future.result()[0], address, None)
            finally:
                if spark_future.exception() is None:
                    spark, own_spark = spark_future.result()
                    if own_spark:
                        spark.stop()

    def with_replicas(self, spark_ready: Callable[[], object], address: str,
                      plan_ready: Callable[[], Plan] | None) -> None:
        import ray

        config, report = self.config, self.report
        attempt = uuid.uuid4().hex[:8]  # this process's try at the run: names its replicas and staging
        handle, actors = start_pool(config, address, f"{report.run_id[:8]}-{attempt}")
        report.replicas_started = True
        try:
            spark = spark_ready()
            plan = plan_ready() if plan_ready else None
            if plan is not None and plan.rows_to_embed == 0:
                self.finish_without_replicas(plan)
                return
            identity = ray.get(actors[0].identity.remote())
            report.model, report.fingerprint = identity["model"], identity["fingerprint"]
            meta = OutputMeta(identity["model"], identity["fingerprint"], identity["template"], identity["dim"],
                              config.input.key, dict(config.instructions), config.input.text)
            check_existing(self.existing, meta, config)
            # a re-run planned while the replicas started: its read time is not start-up
            report.seconds["start_up"] = time.perf_counter() - self.started - (report.seconds["read"] if plan else 0)
            with self.output.writing(report.run_id, attempt), spark_failures_explained():
                plan = plan or self.plan(spark)
                self.execute(spark, plan, meta, handle)
        finally:
            for actor in actors:
                ray.kill(actor)

    # --- plan -------------------------------------------------------------------------

    def plan(self, spark) -> Plan:
        """One pass over the source (row count, key checks) joined with the output's keys and hashes."""
        from pyspark.sql import functions as F

        config, existing, report = self.config, self.existing, self.report
        t_read = time.perf_counter()
        key, text, passthrough = config.input.key, config.input.text, config.input.passthrough
        names = list(config.instructions)
        df = read_source(spark, self.snapshot).select(*[F.col(quote(c)) for c in (key, text, *passthrough)])
        if config.input.filter:
            df = df.where(config.input.filter)
        df = df.withColumn(KEY_HASH, F.sha2(F.col(quote(text)), 256)).cache()
        stats = df.agg(F.count(F.lit(1)).alias("rows"),
                       F.sum(F.col(quote(key)).isNull().cast("long")).alias("nulls"),
                       F.countDistinct(F.col(quote(key))).alias("distinct")).first()
        report.rows_read = int(stats["rows"])
        _check_keys(config, df, report.rows_read, int(stats["nulls"] or 0), int(stats["distinct"]))
        log.info("plan: %d source rows read, hashed and key-checked in %.1f s", report.rows_read,
                 time.perf_counter() - t_read)
        t_join = time.perf_counter()

        recorded = existing.meta.instructions if existing and existing.meta else {}
        instructions = plan_instructions(config.instructions, recorded,
                                         set(existing.schema.names) if existing else set())
        if instructions.changed and existing is not None:
            report.seconds["commit"] += self._clear_columns(instructions.changed)
        state = existing_state(spark, config, self.output, instructions.usable) if existing is not None else None
        if state is None:
            todo = df.select("*", *[F.lit(True).alias(f"_miss_{n}") for n in names], F.lit(True).alias("_new"),
                             F.lit(False).alias("_gone"), F.lit(None).cast(df.schema[key].dataType).alias("_k"))
        else:
            # one full join finds what to embed, which keys are new, and which left the source (`_gone`)
            joined = df.join(state, df[quote(key)] == state["_k"], "full_outer")
            in_source = joined[quote(key)].isNotNull()
            same = joined["_h"].eqNullSafe(joined[KEY_HASH]) & joined["_k"].isNotNull()
            miss = [in_source & ((~same | ~F.coalesce(F.col(f"_has_{n}"), F.lit(False)))
                                 if n in instructions.usable else F.lit(True)) for n in names]
            todo = joined.select(*[df[quote(c)] for c in df.columns],
                                 *[m.alias(f"_miss_{n}") for n, m in zip(names, miss)],
                                 joined["_k"].isNull().alias("_new"), (~in_source).alias("_gone"), joined["_k"])
        todo = todo.where(" OR ".join(["_gone", *[f"_miss_{n}" for n in names]])).cache()
        combos: dict[tuple[bool, ...], int] = {}
        new_keys: dict[tuple[bool, ...], int] = {}
        gone = 0
        for r in todo.groupBy(*[f"_miss_{n}" for n in names], "_new", "_gone").count().collect():
            if r["_gone"]:
                gone += int(r["count"])
                continue
            missing = tuple(bool(r[f"_miss_{n}"]) for n in names)
            combos[missing] = combos.get(missing, 0) + int(r["count"])
            if r["_new"]:
                new_keys[missing] = int(r["count"])
        report.seconds["read"] = time.perf_counter() - t_read
        log.info("plan: joined with the output's state in %.1f s: %d rows to embed (%d of new keys), %d keys gone",
                 time.perf_counter() - t_join, sum(combos.values()), sum(new_keys.values()), gone)
        report.instructions = {n: InstructionCounts() for n in names}
        return Plan(df, todo, combos, state, instructions, new_keys, gone)

    def _clear_columns(self, changed: list[str]) -> float:
        t0 = time.perf_counter()
        log.info("instruction text changed for %s: clearing those vectors before re-embedding", ", ".join(changed))
        self.output.clear_columns([c for n in changed for c in vector_columns(n, self.config.model.answers)])
        return time.perf_counter() - t0

    # --- execute ------------------------------------------------------------------------

    def execute(self, spark, plan: Plan, meta: OutputMeta, handle: PoolHandle) -> None:
        """Embed the plan's rows wave by wave through the replicas, committing each wave, then finish."""
        from pyspark.sql import functions as F

        config, report, output = self.config, self.report, self.output
        key, names = config.input.key, list(config.instructions)
        stale = tuple(c for n in plan.instructions.stale for c in vector_columns(n))
        recorded = meta_with(meta, self.existing)
        counters = WaveCounters(spark)
        progress = PolledProgress(plan.rows_to_embed, lambda: counters.rows.value, enabled=config.progress)
        embed_seconds = 0.0
        waves = plan.waves(names, config.output.wave_rows)
        by_wave = _rows_by_wave(plan.todo, names, key, waves)
        # keys that left the source are deleted by the last planned MERGE, which rewrites their files anyway
        fold_into = (max((i for i, w in enumerate(waves) if not w.new_keys), default=None)
                     if output.deletes_with_a_wave and self.gone_to_delete(plan) else None)
        try:
            for index, wave in enumerate(waves):
                t0 = time.perf_counter()
                rows = by_wave.where(F.col("_wave") == index)
                wave_id = output.next_wave()
                wave_files = run_wave(spark, config, rows, wave.expected_rows,
                                      output_schema(config, self.snapshot.schema, list(wave.instructions)),
                                      wave.instructions, handle, output.staging_for(wave_id), counters)
                t1 = time.perf_counter()
                embed_seconds += t1 - t0
                self._count(wave_files, wave.instructions)
                gone = _gone_keys(plan) if index == fold_into else None
                written = output.write(wave_id, lake.WaveWrite(wave_files, wave.new_keys, stale, gone), recorded)
                report.waves_appended += written.how == "append"
                report.output_version = written.version if written.version is not None else report.output_version
                report.waves += 1
                report.wave_commit_seconds.append(time.perf_counter() - t1)
                report.seconds["commit"] += report.wave_commit_seconds[-1]
        finally:
            progress.close()
            by_wave.unpersist()
        embedded = report.rows_embedded + report.rows_failed
        report.seconds["embed"] = embed_seconds
        report.rows_per_second = embedded / embed_seconds if embed_seconds else 0.0
        computed = counters.computed_tokens.value
        report.padding_share = 1 - counters.real_tokens.value / computed if computed else 0.0
        self.finish(plan, meta)

    def gone_to_delete(self, plan: Plan) -> int:
        """Output rows whose key left the source: a sidecar output drops them; a merge into the source keeps
        every row it has."""
        return plan.gone_rows if self.config.output.mode == "sidecar" else 0

    def _count(self, wave: lake.StagedWave, instructions: tuple[str, ...]) -> None:
        errors = wave.errors
        self.report.rows_embedded += wave.rows - errors
        self.report.rows_failed += errors
        for n in instructions:
            self.report.instructions[n].embedded += wave.rows - errors
            self.report.instructions[n].failed += errors

    # --- finish ---------------------------------------------------------------------------

    def finish_without_replicas(self, plan: Plan) -> None:
        """Nothing to embed: record the (possibly new) instruction set, remove gone keys, sweep staging."""
        existing = self.existing
        assert existing is not None and existing.meta is not None
        meta = OutputMeta(existing.meta.model, existing.meta.fingerprint, existing.meta.template,
                          existing.meta.dim, self.config.input.key, dict(self.config.instructions),
                          self.config.input.text)
        check_existing(existing, meta, self.config)
        self.report.model, self.report.fingerprint = meta.model, meta.fingerprint
        self.report.seconds["start_up"] = time.perf_counter() - self.started - self.report.seconds["read"]
        self.finish(plan, meta)
        log.info("nothing to embed: the output already holds every vector%s",
                 " (the replicas started beside the plan were stopped unused)" if self.report.replicas_started
                 else " (no replica was started)")

    def finish(self, plan: Plan, meta: OutputMeta) -> None:
        """Count what was skipped, then complete the output's writes: rows whose key left the source go,
        the record and what this run read are stored."""
        from pyspark.sql import functions as F

        config, report = self.config, self.report
        key, df = config.input.key, plan.df
        for c in report.instructions.values():
            c.skipped = report.rows_read - c.embedded - c.failed
        t_commit = time.perf_counter()
        report.rows_deleted = self.output.complete(lake.Completion(
            report.run_id, meta_with(meta, self.existing),
            lake.SourceState(self.digest(meta.fingerprint), report.rows_read, report.rows_failed),
            self.gone_to_delete(plan), gone_keys=lambda: _gone_keys(plan),
            source_keys=lambda: df.select(F.col(quote(key))).toArrow().column(key)))
        report.output_version = self.output.version
        report.seconds["commit"] += time.perf_counter() - t_commit
        df.unpersist()
        plan.todo.unpersist()


def _gone_keys(plan: Plan) -> pa.Array:
    """The keys that left the source, found by the plan's join: only those reach the driver, never all keys."""
    return plan.todo.where("_gone").select("_k").toArrow().column("_k")


def _rows_by_wave(todo, names: list[str], key: str, waves: list[Wave]):
    """The plan's rows with their wave number (`_wave`), cached sorted by it within each partition.

    A wave then reads only the cached batches whose `_wave` range holds it (Spark keeps each batch's
    min/max), instead of filtering every row of the plan once per wave: that was a scan of the whole
    plan per wave, quadratic in the table's size over a first run.
    """
    from pyspark.sql import functions as F

    bucket_of = F.xxhash64(F.col(quote(key)))
    number = None
    offset = 0
    groups: dict[tuple[tuple[bool, ...], bool], tuple[int, int]] = {}
    for wave in waves:  # a group's waves are consecutive: (missing, new keys) -> (first wave number, buckets)
        groups.setdefault((wave.missing, wave.new_keys), (offset - wave.bucket, wave.buckets))
        offset += 1
    for (missing, new), (first, buckets) in groups.items():
        member = F.col("_new") == F.lit(new)
        for n, m in zip(names, missing):
            member = member & (F.col(f"_miss_{n}") if m else ~F.col(f"_miss_{n}"))
        wave_no = F.lit(first) + F.pmod(bucket_of, F.lit(buckets))
        number = F.when(member, wave_no) if number is None else number.when(member, wave_no)
    numbered = todo.where(~F.col("_gone")).withColumn("_wave", number if number is not None else F.lit(None))
    return numbered.where(F.col("_wave").isNotNull()).sortWithinPartitions("_wave").cache()


def _check_keys(config: JobConfig, df, rows: int, nulls: int, distinct: int) -> None:
    from pyspark.sql import functions as F

    key = config.input.key
    if rows == 0:
        raise TableError(f"input {config.input.path} has no rows to embed" +
                         (f" after filter {config.input.filter!r}" if config.input.filter else ""))
    if nulls:
        raise TableError(f"input.key column {key!r} has {nulls} null value(s): every row needs a key")
    if distinct < rows:
        repeated = df.groupBy(F.col(quote(key))).count().where("count > 1")
        examples = [str(r[key]) for r in repeated.limit(3).collect()]
        raise TableError(f"input.key column {key!r} is not unique: {repeated.count()} key(s) repeat, e.g. "
                         f"{', '.join(examples)}")
