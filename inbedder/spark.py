"""InBedder as one more transformation in a Spark pipeline: `inbedder.spark.embed(df, ...)`.

Lazy, like any DataFrame transformation: the model is described on the driver
(a missing column, an unknown model or an adapter of another base fail there, in
one line) and loaded only when an action runs, once per Python worker process,
then reused across partitions and calls (`inbedder.batches.engine_for`, the same
path the job's replicas use). No Ray needed. On a GPU cluster give executors
GPUs (`spark.executor.resource.gpu.amount=1`, `spark.task.resource.gpu.amount=1`)
and each worker's engine uses its GPU.

    from inbedder.spark import embed
    out = embed(df, text="body", questions={"intent": "What does the customer want?"}, key="id")
    out.write.parquet("s3://lake/tickets_embedded")      # `inbedder index` accepts it

Spark keeps each vector column's field metadata (model, fingerprint, question) in
the Parquet files it writes, so `inbedder index` and `query` know how the vectors
were made and refuse to mix models, as with the job's tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from inbedder.batches import ModelSpec, check_request, embed_batch, output_fields, vector_records
from inbedder.errors import InBedderError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession


def embed(df: DataFrame, text: str, questions: Mapping[str, str], *, model: str | None = None,
          adapter: str | None = None, key: str | None = None, batch_rows: int = 64, on_error: str = "row",
          dtype: str = "auto", max_length: int = 512, answers: bool = False, threads: int | None = None) -> DataFrame:
    """`df` with `<name>_embedding` (array<float>) per question, `_inbedder_text_sha256` and `_inbedder_error`.

    `key` names the column `inbedder index` maps hits back by (recorded with the vectors). A null or non-text
    row gets its reason in `_inbedder_error` and null vectors (on_error="raise": the task fails instead)."""
    from pyspark.sql.types import StructType

    questions = dict(questions)
    check_request(df.columns, text, questions, on_error)
    if key is not None and key not in df.columns:
        raise InBedderError(f"key column {key!r} is not in the input; it has: {', '.join(df.columns)}")
    if batch_rows < 1:
        raise InBedderError(f"batch_rows must be >= 1, got {batch_rows}")
    spec = ModelSpec(model, adapter, dtype, max_length, threads=threads, answers=answers)
    fields = output_fields(vector_records(spec, questions, key, text), answers)
    out_schema = StructType(df.schema.fields + [spark_field(f) for f in fields])

    def embed_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for start in range(0, batch.num_rows, batch_rows):
                yield embed_batch(batch.slice(start, batch_rows), text, questions, spec, fields, on_error)

    return df.mapInArrow(embed_partition, out_schema)


def spark_field(field: pa.Field):
    """An Arrow output field as Spark's, its record kept as Spark field metadata (written into the Parquet files)."""
    import json

    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField

    import pyarrow as pa

    kind = ArrayType(FloatType()) if pa.types.is_list(field.type) else StringType()
    metadata = {"inbedder": json.loads(field.metadata[b"inbedder"])} if field.metadata else {}
    return StructField(field.name, kind, True, metadata)


def register(spark: SparkSession, name: str = "inbedder_embed", *, model: str | None = None,
             adapter: str | None = None, dtype: str = "auto", max_length: int = 512) -> None:
    """SQL: `SELECT inbedder_embed(body, 'What does the customer want?') FROM t` -> array<float> (null for a
    text that can't be embedded). One model per registered name; questions may differ per row."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import ArrayType, FloatType

    spec = ModelSpec(model, adapter, dtype, max_length)
    vector_records(spec, {"q": "?"}, None)  # the model and adapter are checked here, before any query

    def inbedder_embed(texts, questions):
        from inbedder.batches import engine_for

        engine = engine_for(spec)
        out: list = [None] * len(texts)
        for question in questions.dropna().unique():
            rows = [i for i, q in enumerate(questions) if q == question]
            result = engine.embed([texts.iloc[i] for i in rows], {"q": question}, on_error="row")
            for j, i in enumerate(rows):
                if result.errors[j] is None:
                    out[i] = result.vectors["q"][j].tolist()
        return pd.Series(out)

    # real classes, not this module's postponed strings: Spark reads the UDF's kind from them
    inbedder_embed.__annotations__ = {"texts": pd.Series, "questions": pd.Series, "return": pd.Series}
    spark.udf.register(name, pandas_udf(inbedder_embed, ArrayType(FloatType())))
