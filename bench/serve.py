"""Serving benchmark: `inbedder serve` against the in-process search API on the same queries, in one run.

A 1M-vector index (bench/index.py's synthetic clustered vectors, recorded as the
embedded default's, so the server accepts it) over a 1M-row Parquet table of
keys and texts. The server runs as its own process (`inbedder serve`, loopback);
clients are async HTTP clients sending one text per request.

- single client: p50 / p99 latency of /search (k=10), split into encode and search (the server's own timings);
- throughput (texts/s) with 1, 4 and 16 concurrent clients vs the in-process `Searcher.search` on batches of
  16 of the same queries (target at 16 clients >= 0.8); the server's batch sizes show the micro-batching;
- load: 16 clients for `--load-seconds` (default 120): errors, and the server's RSS growth after warm-up.

    python bench/serve.py --out bench/results/serve.json [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inbedder.engine.hardware import machine_record

REPO = Path(__file__).resolve().parents[1]


def bench_index_module():
    spec = importlib.util.spec_from_file_location("bench_index", REPO / "bench" / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(work: Path, rows: int, model) -> Path:
    from inbedder.index import build_index_from
    from inbedder.index.manifest import Manifest

    bench_index = bench_index_module()
    vectors = bench_index.clustered(rows, model.dim, max(10, rows // 1000))
    table = work / "table"
    table.mkdir()
    texts = [f"synthetic row {i}" for i in range(rows)]
    pq.write_table(pa.table({"id": pa.array(np.arange(rows)), "text": texts}), table / "part-0.parquet",
                   row_group_size=50_000)
    folder = work / "index"
    manifest = build_index_from(bench_index.ArraySource(vectors), folder)
    manifest = replace(Manifest.read(folder), model=model.model_name, fingerprint=model.fingerprint,
                       instruction="q", instruction_text="What does the customer want?", source=str(table),
                       source_format="parquet", source_version=None, key="id")
    manifest.write(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def clients(url: str, queries: list[str], n: int, seconds: float) -> dict:
    import httpx

    latencies, encode, search, errors, done = [], [], [], 0, 0
    stop = time.perf_counter() + seconds

    async def one(c: httpx.AsyncClient, i: int):
        nonlocal errors, done
        j = i
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                r = await c.post(url + "/search", json={"question": "q", "texts": [queries[j % len(queries)]], "k": 10})
                if r.status_code != 200:
                    errors += 1
                    continue
                t = r.json()["timing_ms"]
                latencies.append((time.perf_counter() - start) * 1000)
                encode.append(t["encode"])
                search.append(t["search"])
                done += 1
            except Exception:  # noqa: BLE001 - counted
                errors += 1
            j += n

    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as c:
        await asyncio.gather(*(one(c, i) for i in range(n)))
    wall = time.perf_counter() - began
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else None  # noqa: E731
    return {"clients": n, "texts_per_s": done / wall, "requests": done, "errors": errors,
            "latency_ms": {"p50": pct(latencies, 50), "p99": pct(latencies, 99)},
            "encode_ms": {"p50": pct(encode, 50), "p99": pct(encode, 99)},
            "search_ms": {"p50": pct(search, 50), "p99": pct(search, 99)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    ap.add_argument("--load-seconds", type=float, default=120.0)
    args = ap.parse_args()
    import psutil
    import torch

    from inbedder.engine import InBedder
    from inbedder.index import Searcher

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="inbedder-bench-serve-"))
    model = InBedder.from_pretrained()
    started = time.perf_counter()
    folder = build(work, args.rows, model)
    build_s = time.perf_counter() - started
    banking = pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet").column("text").to_pylist()
    queries = banking[:400]

    searcher = Searcher(folder, model)
    searcher.search(queries[:16], 10)
    began, served = time.perf_counter(), 0
    while time.perf_counter() - began < args.seconds:
        batch = queries[served % 384: served % 384 + 16]
        searcher.search(batch, 10)
        served += len(batch)
    in_process = served / (time.perf_counter() - began)
    del searcher, model

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "inbedder.cli", "serve", "--index", str(folder), "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        server.kill()
        raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
    proc = psutil.Process(server.pid)
    levels = {}
    try:
        asyncio.run(clients(url, queries, 16, 5))  # warm-up
        for n in (1, 4, 16):
            levels[n] = asyncio.run(clients(url, queries, n, args.seconds))
        health_before = httpx.get(url + "/health").json()
        rss_before = proc.memory_info().rss
        load = asyncio.run(clients(url, queries, 16, args.load_seconds))
        rss_after = proc.memory_info().rss
        health = httpx.get(url + "/health").json()
    finally:
        server.terminate()
        server.wait(30)
    batches = health["batches"] - health_before["batches"]
    results = {"machine": machine_record(), "rows": args.rows, "index_build_seconds": build_s,
               "in_process_texts_per_s": in_process, "levels": levels,
               "ratio_16_clients_to_in_process": levels[16]["texts_per_s"] / in_process,
               "load": {**load, "seconds": args.load_seconds, "rss_before_mb": rss_before / 2**20,
                        "rss_after_mb": rss_after / 2**20, "rss_growth": rss_after / rss_before - 1,
                        "mean_texts_per_forward": (health["texts"] - health_before["texts"]) / max(batches, 1)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    one = levels[1]
    print(f"1 client: latency p50 {one['latency_ms']['p50']:.1f} ms / p99 {one['latency_ms']['p99']:.1f} ms "
          f"(encode p50 {one['encode_ms']['p50']:.1f} ms, search p50 {one['search_ms']['p50']:.1f} ms)")
    for n, r in levels.items():
        print(f"{n:>2} clients: {r['texts_per_s']:.1f} texts/s ({r['texts_per_s'] / in_process:.2f} of in-process "
              f"{in_process:.1f}), errors {r['errors']}")
    print(f"load {args.load_seconds:.0f} s x 16 clients: {load['requests']} requests, {load['errors']} errors, "
          f"RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MB ({results['load']['rss_growth']:+.1%}), "
          f"{results['load']['mean_texts_per_forward']:.1f} texts per forward pass")


if __name__ == "__main__":
    main()
