"""Bringing indexes to their table's current version: add new rows, drop removed or changed ones."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from inbedder.errors import IndexBuildError
from inbedder.index.build import BuildOptions, build_index
from inbedder.index.kinds import kind_of_factory
from inbedder.index.manifest import MANIFEST_FILE, Manifest
from inbedder.index.store import load_index, write_index
from inbedder.index.vectors import prepare
from inbedder.lake import VectorSource, open_output


def _key_and_hash(table: pa.Table) -> pa.Array:
    """One "key|text hash" string per row: a row is unchanged only if both match."""
    return pc.binary_join_element_wise(table.column("key").cast(pa.string()), table.column("text_sha256"), "|")


def update_index(table: str, out_dir: str | Path, options: BuildOptions | None = None) -> tuple[Manifest, dict]:
    """Bring an index to the table's current version: add new rows, drop removed or changed ones.

    HNSW graphs can't drop vectors, so those indexes are rebuilt. Returns the manifest and counts.
    """
    options = options or BuildOptions()
    started = time.perf_counter()
    index, id_map, manifest = load_index(out_dir)
    source = VectorSource.open(table, manifest.instruction)
    if source.meta.fingerprint != manifest.fingerprint:
        raise IndexBuildError(f"{table} now holds vectors from another model ({source.meta.fingerprint}) than the "
                          f"index ({manifest.fingerprint}): build a new index")
    if source.version is not None and source.version == manifest.source_version:
        return manifest, {"added": 0, "removed": 0, "rebuilt": False}
    question_changed = source.meta.instructions[manifest.instruction] != manifest.instruction_text
    if not kind_of_factory(manifest.factory).updatable or question_changed:
        options.metric = manifest.metric
        return build_index(table, manifest.instruction, out_dir, options), {"rebuilt": True}
    empty = pa.table({"key": pa.array([], id_map.column("key").type), "text_sha256": pa.array([], pa.string())})
    current = pa.concat_tables([keys for keys, _ in source.batches()] or [empty])
    joined_old = _key_and_hash(id_map)
    joined_new = _key_and_hash(current)
    removed = id_map.filter(pc.invert(pc.is_in(joined_old, value_set=joined_new)))
    if removed.num_rows:
        index.remove_ids(np.ascontiguousarray(removed.column("id").to_numpy(), dtype=np.int64))
    keep = id_map.filter(pc.is_in(joined_old, value_set=joined_new))
    wanted = set(pc.filter(joined_new, pc.invert(pc.is_in(joined_new, value_set=joined_old))).to_pylist())
    next_id = int(pc.max(id_map.column("id")).as_py() or -1) + 1 if id_map.num_rows else 0
    parts = [keep]
    for keys, vectors in source.batches():
        tags = pc.binary_join_element_wise(keys.column("key").cast(pa.string()), keys.column("text_sha256"), "|")
        mask = np.array([t in wanted for t in tags.to_pylist()], dtype=bool)
        if mask.any():
            ids = np.arange(next_id, next_id + int(mask.sum()), dtype=np.int64)
            index.add_with_ids(prepare(vectors[mask], manifest.metric), ids)
            added = keys.filter(pa.array(mask)).append_column("id", pa.array(ids))
            parts.append(added.select(["id", "key", "text_sha256"]))
            next_id += len(ids)
    new_map = pa.concat_tables([p.select(["id", "key", "text_sha256"]) for p in parts])
    added = new_map.num_rows - keep.num_rows
    manifest.source_version, manifest.rows = source.version, int(index.ntotal)
    manifest.built_at = time.time()
    write_index(index, new_map, manifest, Path(out_dir), started)
    return manifest, {"added": added, "removed": removed.num_rows, "rebuilt": False}


def build_or_update(table: str, out_dir: str | Path, names: list[str] | None = None,
                    options: BuildOptions | None = None, rebuild: bool = False) -> dict[str, tuple[Manifest, dict]]:
    """One index per instruction under out_dir/NAME: updated where one exists, built otherwise."""
    existing = open_output(table)
    assert existing.meta is not None
    results = {}
    for name in names or sorted(existing.meta.instructions):
        folder = Path(out_dir) / name
        opts = BuildOptions(**asdict(options)) if options else BuildOptions()
        if (folder / MANIFEST_FILE).exists() and not rebuild:
            results[name] = update_index(table, folder, opts)
        else:
            results[name] = (build_index(table, name, folder, opts), {"rebuilt": True})
    return results
