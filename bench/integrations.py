"""Integrations benchmark: `inbedder.spark.embed` and the Ray Data stage against the engine and the job, in one run.

On the same rows, question and model (the embedded default): the engine in-process
(`InBedder.embed`), `inbedder.spark.embed` on local Spark (local[2], one model per
Python worker), `inbedder.ray.Embed` in `map_batches` on a loopback Ray, and the job
(`inbedder embed`, bench/job.py's way). Each is run on a small and a large row
set after a warm-up call that loads the workers' models, so the marginal rate
(extra rows / extra seconds) excludes start-up, as bench/job.py does; the fixed
start of each is the small run's wall time minus its rows at that rate (for Spark
and Ray this excludes their one-time session start, which a user's pipeline
already pays). Vectors are compared with the engine's (min cosine).

    python bench/integrations.py --out bench/results/integrations.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inbedder.engine.hardware import machine_record

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What does the customer want the bank to do?"


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def marginal(timings: dict[int, float]) -> tuple[float, float]:
    small, large = sorted(timings)
    rate = (large - small) / (timings[large] - timings[small])
    return rate, timings[small] - small / rate


def spark_runs(rows: pa.Table, sizes: list[int], threads: int) -> tuple[dict[int, float], np.ndarray]:
    from inbedder.job.cluster import start_spark
    from inbedder.job.settings import load_config
    from inbedder.spark import embed

    config = load_config(base={"input.path": "x", "input.key": "id", "input.text": "text",
                               "instructions": {"q": "?"}, "output.path": "y"})
    spark, _ = start_spark(config)
    frames = {n: spark.createDataFrame(rows.slice(0, n).select(["id", "text"]).to_pandas()).repartition(2).cache()
              for n in sizes}
    for f in frames.values():
        f.count()
    call = {n: embed(f, text="text", questions={"intent": QUESTION}, key="id", batch_rows=64, threads=threads)
            for n, f in frames.items()}
    call[sizes[0]].count()  # warm-up: every worker loads its model
    timings, vectors = {}, None
    for n in sizes:
        start = time.perf_counter()
        out = call[n].select("id", "intent_embedding").toArrow()
        timings[n] = time.perf_counter() - start
        vectors = out
    spark.stop()
    order = {k: i for i, k in enumerate(vectors.column("id").to_pylist())}
    ids = rows.slice(0, sizes[-1]).column("id").to_pylist()
    got = np.array(vectors.column("intent_embedding").to_pylist(), dtype=np.float32)[[order[k] for k in ids]]
    return timings, got


def ray_runs(rows: pa.Table, sizes: list[int], threads: int) -> tuple[dict[int, float], np.ndarray]:
    import ray

    from inbedder.job.local_cluster import start_local_ray
    from inbedder.ray import Embed

    start_local_ray(object_store_mb=512, namespace="inbedder-bench", num_cpus=2)
    timings, got = {}, None
    for n in [sizes[0], *sizes]:  # the first small run is the warm-up (actor start, model load)
        # several blocks, as read_parquet gives: one block would keep one of the two actors idle
        ds = ray.data.from_arrow(rows.slice(0, n).select(["id", "text"])).repartition(8).map_batches(
            Embed, batch_format="pyarrow", batch_size=64, concurrency=2, num_cpus=0.5,
            fn_constructor_kwargs={"text": "text", "questions": {"intent": QUESTION}, "key": "id",
                                   "threads": threads})
        start = time.perf_counter()
        out = pa.concat_tables([ray.get(r) for r in ds.to_arrow_refs()])
        timings[n] = time.perf_counter() - start
        got = out
    ray.shutdown()
    order = {k: i for i, k in enumerate(got.column("id").to_pylist())}
    ids = rows.slice(0, sizes[-1]).column("id").to_pylist()
    return timings, np.array(got.column("intent_embedding").to_pylist(), dtype=np.float32)[[order[k] for k in ids]]


def job_runs(rows: pa.Table, sizes: list[int], work: Path) -> dict[int, float]:
    spec = importlib.util.spec_from_file_location("bench_job", REPO / "bench" / "job.py")
    bench_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_job)
    timings = {}
    for n in sizes:
        src = work / f"src_{n}.parquet"
        pq.write_table(rows.slice(0, n), src)
        timings[n] = bench_job.run_job(src, work / f"out_{n}", work / f"report_{n}.json")
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--no-job", action="store_true", help="Leave out the job (bench/job.py measures it alone).")
    ap.add_argument("--only", choices=["spark", "ray"], default=None, help="Measure one integration (and the engine).")
    args = ap.parse_args()
    rows = pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet").slice(0, args.large)
    sizes = [args.small, args.large]
    work = Path(tempfile.mkdtemp(prefix="inbedder-bench-integrations-"))
    cores = os.cpu_count() or 1

    import torch

    from inbedder.engine import InBedder

    torch.set_num_threads(cores)
    model = InBedder.from_pretrained()
    texts = rows.column("text").to_pylist()
    model.embed(texts[:32], {"intent": QUESTION})  # warm-up
    start = time.perf_counter()
    engine_vectors = model.embed(texts, {"intent": QUESTION}).vectors["intent"]
    engine_rate = len(texts) / (time.perf_counter() - start)
    del model

    spark_t, spark_v = (None, None) if args.only == "ray" else spark_runs(rows, sizes, threads=max(1, cores // 2))
    ray_t, ray_v = (None, None) if args.only == "spark" else ray_runs(rows, sizes, threads=max(1, cores // 2))
    job_t = None if args.no_job or args.only else job_runs(rows, sizes, work)
    results = {"machine": machine_record(), "rows": sizes, "question": QUESTION,
               "engine_rows_per_s": engine_rate}
    for name, timings, vectors in (("spark", spark_t, spark_v), ("ray", ray_t, ray_v), ("job", job_t, None)):
        if timings is None:
            continue
        rate, fixed = marginal(timings)
        results[name] = {"seconds": {str(k): v for k, v in timings.items()}, "marginal_rows_per_s": rate,
                         "fixed_start_seconds": fixed, "ratio_to_engine": rate / engine_rate}
        if vectors is not None:
            results[name]["min_cosine_vs_engine"] = min_cosine(vectors, engine_vectors)
    if job_t is not None:
        for name in [n for n in ("spark", "ray") if n in results]:
            results[name]["ratio_to_job"] = results[name]["marginal_rows_per_s"] / results["job"]["marginal_rows_per_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"engine in-process {engine_rate:.1f} rows/s")
    for name in ("spark", "ray", "job"):
        if name in results:
            r = results[name]
            extra = f", cos min {r['min_cosine_vs_engine']:.6f}" if "min_cosine_vs_engine" in r else ""
            extra += f", {r['ratio_to_job']:.3f} of the job" if "ratio_to_job" in r else ""
            print(f"{name}: marginal {r['marginal_rows_per_s']:.1f} rows/s = {r['ratio_to_engine']:.3f} of the engine"
                  f" (target >= 0.9){extra}; fixed start {r['fixed_start_seconds']:.1f} s")


if __name__ == "__main__":
    main()
