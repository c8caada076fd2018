"""`inbedder.spark.embed` on real local Spark, tiny model: lazy, engine-equal vectors, per-row errors, records
that `inbedder index` accepts, one model per worker across calls."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from inbedder.errors import InBedderError

pytestmark = pytest.mark.timeout(600)
QUESTIONS = {"intent": "What does the customer want?", "feeling": "How does the customer feel?"}


@pytest.fixture()
def frame(cluster, sample_rows):
    rows = sample_rows.slice(0, 40).select(["id", "text"]).to_pylist()
    rows[3]["text"] = None  # a null text: a per-row error, never a lost row
    return cluster.createDataFrame(rows, "id string, text string").repartition(2)


def worker_loads(spark) -> dict[int, int]:
    """Models loaded so far by each Python worker process that answers a small job."""
    def report(batches):
        import os

        from inbedder import batches as shared

        for _ in batches:
            pass
        yield pa.record_batch({"pid": [os.getpid()], "loads": [shared.loads()]})

    rows = spark.range(0, 8, 1, 4).mapInArrow(report, "pid long, loads long").collect()
    return {r["pid"]: r["loads"] for r in rows}


def test_embed_is_lazy_and_equals_the_engine(cluster, frame, tiny_dirs, llama, tmp_path):
    from inbedder import batches
    from inbedder.spark import embed

    before = batches.loads()
    out = embed(frame, text="text", questions=QUESTIONS, model=str(tiny_dirs["llama"]), key="id", batch_rows=7)
    assert batches.loads() == before  # nothing loaded on the driver; nothing ran
    assert out.schema["intent_embedding"].metadata["inbedder"]["fingerprint"] == llama.fingerprint
    rows = sorted(out.collect(), key=lambda r: r["id"])
    assert len(rows) == 40
    bad = [r for r in rows if r["_inbedder_error"] is not None]
    assert len(bad) == 1 and bad[0]["intent_embedding"] is None
    good = [r for r in rows if r["_inbedder_error"] is None]
    for name, question in QUESTIONS.items():
        got = np.array([r[f"{name}_embedding"] for r in good], dtype=np.float32)
        want = llama.encode([r["text"] for r in good], question)
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() >= 0.9999
    # a second call reuses every worker's model
    embed(frame, text="text", questions={"intent": QUESTIONS["intent"]}, model=str(tiny_dirs["llama"])).count()
    assert all(n <= 1 for n in worker_loads(cluster).values())


def test_its_parquet_output_is_accepted_by_index_and_refuses_a_model_mix(cluster, frame, tiny_dirs, tmp_path):
    from inbedder.index import build_index
    from inbedder.lake import open_output
    from inbedder.spark import embed

    path = tmp_path / "embedded"
    embed(frame, text="text", questions=QUESTIONS, model=str(tiny_dirs["llama"]), key="id") \
        .write.parquet(str(path))
    meta = open_output(str(path)).meta
    assert meta.key == "id" and meta.instructions == QUESTIONS and meta.dim > 0 and meta.text == "text"
    manifest = build_index(str(path), "intent", str(tmp_path / "index"))
    assert manifest.rows == 39 and manifest.fingerprint == meta.fingerprint and manifest.text_column == "text"
    mixed = embed(embed(frame, text="text", questions={"a": "Which topic?"}, model=str(tiny_dirs["llama"]))
                  .drop("_inbedder_text_sha256", "_inbedder_error"),
                  text="text", questions={"b": "Which mood?"}, model=str(tiny_dirs["opt"]))
    mixed.write.parquet(str(tmp_path / "mixed"))
    with pytest.raises(InBedderError, match="different models"):
        open_output(str(tmp_path / "mixed"))


def test_bad_calls_fail_on_the_driver_in_one_line(cluster, frame, tiny_dirs, tmp_path):
    from inbedder.spark import embed

    with pytest.raises(InBedderError, match="text column 'body'"):
        embed(frame, text="body", questions=QUESTIONS, model=str(tiny_dirs["llama"]))
    with pytest.raises(InBedderError, match="key column 'nope'"):
        embed(frame, text="text", questions=QUESTIONS, model=str(tiny_dirs["llama"]), key="nope")
    with pytest.raises(InBedderError):
        embed(frame, text="text", questions=QUESTIONS, model=str(tmp_path / "no-model"))


def test_on_error_raise_fails_the_action_on_a_null_text(cluster, frame, tiny_dirs):
    from inbedder.spark import embed

    with pytest.raises(Exception, match="text is None|null|None"):
        embed(frame, text="text", questions=QUESTIONS, model=str(tiny_dirs["llama"]), on_error="raise").collect()


def test_sql_function(cluster, frame, tiny_dirs, llama):
    from inbedder.spark import register

    register(cluster, model=str(tiny_dirs["llama"]))
    frame.createOrReplaceTempView("tickets")
    rows = cluster.sql("SELECT id, text, inbedder_embed(text, 'What does the customer want?') AS v FROM tickets "
                       "WHERE text IS NOT NULL ORDER BY id LIMIT 5").collect()
    want = llama.encode([r["text"] for r in rows], QUESTIONS["intent"])
    np.testing.assert_allclose(np.array([r["v"] for r in rows], dtype=np.float32), want, atol=1e-4)


def test_the_job_and_the_integrations_share_one_batch_path():
    import inspect

    from inbedder.job import replicas, waves

    assert "engine_for" in inspect.getsource(replicas.Replica) and "vector_array" in inspect.getsource(waves)


def test_the_pipeline_example_runs_both_integrations_on_the_bundled_sample(cluster, tmp_path):
    import importlib.util
    from importlib.resources import files
    from pathlib import Path

    from inbedder.lake import open_output

    spec = importlib.util.spec_from_file_location(
        "example", Path(__file__).resolve().parents[1] / "jobs" / "inside_your_pipeline.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    sample = str(files("inbedder") / "data" / "banking77_sample.parquet")
    assert example.with_spark(sample, str(tmp_path), spark=cluster) == 60
    assert example.with_ray(sample, str(tmp_path)) == 60
    assert open_output(str(tmp_path / "spark")).meta.fingerprint == open_output(str(tmp_path / "ray")).meta.fingerprint
