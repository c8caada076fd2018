"""Paths on the lake: local or remote, and the spelling each reader wants."""

from __future__ import annotations


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def spark_uri(path: str) -> str:
    """delta-rs and pyarrow say s3://; Spark's Hadoop connector wants s3a://."""
    return "s3a://" + path[len("s3://"):] if path.startswith("s3://") else path


def local_path(file: str) -> str | None:
    """A local path for a plain path or a file: URI (Spark writes file:/x, delta-rs file:///x); else None."""
    if file.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(file).path)
    return None if is_remote(file) else file
