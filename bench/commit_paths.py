"""What a changed re-run's commit costs, by each way delta-rs offers to replace and delete rows.

The lake benchmark's changed re-run (1% of texts changed, 1% of rows gone, spread over every file)
commits one MERGE that rewrites the whole output: delta-rs writes no deletion vectors, so every file
holding a changed or gone key is copied. This times the alternatives on the same kind of table, each
from a fresh copy of it:

- `merge`: what the job does (`lake.DeltaOutput.merge_rows`: one streamed MERGE, gone keys deleted
  in it);
- `rewrite`: our own copy-on-write (read each touched file, drop the keys, write it anew, one Delta
  transaction of remove + add actions), the way executors could do it without delta-rs's MERGE;
- `replace_where`: `write_deltalake(mode="overwrite", predicate="key IN (...)")`, one transaction;
- `delete`: `DeltaTable.delete("key IN (...)")` alone (the new rows would still need a second commit).

Run: python bench/commit_paths.py --out bench/results/commit_paths.json [--rows 1000000 --files 500]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inbedder.engine.hardware import machine_record  # noqa: E402

KEY, HASH, VECTOR, STATUS = "id", "_inbedder_text_sha256", "q_embedding", "_inbedder_has_q"


def rows(keys: np.ndarray, dim: int, rng: np.random.Generator) -> pa.Table:
    """Output rows shaped as the job writes them: key, text hash (hex), vector, status bit."""
    values = pa.array(rng.standard_normal(len(keys) * dim).astype(np.float32))
    offsets = pa.array(np.arange(0, len(keys) * dim + 1, dim, dtype=np.int32))
    return pa.table({KEY: pa.array(keys, pa.int64()), HASH: pa.array([f"{k:064x}" for k in keys.tolist()]),
                     VECTOR: pa.ListArray.from_arrays(offsets, values), STATUS: pa.array([True] * len(keys))})


def build(folder: Path, n_rows: int, n_files: int, dim: int, rng: np.random.Generator) -> None:
    from deltalake import Schema
    from deltalake.transaction import create_table_with_add_actions

    per_file = n_rows // n_files
    actions, schema = [], None
    for i in range(n_files):
        part = rows(np.arange(i * per_file, (i + 1) * per_file), dim, rng)
        schema = part.schema
        actions.append(_write(folder, f"part-{i:05d}.parquet", part))
    create_table_with_add_actions(str(folder), Schema.from_arrow(schema), actions, mode="error")


def _write(folder: Path, name: str, table: pa.Table):
    from deltalake.transaction import AddAction

    pq.write_table(table, folder / name, use_dictionary=[STATUS], write_statistics=[KEY])
    bounds = pc.min_max(table.column(KEY))
    stats = {"numRecords": table.num_rows, "minValues": {KEY: bounds["min"].as_py()},
             "maxValues": {KEY: bounds["max"].as_py()}, "nullCount": {KEY: 0}}
    return AddAction(name, (folder / name).stat().st_size, {}, int(time.time() * 1000), True, json.dumps(stats))


def merge(table_dir: Path, wave: pa.Table, gone: np.ndarray) -> None:
    from deltalake import DeltaTable

    flagged = wave.append_column("_gone", pa.array([False] * wave.num_rows))
    deletions = pa.table({f.name: pa.array(gone, pa.int64()) if f.name == KEY else
                          pa.array([True] * len(gone)) if f.name == "_gone" else pa.nulls(len(gone), f.type)
                          for f in flagged.schema}, schema=flagged.schema)
    updates = {c: f"s.{c}" for c in wave.column_names if c != KEY}
    (DeltaTable(str(table_dir)).merge(source=pa.concat_tables([flagged, deletions]), predicate=f"t.{KEY} = s.{KEY}",
                                      source_alias="s", target_alias="t", streamed_exec=True)
     .when_matched_delete(predicate="s._gone").when_matched_update(updates=updates)
     .when_not_matched_insert_all(predicate="NOT s._gone", except_cols=["_gone"]).execute())


def rewrite(table_dir: Path, wave: pa.Table, gone: np.ndarray) -> None:
    from deltalake import DeltaTable
    from deltalake.transaction import RemoveAction

    table = DeltaTable(str(table_dir))
    dropped = pa.array(np.concatenate([wave.column(KEY).to_numpy(), gone]), pa.int64())
    files = pa.table(table.get_add_actions(flatten=True))
    now = int(time.time() * 1000)
    actions: list = []
    for path, size in zip(files.column("path").to_pylist(), files.column("size_bytes").to_pylist()):
        keep = pc.invert(pc.is_in(pq.read_table(table_dir / path, columns=[KEY]).column(KEY), value_set=dropped))
        if pc.all(keep).as_py():
            continue
        actions.append(_write(table_dir, "rewritten-" + path, pq.read_table(table_dir / path).filter(keep)))
        actions.append(RemoveAction(path, True, now, size))
    actions.append(_write(table_dir, "wave.parquet", wave))
    table.create_write_transaction(actions, mode="append", schema=table.schema())


def _in_list(keys: np.ndarray) -> str:
    return f"{KEY} IN (" + ",".join(map(str, keys.tolist())) + ")"


def replace_where(table_dir: Path, wave: pa.Table, gone: np.ndarray) -> None:
    from deltalake import DeltaTable, write_deltalake

    keys = np.concatenate([wave.column(KEY).to_numpy(), gone])
    write_deltalake(DeltaTable(str(table_dir)), wave, mode="overwrite", predicate=_in_list(keys))


def delete(table_dir: Path, wave: pa.Table, gone: np.ndarray) -> None:
    from deltalake import DeltaTable

    DeltaTable(str(table_dir)).delete(_in_list(np.concatenate([wave.column(KEY).to_numpy(), gone])))


PATHS = {"merge": merge, "rewrite": rewrite, "replace_where": replace_where, "delete": delete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=500, help="the output's files (the job writes one per task)")
    parser.add_argument("--dim", type=int, default=64, help="vector size (bench/scale.py's tiny model: 64)")
    parser.add_argument("--changed-share", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from deltalake import DeltaTable

    rng = np.random.default_rng(0)
    step = round(1 / args.changed_share)
    changed = np.arange(0, args.rows, step)  # spread over every file, as in bench/scale.py
    gone = np.arange(step // 2, args.rows, step)
    wave = rows(changed, args.dim, rng)
    with tempfile.TemporaryDirectory(prefix="inbedder-commit-paths-") as tmp:
        base, work = Path(tmp) / "base", Path(tmp) / "work"
        base.mkdir()
        build(base, args.rows, args.files, args.dim, rng)
        seconds: dict[str, list[float]] = {p: [] for p in args.paths}
        for _ in range(args.repeats):
            for name in args.paths:  # interleaved, so a slow spell of the machine hits every path
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(base, work)
                start = time.perf_counter()
                PATHS[name](work, wave, gone)
                seconds[name].append(time.perf_counter() - start)
                left = DeltaTable(str(work)).count()
                expected = args.rows - len(gone) - (len(changed) if name == "delete" else 0)
                if left != expected:
                    raise SystemExit(f"{name}: {left} rows after the commit, expected {expected}")
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    result = {"machine": machine_record(), "rows": args.rows, "files": args.files, "dim": args.dim,
              "changed": len(changed), "gone": len(gone), "seconds": seconds, "median_seconds": medians,
              "vs_merge": {name: m / medians["merge"] for name, m in medians.items()} if "merge" in medians else {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'path':<14} {'median s':>9} {'vs merge':>9}")
    for name, m in medians.items():
        print(f"{name:<14} {m:>9.2f} {result['vs_merge'].get(name, float('nan')):>9.2f}")


if __name__ == "__main__":
    main()
