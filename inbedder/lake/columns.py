"""The output's column names, and how a name is quoted in Delta predicates and Spark expressions."""

from __future__ import annotations

from collections.abc import Iterable

from inbedder.errors import TableError


KEY_HASH = "_inbedder_text_sha256"


ERROR = "_inbedder_error"


STAGING = "_inbedder_staging"


META_KEY = "inbedder"  # Parquet key-value metadata key / Delta table property prefix


LEGACY_TEXT_COLUMN = "text"


def embedded_text_column(recorded: str | None) -> str:
    """The column an output's vectors embed: the one the job recorded, else `text` (a table written before
    the job recorded it does not say which; `text` is what the demo and the examples call it)."""
    return recorded or LEGACY_TEXT_COLUMN


def embedding_column(name: str) -> str:
    return f"{name}_embedding"


def status_column(name: str) -> str:
    """True where the row holds this instruction's vector for its current text (null otherwise).

    One bit per row and instruction: a run decides what to embed from these and
    the text hashes, never by reading the vectors themselves.
    """
    return f"_inbedder_has_{name}"


def vector_columns(name: str, answers: bool = False) -> list[str]:
    """Everything one instruction writes to a row: its vector, its status bit and, optionally, its answer."""
    return [embedding_column(name), status_column(name)] + ([answer_column(name)] if answers else [])


def cluster_column(name: str) -> str:
    """Where `inbedder cluster` writes an instruction's k-means assignment."""
    return f"{name}_cluster"


def clusters_made_stale_by(columns: Iterable[str]) -> list[str]:
    """Cluster columns whose vectors these written columns replace: they must not outlive them."""
    suffix = embedding_column("")
    return [cluster_column(c[: -len(suffix)]) for c in columns if c.endswith(suffix)]


def answer_column(name: str) -> str:
    return f"{name}_answer"


def quote(name: str) -> str:
    """A column name as a SQL identifier in delta-rs predicates and Spark expressions.

    Spaces, dots and other characters are safe inside backticks; a backtick itself
    cannot be escaped in delta-rs's parser, so such names are refused (config
    validation refuses them before any work starts).
    """
    if "`" in name:
        raise TableError(f"column name {name!r} contains a backtick, which can't be quoted in a Delta MERGE: "
                         "rename the column")
    return f"`{name}`"
