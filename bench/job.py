"""Job benchmark: what Spark + Ray cost on top of the engine, measured side by side in one run.

The job runs twice as a fresh process (`inbedder embed`, local Spark + a loopback
Ray started by the job, Delta output) on N_small and N_large rows; the engine
runs in-process on the large row set. Marginal job throughput = extra rows /
extra seconds between the two job runs, so start-up cancels out; fixed start =
small run's wall time minus its rows at that marginal rate.

    python bench/job.py --out bench/results/job.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from inbedder.engine.hardware import machine_record

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What does the customer want the bank to do?"


def run_job(src: Path, out: Path, report: Path) -> float:
    cmd = [sys.executable, "-m", "inbedder.cli", "embed", "--input", str(src), "--key", "id", "--text", "text",
           "--instruction", f"intent={QUESTION}", "--output", str(out), "--report", str(report),
           "--set", "progress=false", "--set", "output.wave_rows=100000"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=1000)
    args = ap.parse_args()
    rows = pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet")
    work = Path(tempfile.mkdtemp(prefix="inbedder-bench-job-"))
    timings, reports = {}, {}
    for size in (args.small, args.large):
        src = work / f"src_{size}.parquet"
        pq.write_table(rows.slice(0, size), src)
        timings[size] = run_job(src, work / f"out_{size}", work / f"report_{size}.json")
        reports[size] = json.loads((work / f"report_{size}.json").read_text())

    import torch

    from inbedder.engine import InBedder

    torch.set_num_threads(os.cpu_count() or 1)
    model = InBedder.from_pretrained()
    texts = rows.slice(0, args.large).column("text").to_pylist()
    model.encode(texts[:8], QUESTION)
    start = time.perf_counter()
    model.encode(texts, QUESTION)
    engine_rate = len(texts) / (time.perf_counter() - start)

    marginal = (args.large - args.small) / (timings[args.large] - timings[args.small])
    fixed = timings[args.small] - args.small / marginal
    result = {
        "p3_marginal_throughput_ratio": marginal / engine_rate,
        "p3_fixed_start_seconds": fixed,
        "job_marginal_rows_per_s": marginal,
        "engine_rows_per_s": engine_rate,
        "job_wall_seconds": timings,
        "job_reports": reports,
        "machine": {**machine_record(), "cores": os.cpu_count(),
                    "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"job: {args.small} rows in {timings[args.small]:.1f}s, {args.large} rows in {timings[args.large]:.1f}s")
    print(f"job marginal {marginal:.1f} rows/s vs engine in-process {engine_rate:.1f} rows/s "
          f"-> p3_marginal_throughput_ratio {marginal / engine_rate:.3f} (target >= 0.95)")
    print(f"p3_fixed_start_seconds {fixed:.1f} (target <= 20)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
