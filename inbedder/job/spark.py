"""What the run reads with Spark: the source, the output's state, and Spark failures as one line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from inbedder import lake
from inbedder.errors import JobError
from inbedder.job.settings import JobConfig
from inbedder.lake import ERROR, KEY_HASH, embedding_column, quote, spark_uri, status_column

log = logging.getLogger(__name__)


def read_source(spark, snapshot: lake.Snapshot):
    """The snapshot's files, never a directory listing (a Delta table's folder holds files of other versions).
    Given the table's root as basePath, Spark keeps hive partition columns, whatever the format."""
    reader = spark.read
    if snapshot.partition_columns:
        reader = reader.option("basePath", spark_uri(snapshot.path.rstrip("/")))
    return reader.parquet(*[spark_uri(f) for f in snapshot.files])


def existing_state(spark, config: JobConfig, output: lake.OutputTable, usable: list[str]):
    """Per output row: its key, the hash of the text its vectors came from, and which vectors it has.

    Read from the key, the hash and one status bit per instruction, never from the
    vectors: at 100M rows x 576 floats that is the difference between reading
    ~10 GB and ~230 GB to learn that nothing changed. The output says which files'
    bits hold (`OutputTable.state_files`); the rest (written before the bits, or
    changed by another writer since our last commit) are read by their vectors, so a
    foreign change is repaired, never trusted.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    files = output.state_files(usable)
    if files is None:
        return None
    assert output.existing is not None
    schema = files.schema if files.schema is not None else output.existing.schema
    names = set(schema.names)
    has_error = F.col(ERROR).isNotNull() if ERROR in names else F.lit(False)

    def state_of(paths: tuple[str, ...], bits: frozenset[str]):
        wanted = [config.input.key, KEY_HASH, ERROR, *[status_column(n) for n in bits],
                  *[embedding_column(n) for n in usable if n not in bits]]
        present = [c for c in wanted if c in names]
        reader = spark.read
        if files.schema is not None:  # every file read with the table's columns, NULL where a file lacks one
            reader = reader.schema(from_arrow_schema(pa.schema([files.schema.field(c) for c in present])))
        out = reader.parquet(*[spark_uri(f) for f in paths])
        cols = [F.col(quote(config.input.key)).alias("_k"),
                (F.col(KEY_HASH) if KEY_HASH in names else F.lit(None).cast("string")).alias("_h")]
        for name in usable:
            has = (F.coalesce(F.col(status_column(name)), F.lit(False)) if name in bits
                   else F.col(embedding_column(name)).isNotNull())
            cols.append((has | has_error).alias(f"_has_{name}"))
        return out.select(*cols)

    parts = ([state_of(files.by_bits, files.bits)] if files.by_bits else []) + \
        ([state_of(files.by_vectors, frozenset())] if files.by_vectors else [])
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])


@contextmanager
def spark_failures_explained() -> Iterator[None]:
    """A Spark or Py4J exception leaves as a one-line JobError (the Java trace stays on it as the cause)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except (Py4JJavaError, PySparkException) as exc:
        raise JobError(explain_spark_failure(exc)) from exc


_FAILED_FILE = re.compile(r"error while reading file (\S+?)\.?(?:\s|$)")


_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.+)$", re.MULTILINE)


def explain_spark_failure(exc: BaseException) -> str:
    """One line for a Spark failure: which input file, and what to do; the Java trace goes to the log."""
    log.debug("Spark failed", exc_info=exc)
    text = str(exc)
    failed = _FAILED_FILE.search(text)
    if failed:
        path = failed.group(1)
        return f"Spark could not read file {path}: it {lake.unreadable_file_reason(path)}"
    causes = _CAUSE.findall(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = causes[-1] if causes else (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)
    return f"Spark failed: {detail[:300]}"
