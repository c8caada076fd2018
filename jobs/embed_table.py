"""spark-submit entry point: `spark-submit jobs/embed_table.py --config job.yaml [--set field=value ...]`.

The same code path as `inbedder embed`; the package must be installed where the
driver and executors run (see README, cluster mode).
"""

from __future__ import annotations

import argparse
import sys

from inbedder.job.entry import run_embed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML job config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    args = parser.parse_args(argv)
    return run_embed(args.config, args.overrides, {})


if __name__ == "__main__":
    sys.exit(main())
