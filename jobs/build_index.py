"""spark-submit / Airflow entry point for the index step.

    spark-submit jobs/build_index.py --config job.yaml [--shards N]
    spark-submit jobs/build_index.py --table OUT --out INDEXES [--instruction NAME ...] [--metric ...]
        [--memory-budget-gb G] [--recall-target R] [--shards N]

With --config, the table, the index folder, the instructions and every index
setting come from the job's YAML (its `index` section), exactly as the job's own
index step reads them. Without --shards the index is built (or updated) on the
driver, streaming the table; with --shards N an IVF index is trained on the
driver and its shards are filled on N Spark tasks, then merged
(inbedder/index/shards.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inbedder.console import run_command, say
from inbedder.index import (DEFAULT_MEMORY_BUDGET_GB, DEFAULT_METRIC, DEFAULT_RECALL_TARGET, METRICS, BuildOptions,
                            IndexBuildError)


def plan_from_args(argv: list[str] | None = None) -> tuple[str, str, list[str], BuildOptions, int]:
    """(table, index folder, instructions, build options, shards) from the command line or the job config."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="the job's YAML: table, index folder, instructions and index settings")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    ap.add_argument("--table")
    ap.add_argument("--out")
    ap.add_argument("--instruction", action="append", default=[])
    ap.add_argument("--metric", default=DEFAULT_METRIC, choices=METRICS)
    ap.add_argument("--memory-budget-gb", type=float, default=DEFAULT_MEMORY_BUDGET_GB)
    ap.add_argument("--recall-target", type=float, default=DEFAULT_RECALL_TARGET)
    ap.add_argument("--shards", type=int, default=0, help="build IVF shards on this many Spark tasks")
    args = ap.parse_args(argv)
    if args.config:
        from inbedder.job.settings import load_config

        config = load_config(args.config, args.overrides)
        if not config.index.out:
            raise IndexBuildError(f"{args.config} has no index.out: set the folder the indexes go to")
        return (config.output.path, config.index.out, args.instruction or list(config.instructions),
                config.index.build_options(), args.shards)
    if not (args.table and args.out):
        ap.error("give --config, or --table and --out")
    return (args.table, args.out, args.instruction,
            BuildOptions.from_settings(args.metric, args.memory_budget_gb, args.recall_target), args.shards)


def build(argv: list[str] | None = None) -> None:
    from inbedder.index import build_or_update

    table, out, instructions, options, shards = plan_from_args(argv)
    if shards:
        from pyspark.sql import SparkSession

        from inbedder.index.shards import build_index_on_spark

        if not instructions:
            raise IndexBuildError("--shards needs --instruction NAME (one index per instruction)")
        spark = SparkSession.builder.appName("inbedder-index").getOrCreate()
        for name in instructions:
            m = build_index_on_spark(spark, table, name, Path(out) / name, options, shards)
            say(f"{name}: {m.factory} {m.rows} rows recall@10 {m.recall_at_10}")
    else:
        for name, (m, counts) in build_or_update(table, out, instructions or None, options).items():
            say(f"{name}: {m.factory} {m.rows} rows recall@10 {m.recall_at_10} {counts}")


def main(argv: list[str] | None = None) -> int:
    """The same failure contract as every `inbedder` command (one line, the log file, exit 1 or 2)."""
    return run_command("build_index", lambda: build(argv))


if __name__ == "__main__":
    sys.exit(main())
