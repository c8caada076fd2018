"""`inbedder.ray.Embed` as a Ray Data stage on the local loopback Ray, tiny model."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset  # noqa: F401  (pa.dataset)
import pytest

from inbedder.errors import InBedderError

pytestmark = pytest.mark.timeout(600)
QUESTIONS = {"intent": "What does the customer want?"}


def test_map_batches_equals_the_engine_and_writes_an_indexable_table(cluster, sample_rows, tiny_dirs, llama,
                                                                      tmp_path):
    import ray

    from inbedder.index import build_index
    from inbedder.lake import open_output
    from inbedder.ray import Embed

    rows = sample_rows.slice(0, 30).select(["id", "text"])
    rows = rows.set_column(1, "text", pa.array([None if i == 4 else t for i, t in
                                                enumerate(rows.column("text").to_pylist())]))
    ds = ray.data.from_arrow(rows).map_batches(
        Embed, batch_format="pyarrow", batch_size=8, concurrency=1, num_cpus=0.5,
        fn_constructor_kwargs={"text": "text", "questions": QUESTIONS, "model": str(tiny_dirs["llama"]),
                               "key": "id"})
    path = tmp_path / "ray_out"
    ds.write_parquet(str(path))
    meta = open_output(str(path)).meta
    assert meta.fingerprint == llama.fingerprint and meta.key == "id" and meta.instructions == QUESTIONS
    assert meta.text == "text"
    out = pa.dataset.dataset(str(path), format="parquet").to_table().sort_by("id")
    assert out.num_rows == 30 and sum(e is not None for e in out.column("_inbedder_error").to_pylist()) == 1
    good = out.filter(pa.compute.is_null(out.column("_inbedder_error")))
    got = np.array(good.column("intent_embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, llama.encode(good.column("text").to_pylist(), QUESTIONS["intent"]), atol=1e-5)
    assert build_index(str(path), "intent", str(tmp_path / "index")).rows == 29


def test_pandas_batches_and_bad_settings(tiny_dirs, tmp_path):
    import pandas as pd

    from inbedder.ray import Embed

    stage = Embed("text", QUESTIONS, model=str(tiny_dirs["llama"]))
    out = stage(pd.DataFrame({"text": ["lost my card", "hello"], "n": [1, 2]}))
    assert out.column("n").to_pylist() == [1, 2] and len(out.column("intent_embedding")[0].as_py()) > 0
    with pytest.raises(InBedderError, match="column\\(s\\) text not in the batch"):
        stage(pa.table({"body": ["x"]}))
    with pytest.raises(InBedderError):
        Embed("text", QUESTIONS, model=str(tmp_path / "no-model"))
