"""spark-submit / Airflow entry point for the index step.

    spark-submit jobs/build_index.py --table OUT --out INDEXES [--instruction NAME ...] [--shards N]

Without --shards the index is built (or updated) on the driver, streaming the
table; with --shards N an IVF index is trained on the driver and its shards are
filled on N Spark tasks, then merged (see inbedder/index_shards.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inbedder.index import BuildOptions, IndexError_, build_or_update
from inbedder.tables import TableError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--instruction", action="append", default=[])
    ap.add_argument("--metric", default="cosine", choices=["cosine", "inner_product", "l2"])
    ap.add_argument("--memory-budget-gb", type=float, default=8.0)
    ap.add_argument("--shards", type=int, default=0, help="build IVF shards on this many Spark tasks")
    args = ap.parse_args(argv)
    options = BuildOptions(metric=args.metric, memory_budget_bytes=int(args.memory_budget_gb * 2**30))
    try:
        if args.shards:
            from pyspark.sql import SparkSession

            from inbedder.index_shards import build_index_on_spark

            spark = SparkSession.builder.appName("inbedder-index").getOrCreate()
            for name in args.instruction or []:
                m = build_index_on_spark(spark, args.table, name, Path(args.out) / name, options, args.shards)
                print(f"{name}: {m.factory} {m.rows} rows recall@10 {m.recall_at_10}")
            if not args.instruction:
                raise IndexError_("--shards needs --instruction NAME (one index per instruction)")
        else:
            for name, (m, counts) in build_or_update(args.table, args.out, args.instruction or None, options).items():
                print(f"{name}: {m.factory} {m.rows} rows recall@10 {m.recall_at_10} {counts}")
    except (TableError, IndexError_) as exc:
        print(f"build_index failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
