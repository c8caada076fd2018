"""The per-batch path every way of running shares: vectors equal the engine's, per-row errors, records."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from inbedder import batches
from inbedder.batches import ModelSpec, check_request, embed_batch, output_fields, vector_records
from inbedder.errors import InBedderError

QUESTIONS = {"intent": "What does the customer want?", "feeling": "How does the customer feel?"}


def test_a_batch_gains_vectors_equal_to_the_engine_and_keeps_bad_rows(tiny_dirs, llama):
    spec = ModelSpec(str(tiny_dirs["llama"]))
    fields = output_fields(vector_records(spec, QUESTIONS, "id"), answers=False)
    batch = pa.record_batch({"id": [1, 2, 3], "body": ["card lost", None, "thanks a lot"]})
    out = embed_batch(batch, "body", QUESTIONS, spec, fields)
    assert out.num_rows == 3 and out.column("id").to_pylist() == [1, 2, 3]
    assert out.column("_inbedder_error").to_pylist()[1] is not None
    assert out.column("intent_embedding")[1].as_py() is None
    got = np.array([out.column("intent_embedding")[i].as_py() for i in (0, 2)], dtype=np.float32)
    np.testing.assert_allclose(got, llama.encode(["card lost", "thanks a lot"], QUESTIONS["intent"]), atol=1e-5)
    record = json.loads(out.schema.field("feeling_embedding").metadata[b"inbedder"])
    assert record["question"] == QUESTIONS["feeling"] and record["fingerprint"] == llama.fingerprint
    assert record["dim"] == llama.dim and record["key"] == "id"
    with pytest.raises(InBedderError, match="row 1"):
        embed_batch(batch, "body", QUESTIONS, spec, fields, on_error="raise")
    empty = embed_batch(batch.slice(0, 0), "body", QUESTIONS, spec, fields)
    assert empty.num_rows == 0 and "intent_embedding" in empty.schema.names


def test_one_engine_per_process_and_spec(tiny_dirs):
    spec = ModelSpec(str(tiny_dirs["opt"]))
    before = batches.loads()
    first = batches.engine_for(spec)
    assert batches.engine_for(ModelSpec(str(tiny_dirs["opt"]))) is first and batches.loads() == before + 1


def test_the_record_is_known_without_loading_and_bad_models_fail_in_one_line(tiny_dirs, tmp_path, llama):
    before = batches.loads()
    name, fingerprint, _, dim = batches.describe(ModelSpec(str(tiny_dirs["llama"])))
    assert batches.loads() == before and (fingerprint, dim) == (llama.fingerprint, llama.dim)
    with pytest.raises(InBedderError, match="nowhere"):
        batches.describe(ModelSpec(str(tmp_path / "nowhere")))
    wrong = tmp_path / "adapter"
    wrong.mkdir()
    (wrong / "inbedder_adapter.json").write_text(json.dumps({"base_weights": "other", "base_model": "x"}))
    with pytest.raises(InBedderError, match="trained on other base weights"):
        batches.describe(ModelSpec(str(tiny_dirs["llama"]), adapter=str(wrong)))


@pytest.mark.parametrize("columns, text, questions, on_error, message", [
    (["id"], "body", QUESTIONS, "row", "text column 'body' is not in the input"),
    (["body"], "body", QUESTIONS, "skip", "on_error must be"),
    (["body"], "body", {}, "row", "questions is empty"),
    (["body", "intent_embedding"], "body", QUESTIONS, "row", "already has column"),
    (["body"], "body", {"1x": "?"}, "row", "name must be"),
])
def test_a_request_that_cannot_work_is_refused(columns, text, questions, on_error, message):
    with pytest.raises(InBedderError, match=message):
        check_request(columns, text, questions, on_error)
