"""InBedder as a Ray Data stage: `ds.map_batches(inbedder.ray.Embed, fn_constructor_kwargs={...})`.

Each actor of the stage loads the model once (`inbedder.batches.engine_for`, the
path the job's replicas use) and embeds Arrow or pandas batches:

    import ray, inbedder.ray
    ds = ray.data.read_parquet("s3://lake/tickets")
    ds = ds.map_batches(inbedder.ray.Embed, batch_format="pyarrow", concurrency=2, num_gpus=1,
                        fn_constructor_kwargs={"text": "body", "key": "id",
                                               "questions": {"intent": "What does the customer want?"}})
    ds.write_parquet("s3://lake/tickets_embedded")       # `inbedder index` accepts it

The vector fields carry their record (model, fingerprint, question) as Arrow field
metadata, which the Parquet files keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from inbedder.batches import ModelSpec, check_request, embed_batch, engine_for, output_fields, vector_records
from inbedder.errors import InBedderError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class Embed:
    """A callable class for `map_batches`: Arrow (or pandas) batch in, the same batch with vectors out."""

    def __init__(self, text: str, questions: Mapping[str, str], *, model: str | None = None,
                 adapter: str | None = None, key: str | None = None, on_error: str = "row", dtype: str = "auto",
                 max_length: int = 512, answers: bool = False, threads: int | None = None):
        self.text, self.questions, self.key, self.on_error = text, dict(questions), key, on_error
        check_request([text] + ([key] if key else []), text, self.questions, on_error)
        self.spec = ModelSpec(model, adapter, dtype, max_length, threads=threads, answers=answers)
        self.fields = output_fields(vector_records(self.spec, self.questions, key, text), answers)
        engine_for(self.spec)  # the actor loads its model once, before its first batch

    def __call__(self, batch: pa.Table | pd.DataFrame) -> pa.Table:
        import pyarrow as pa

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
        missing = [c for c in (self.text, self.key) if c and c not in table.column_names]
        if missing:
            raise InBedderError(f"column(s) {', '.join(missing)} not in the batch; it has: "
                                f"{', '.join(table.column_names)}")
        combined = table.combine_chunks()
        batches = combined.to_batches() or [pa.RecordBatch.from_pylist([], schema=combined.schema)]
        out = [embed_batch(b, self.text, self.questions, self.spec, self.fields, self.on_error) for b in batches]
        return pa.Table.from_batches(out)

