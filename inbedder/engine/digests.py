"""Content digests of model files, cached by (path, size, mtime) so replicas start fast."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from inbedder.engine.cache import cache_root

_CHUNK = 1 << 22


def file_sha256(path: Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index = cache_root() / "digests.json"
    with FileLock(str(index) + ".lock"):
        known = json.loads(index.read_text()) if index.exists() else {}
        if key in known:
            return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with FileLock(str(index) + ".lock"):
        known = json.loads(index.read_text()) if index.exists() else {}
        known[key] = value
        tmp = index.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, index)
    return value


def canonical_json_sha256(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
