"""Index folders on disk: written beside and swapped in, loaded and checked against the manifest."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from inbedder.errors import IndexBuildError
from inbedder.fs import replace_folder
from inbedder.index.manifest import IDS_FILE, INDEX_FILE, Manifest
from inbedder.index.kinds import set_search_params


def write_index(index, id_map: pa.Table, manifest: Manifest, out_dir: Path, started: float) -> Manifest:
    """Write into a sibling folder, then swap it in: a reader never sees half an index."""
    import faiss

    def fill(folder: Path) -> None:
        faiss.write_index(index, str(folder / INDEX_FILE))
        pq.write_table(id_map, folder / IDS_FILE)
        manifest.index_bytes = (folder / INDEX_FILE).stat().st_size
        manifest.build_seconds = time.perf_counter() - started
        manifest.write(folder)  # last: a folder with a manifest is complete

    replace_folder(out_dir, fill)
    return manifest


def load_index(folder: str | Path) -> tuple[object, pa.Table, Manifest]:
    """Index, id map and manifest, checked against each other."""
    import faiss

    folder = Path(folder)
    manifest = Manifest.read(folder)
    for name in (INDEX_FILE, IDS_FILE):
        if not (folder / name).is_file():
            raise IndexBuildError(f"{folder} is missing {name}: rebuild the index")
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
    except RuntimeError as exc:
        raise IndexBuildError(f"{folder / INDEX_FILE} is corrupt or not a FAISS index: "
                              f"{str(exc).splitlines()[0]}") from exc
    try:
        id_map = pq.read_table(folder / IDS_FILE)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexBuildError(f"{folder / IDS_FILE} is corrupt: {exc}") from exc
    if index.d != manifest.dim:
        raise IndexBuildError(f"index in {folder} has dim {index.d} but its manifest says {manifest.dim}")
    if index.ntotal != manifest.rows or id_map.num_rows != manifest.rows:
        raise IndexBuildError(f"index in {folder} holds {index.ntotal} vectors and {id_map.num_rows} ids but its "
                          f"manifest says {manifest.rows}: the files are from different builds, rebuild")
    set_search_params(index, manifest.search_params)
    return index, id_map, manifest
