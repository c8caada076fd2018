"""The batch job on real local Spark and Ray, with a tiny model: correctness, incrementality, safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from inbedder import InBedder
from inbedder.errors import ConfigError
from inbedder.job.settings import load_config
from inbedder.job import JobError, run_job
from inbedder.lake import TableError

pytestmark = pytest.mark.timeout(600)
QUESTIONS = {"intent": "What does the customer want?", "feeling": "How does the customer feel?"}


def config_for(src, out, model_dir, **extra):
    base = {"input.path": str(src), "input.key": "id", "input.text": "text", "input.passthrough": ["category"],
            "instructions": dict(QUESTIONS), "output.path": str(out), "model.name": str(model_dir),
            "progress": False, "ray.batch_rows": 32, "output.wave_rows": 100, "spark.rows_per_partition": 60}
    base.update(extra)
    return load_config(base=base)


def first_fingerprint(tmp_path) -> str:
    return DeltaTable(str(tmp_path / "out")).metadata().configuration["inbedder.fingerprint"]


def read_output(path) -> pa.Table:
    return DeltaTable(str(path)).to_pyarrow_table().sort_by("id")


def expected_vectors(model_dir, texts, question):
    return InBedder.from_pretrained(str(model_dir)).encode(texts, question)


def vectors(table: pa.Table, column: str) -> np.ndarray:
    return np.array(table.column(column).to_pylist(), dtype=np.float32)


@pytest.fixture()
def delta_source(tmp_path, sample_rows):
    path = tmp_path / "source_delta"
    write_deltalake(str(path), sample_rows.slice(0, 200))
    write_deltalake(str(path), sample_rows.slice(200, 40), mode="append")  # version 1
    return path


def test_parquet_input_to_delta_output_matches_the_engine(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows, src)
    report = run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    out = read_output(tmp_path / "out")
    assert out.num_rows == 240 and report.rows_embedded == 240 and report.status == "succeeded"
    assert out.column("category").to_pylist() == sample_rows.sort_by("id").column("category").to_pylist()
    texts = sample_rows.sort_by("id").column("text").to_pylist()
    for name, question in QUESTIONS.items():
        np.testing.assert_allclose(vectors(out, f"{name}_embedding"),
                                   expected_vectors(tiny_dirs["llama"], texts, question),
                                   atol=1e-4)
    props = DeltaTable(str(tmp_path / "out")).metadata().configuration
    assert props["inbedder.instruction.intent"] == QUESTIONS["intent"] and props["inbedder.dim"] == "64"
    assert props["inbedder.fingerprint"] == InBedder.from_pretrained(str(tiny_dirs["llama"])).fingerprint
    assert report.waves >= 3 and set(report.seconds) >= {"start_up", "read", "embed", "commit"}
    assert not (tmp_path / "out" / "_inbedder_staging").exists()
    # every key was new: each wave's staged files were added to the log, none merged or rewritten
    operations = [c["operation"] for c in DeltaTable(str(tmp_path / "out")).history()]
    assert report.waves_appended == report.waves and "MERGE" not in operations


def test_rerun_embeds_nothing_and_changed_rows_are_reembedded(cluster, tmp_path, delta_source, tiny_dirs,
                                                              monkeypatch, caplog):
    import inbedder.job.run

    config = config_for(delta_source, tmp_path / "out", tiny_dirs["llama"])
    run_job(config)
    first = read_output(tmp_path / "out")
    version = DeltaTable(str(tmp_path / "out")).version()
    source_version = DeltaTable(str(delta_source)).version()
    # the source's owner compacts it and sets a property: new versions, the same rows
    DeltaTable(str(delta_source)).alter.set_table_properties({"team.owner": "data"}, raise_if_not_exists=False)
    DeltaTable(str(delta_source)).optimize.compact()
    assert DeltaTable(str(delta_source)).version() > source_version
    with monkeypatch.context() as patch:  # nothing to do: no replica (no Ray, no model), not even Spark, may start
        patch.setattr(inbedder.job.run, "start_pool", lambda *a, **k: pytest.fail("a replica started for a no-op run"))
        patch.setattr(inbedder.job.run, "start_spark", lambda *a, **k: pytest.fail("Spark read an unchanged source"))
        with caplog.at_level("INFO", logger="inbedder"):
            again = run_job(config)
    said = [r.getMessage() for r in caplog.records]
    assert again.rows_embedded == 0 and again.instructions["intent"].skipped == 240
    assert any("no replica was started" in m for m in said) and again.fingerprint == first_fingerprint(tmp_path)
    assert DeltaTable(str(tmp_path / "out")).version() == version  # and nothing was committed
    # change two texts and delete one row in the source
    table = DeltaTable(str(delta_source))
    edited = [first.column("id")[10].as_py(), first.column("id")[200].as_py()]
    table.update(updates={"text": "'I was charged twice for one coffee'"},
                 predicate=f"id IN ('{edited[0]}', '{edited[1]}')")
    gone = first.column("id")[5].as_py()
    table.delete(f"id = '{gone}'")
    added = pa.table({"id": ["new-1", "new-2", "new-3"], "text": ["Where is my card?", "Cancel my order", "Hi"],
                      "category": ["card", "order", "other"]})
    source_schema = pa.schema(DeltaTable(str(delta_source)).schema().to_arrow())
    write_deltalake(str(delta_source), added.cast(source_schema), mode="append")
    third = run_job(config)
    out = read_output(tmp_path / "out")
    assert third.rows_embedded == 5 and third.rows_deleted == 1 and out.num_rows == 242
    # the changed keys went through a MERGE, the new ones were appended
    assert third.waves == 2 and third.waves_appended == 1
    log = DeltaTable(str(tmp_path / "out")).history(limit=DeltaTable(str(tmp_path / "out")).version() - version)
    assert [c["operation"] for c in log].count("MERGE") == 1  # the deleted key went out with the changed rows
    fresh = out.filter(pc.is_in(out.column("id"), added.column("id"))).sort_by("id")
    np.testing.assert_allclose(vectors(fresh, "intent_embedding"),
                               expected_vectors(tiny_dirs["llama"], added.column("text").to_pylist(),
                                                QUESTIONS["intent"]), atol=1e-4)
    changed = out.filter(pc.is_in(out.column("id"), pa.array(edited)))
    expect = expected_vectors(tiny_dirs["llama"], ["I was charged twice for one coffee"] * 2, QUESTIONS["intent"])
    np.testing.assert_allclose(vectors(changed, "intent_embedding"), expect, atol=1e-4)
    unchanged_before = first.filter(pc.invert(pc.is_in(first.column("id"), pa.array([*edited, gone]))))
    unchanged_after = out.filter(pc.is_in(out.column("id"), unchanged_before.column("id")))
    assert (unchanged_after.column("intent_embedding").to_pylist()
            == unchanged_before.column("intent_embedding").to_pylist())


def test_a_row_removed_from_the_output_by_hand_is_embedded_again_though_the_source_is_unchanged(
        cluster, tmp_path, delta_source, tiny_dirs, monkeypatch):
    import inbedder.job.run

    config = config_for(delta_source, tmp_path / "out", tiny_dirs["llama"])
    run_job(config)
    first = read_output(tmp_path / "out")
    lost = first.column("id")[7].as_py()
    DeltaTable(str(tmp_path / "out")).delete(f"id = '{lost}'")  # the output's record no longer describes it
    again = run_job(config)
    out = read_output(tmp_path / "out")
    assert again.rows_embedded == 1 and out.column("id").equals(first.column("id"))
    for name in QUESTIONS:
        np.testing.assert_allclose(vectors(out, f"{name}_embedding"), vectors(first, f"{name}_embedding"), atol=1e-4)
    with monkeypatch.context() as patch:  # recorded again: the next run stops before Spark
        patch.setattr(inbedder.job.run, "start_spark", lambda *a, **k: pytest.fail("Spark read an unchanged source"))
        assert run_job(config).rows_embedded == 0


def test_vectors_another_writer_nulled_or_deleted_are_embedded_again(cluster, tmp_path, delta_source, tiny_dirs):
    """A foreign UPDATE leaves our status bits saying True over null vectors: the files it rewrote are read
    by their vectors, so the rows are repaired, not reported as done (issue 29)."""
    config = config_for(delta_source, tmp_path / "out", tiny_dirs["llama"])
    run_job(config)
    first = read_output(tmp_path / "out")
    ids = first.column("id").to_pylist()
    nulled, deleted = ids[10:30], ids[50:55]
    table = DeltaTable(str(tmp_path / "out"))
    listed = ", ".join(f"'{k}'" for k in nulled)
    table.update(updates={"intent_embedding": "NULL"}, predicate=f"id IN ({listed})")
    DeltaTable(str(tmp_path / "out")).delete(f"id IN ({', '.join(repr(k) for k in deleted)})")
    assert sum(v is None for v in read_output(tmp_path / "out").column("intent_embedding").to_pylist()) == 20
    again = run_job(config)
    out = read_output(tmp_path / "out")
    assert again.rows_embedded == 25 and out.column("id").equals(first.column("id"))
    for name in QUESTIONS:
        np.testing.assert_allclose(vectors(out, f"{name}_embedding"), vectors(first, f"{name}_embedding"), atol=1e-4)
    assert out.column("_inbedder_has_intent").to_pylist() == [True] * out.num_rows
    assert run_job(config).rows_embedded == 0  # repaired and recorded: nothing left to do


def test_new_instruction_adds_a_column_without_recomputing(cluster, tmp_path, delta_source, tiny_dirs):
    run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["llama"],
                       instructions={"intent": QUESTIONS["intent"]}))
    before = read_output(tmp_path / "out")
    report = run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["llama"]))
    out = read_output(tmp_path / "out")
    assert report.instructions["intent"].embedded == 0 and report.instructions["feeling"].embedded == 240
    assert out.column("intent_embedding").to_pylist() == before.column("intent_embedding").to_pylist()
    assert out.column("feeling_embedding").null_count == 0


def test_pinned_delta_version_and_the_index_step(cluster, tmp_path, delta_source, tiny_dirs):
    report = run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["llama"],
                                **{"input.version": 0, "index.out": str(tmp_path / "idx")}))
    assert report.input_version == 0 and read_output(tmp_path / "out").num_rows == 200
    manifest = json.loads((tmp_path / "idx" / "intent" / "manifest.json").read_text())
    assert manifest["rows"] == 200 and manifest["source_version"] == report.output_version
    assert manifest["text_column"] == "text"  # recorded by the job with the vectors: the server shows that column
    assert "index" in report.seconds


def test_hive_partitioned_parquet_to_parquet_output(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "hive"
    pq.write_to_dataset(sample_rows.slice(0, 60), src, partition_cols=["category"])
    config = config_for(src, tmp_path / "out_pq", tiny_dirs["llama"], **{"output.format": "parquet"})
    run_job(config)
    out = pq.read_table(tmp_path / "out_pq").sort_by("id")
    assert out.num_rows == 60
    assert out.column("category").to_pylist() == sample_rows.slice(0, 60).sort_by("id").column("category").to_pylist()
    assert b"inbedder" in pq.read_schema(next((tmp_path / "out_pq").glob("*.parquet"))).metadata
    assert run_job(config).rows_embedded == 0


def test_partitioned_delta_source_keeps_its_partition_column(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "delta_by_category"
    write_deltalake(str(src), sample_rows.slice(0, 60), partition_by=["category"])
    run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    out = read_output(tmp_path / "out")
    assert out.num_rows == 60
    assert out.column("category").to_pylist() == sample_rows.slice(0, 60).sort_by("id").column("category").to_pylist()


def test_merge_into_source_keeps_every_row_and_column(cluster, tmp_path, delta_source, tiny_dirs):
    before = DeltaTable(str(delta_source)).to_pyarrow_table().sort_by("id")
    config = config_for(delta_source, delta_source, tiny_dirs["llama"], **{"output.mode": "merge",
                                                                            "input.passthrough": []})
    run_job(config)
    after = read_output(delta_source)
    assert after.num_rows == before.num_rows
    for column in before.column_names:
        assert after.column(column).to_pylist() == before.column(column).to_pylist()
    assert after.column("intent_embedding").null_count == 0


def test_row_errors_are_recorded_and_max_error_rate_fails_the_run(cluster, tmp_path, sample_rows, tiny_dirs,
                                                                   monkeypatch):
    texts = sample_rows.column("text").to_pylist()[:20]
    texts[3], texts[7] = None, "   "
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(20)], "text": texts, "category": ["c"] * 20}), src)
    report = run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    out = read_output(tmp_path / "out")
    errors = dict(zip(out.column("id").to_pylist(), out.column("_inbedder_error").to_pylist()))
    assert "null" in errors["r3"] and "empty" in errors["r7"] and errors["r4"] is None
    assert report.rows_failed == 2 and report.rows_embedded == 18
    assert out.filter(pc.field("id") == "r3").column("intent_embedding").null_count == 1
    import inbedder.job.run

    failing = config_for(src, tmp_path / "out2", tiny_dirs["llama"], max_error_rate=0.05)
    with pytest.raises(JobError, match="over max_error_rate"):
        run_job(failing)
    # the same run again has nothing to embed (no replica starts), and fails as the first did: it is no success
    with monkeypatch.context() as patch, pytest.raises(JobError, match="2 of 20 rows failed"):
        patch.setattr(inbedder.job.run, "start_pool", lambda *a, **k: pytest.fail("a replica started for a no-op run"))
        run_job(failing)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_column", "has no column"),
        ("wrong_type", "not a string column"),
        ("duplicate_keys", "is not unique"),
        ("missing_input", "does not exist"),
        ("corrupt_input", "not a readable Parquet dataset"),
    ],
)
def test_bad_inputs_fail_clearly_and_touch_nothing(cluster, tmp_path, sample_rows, tiny_dirs, case, message):
    src = tmp_path / "src.parquet"
    rows = sample_rows.slice(0, 30)
    if case == "missing_column":
        rows = rows.drop_columns(["category"])
    elif case == "wrong_type":
        rows = rows.set_column(1, "text", pa.array(range(30)))
    elif case == "duplicate_keys":
        rows = rows.set_column(0, "id", pa.array(["same"] * 30))
    if case != "missing_input":
        pq.write_table(rows, src)
    if case == "corrupt_input":
        src.write_bytes(b"PAR1 this is not parquet")
    before = src.read_bytes() if src.exists() else None
    with pytest.raises((TableError, JobError), match=message):
        run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    assert (src.read_bytes() if src.exists() else None) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.parquet"))


def test_a_key_name_with_spaces_and_dots_is_quoted_everywhere(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    rows = sample_rows.slice(0, 40).rename_columns(["row id.v1", "text", "category"])
    pq.write_table(rows, src)
    config = config_for(src, tmp_path / "out", tiny_dirs["llama"], **{"input.key": "row id.v1"})
    assert run_job(config).rows_embedded == 40
    edited = rows.set_column(1, "text", pa.array(["I lost my card"] + rows.column("text").to_pylist()[1:]))
    pq.write_table(edited.slice(0, 39), src)  # one text changed (MERGE update), one row gone (MERGE delete)
    report = run_job(config)
    out = DeltaTable(str(tmp_path / "out")).to_pyarrow_table().sort_by("row id.v1")
    assert report.rows_embedded == 1 and report.rows_deleted == 1 and out.num_rows == 39
    assert out.column("row id.v1").to_pylist() == edited.slice(0, 39).sort_by("row id.v1").column(0).to_pylist()


def test_only_the_keys_that_left_the_source_reach_the_driver(cluster, tmp_path, sample_rows, tiny_dirs,
                                                             monkeypatch):
    from inbedder import lake

    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 50), src)
    config = config_for(src, tmp_path / "out", tiny_dirs["llama"])
    run_job(config)
    kept = sample_rows.slice(0, 50)
    gone = kept.column("id").to_pylist()[7:9]
    pq.write_table(kept.filter(pc.invert(pc.is_in(kept.column("id"), pa.array(gone)))), src)
    seen: list[list] = []
    real_delete = lake.DeltaOutput.delete_keys

    def spy(output, keys, run_id):
        seen.append(keys.to_pylist())
        return real_delete(output, keys, run_id)

    monkeypatch.setattr(lake.DeltaOutput, "delete_keys", spy)
    report = run_job(config)
    assert len(seen) == 1 and sorted(seen[0]) == sorted(gone)  # two keys, not the table's 50
    assert report.rows_deleted == 2 and read_output(tmp_path / "out").num_rows == 48


def test_a_key_name_with_a_backtick_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"input.key: .*backtick.*rename the column"):
        load_config(base={"input.path": str(tmp_path / "in"), "input.key": "we`ird", "input.text": "text",
                          "instructions": {"q": "What?"}, "output.path": str(tmp_path / "out")})


def test_a_changed_key_type_is_refused_and_the_output_kept(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    rows = sample_rows.slice(0, 20).set_column(0, "id", pa.array(range(20), type=pa.int64()))
    pq.write_table(rows, src)
    run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    before = read_output(tmp_path / "out")
    pq.write_table(rows.set_column(0, "id", pa.array([str(i) for i in range(20)])), src)
    with pytest.raises(TableError, match=r"keyed by 'id' of type int64, but the source's 'id' is now string"):
        run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    assert read_output(tmp_path / "out").equals(before)


def _good_and_bad_files(folder, rows):
    folder.mkdir()
    pq.write_table(rows.slice(0, 20), folder / "part-0.parquet")
    pq.write_table(rows.slice(20, 20), folder / "part-1.parquet")
    return folder / "part-0.parquet", folder / "part-1.parquet"


def test_a_corrupt_file_among_good_ones_is_named_before_spark_starts(tmp_path, sample_rows, tiny_dirs):
    _, bad = _good_and_bad_files(tmp_path / "src", sample_rows.slice(0, 40))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] + b"\0" * 16 + data[-8:])  # the footer is gone, the magic kept
    t0 = time.perf_counter()
    with pytest.raises(TableError, match=r"input file .*part-1.parquet is not a readable Parquet file"):
        run_job(config_for(tmp_path / "src", tmp_path / "out", tiny_dirs["llama"]))
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out").exists()


def test_a_damaged_checksum_file_is_named_not_the_data_file(cluster, tmp_path, sample_rows, tiny_dirs):
    good, _ = _good_and_bad_files(tmp_path / "src", sample_rows.slice(0, 40))
    crc = tmp_path / "src" / ".part-0.parquet.crc"
    crc.write_bytes(b"crc\0\0\0\2\0" + b"\1\2\3\4")  # the wrong size: caught before Spark starts
    with pytest.raises(TableError, match=r"damaged Hadoop checksum file .*\.part-0\.parquet\.crc"):
        run_job(config_for(tmp_path / "src", tmp_path / "out", tiny_dirs["llama"]))
    chunks = -(-good.stat().st_size // 512)
    crc.write_bytes(b"crc\0\0\0\2\0" + b"\1\2\3\4" * chunks)  # the right size, wrong sums: Spark finds it
    with pytest.raises(JobError, match=r"reads fine, but its Hadoop checksum file .*part-0\.parquet\.crc does not "
                                       r"match it .* delete the \.crc file"):
        run_job(config_for(tmp_path / "src", tmp_path / "out", tiny_dirs["llama"]))
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 10), src)
    (tmp_path / "out").write_text("precious")
    with pytest.raises(TableError, match=r"output .*out is a file, not a folder"):
        run_job(config_for(src, tmp_path / "out", tiny_dirs["llama"]))
    assert (tmp_path / "out").read_text() == "precious"


def test_output_equal_to_input_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="output.path equals input.path"):
        load_config(base={"input.path": str(tmp_path), "input.key": "id", "input.text": "text",
                          "instructions": {"q": "What?"}, "output.path": str(tmp_path)})


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input: {path: x, key: id}\ninstructions: {q: \"What is it?\"}\noutput: {path: y, fromat: delta}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "input.text: Field required" in str(err.value) and "output.fromat: Extra inputs" in str(err.value)
    with pytest.raises(ConfigError, match="ray.max_in_flight"):
        load_config(path, ["input.text=text", "output.fromat=", "ray.max_in_flight=0"])


def test_output_made_by_another_model_is_refused(cluster, tmp_path, delta_source, tiny_dirs):
    run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["llama"]))
    before = read_output(tmp_path / "out")
    with pytest.raises(TableError, match="holds vectors from model"):
        run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["opt"]))
    assert read_output(tmp_path / "out").equals(before)


def test_a_killed_replica_is_replaced_and_the_output_is_exact(cluster, tmp_path, sample_rows, tiny_dirs):
    import ray

    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows, src)
    config = config_for(src, tmp_path / "out", tiny_dirs["llama"], **{"ray.batch_rows": 8})
    killed = []

    def kill_one_replica():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("replica-")]
            if names and (tmp_path / "out" / "_delta_log").exists():
                pid = ray.get(ray.get_actor(names[0], namespace="inbedder").identity.remote())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_one_replica)
    watcher.start()
    report = run_job(config)
    watcher.join()
    assert killed, "the replica was never killed: the run ended too fast to test this"
    out = read_output(tmp_path / "out")
    assert out.num_rows == 240 and report.rows_embedded == 240
    texts = sample_rows.sort_by("id").column("text").to_pylist()
    np.testing.assert_allclose(vectors(out, "intent_embedding"),
                               expected_vectors(tiny_dirs["llama"], texts, QUESTIONS["intent"]), atol=1e-4)


def test_a_killed_job_resumes_and_equals_a_clean_run(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows, src)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "inbedder.cli", "embed", "--input", str(src), "--key", "id", "--text", "text",
           "--passthrough", "category", "--output", str(out), "--model", str(tiny_dirs["llama"]),
           *[f"--instruction={n}={q}" for n, q in QUESTIONS.items()],
           "--set", "output.wave_rows=30", "--set", "ray.batch_rows=8", "--set", "progress=false"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "_delta_log").exists() and DeltaTable(str(out)).version() >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the job finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = read_output(out).num_rows
    assert 0 < partial < 240
    report = run_job(config_for(src, out, tiny_dirs["llama"], **{"output.wave_rows": 30}))
    assert report.rows_embedded == 240 - partial
    clean_out = tmp_path / "clean"
    run_job(config_for(src, clean_out, tiny_dirs["llama"]))
    assert not (out / "_inbedder_staging").exists(), "the killed attempt's staging outlived the resumed run"
    resumed, clean = read_output(out), read_output(clean_out)
    assert resumed.column_names == clean.column_names and resumed.num_rows == clean.num_rows
    for column in resumed.column_names:
        if column.endswith("_embedding"):
            np.testing.assert_allclose(vectors(resumed, column), vectors(clean, column), atol=1e-4)
        else:
            assert resumed.column(column).to_pylist() == clean.column(column).to_pylist()


def test_two_runs_writing_one_output_at_once_leave_a_consistent_table(cluster, tmp_path, sample_rows, tiny_dirs):
    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows, src)
    config = config_for(src, tmp_path / "out", tiny_dirs["llama"])
    outcomes: list[object] = []

    def run():
        try:
            outcomes.append(run_job(config))
        except Exception as exc:  # a clean conflict error is acceptable, a corrupt table is not
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any(not isinstance(o, Exception) for o in outcomes), outcomes
    out = read_output(tmp_path / "out")
    assert out.num_rows == 240 and len(set(out.column("id").to_pylist())) == 240
    assert out.column("intent_embedding").null_count == 0
    assert run_job(config).rows_embedded == 0


def test_delta_features_the_reader_cannot_honour_are_refused(cluster, tmp_path, delta_source, tiny_dirs):
    from deltalake import TableFeatures

    DeltaTable(str(delta_source)).alter.add_feature([TableFeatures.DeletionVectors],
                                                    allow_protocol_versions_increase=True)
    with pytest.raises(TableError, match="reader feature 'deletionVectors'"):
        run_job(config_for(delta_source, tmp_path / "out", tiny_dirs["llama"]))
    assert not (tmp_path / "out").exists()


def test_end_to_end_on_the_default_model(cluster, tmp_path, sample_rows):
    """The embedded default through Spark and Ray gives the engine's own vectors."""
    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 24), src)
    config = load_config(base={"input.path": str(src), "input.key": "id", "input.text": "text",
                               "instructions": dict(QUESTIONS), "output.path": str(tmp_path / "out"),
                               "progress": False, "model.answers": True, "model.max_answer_tokens": 6})
    report = run_job(config)
    out = read_output(tmp_path / "out")
    model = InBedder.from_pretrained()
    assert report.fingerprint == model.fingerprint and out.num_rows == 24
    texts = out.column("text").to_pylist() if "text" in out.column_names else \
        sample_rows.slice(0, 24).sort_by("id").column("text").to_pylist()
    got = vectors(out, "feeling_embedding")
    want = model.encode(texts, QUESTIONS["feeling"])
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999
    assert out.column("intent_answer").null_count == 0
    assert all(a.strip() for a in out.column("intent_answer").to_pylist())


def _read_schema(frame) -> str:
    return " ".join(line for line in frame._jdf.queryExecution().executedPlan().toString().splitlines()
                    if "ReadSchema" in line)


def test_the_state_of_a_rerun_is_read_from_status_bits_not_vectors(cluster, tmp_path, sample_rows, tiny_dirs):
    """At lake scale the vectors are most of the bytes: deciding what to embed must not read them."""
    from inbedder import lake
    from inbedder.job.spark import existing_state

    src = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 60), src)
    config = config_for(src, tmp_path / "out", tiny_dirs["llama"])
    run_job(config)
    out = read_output(tmp_path / "out")
    assert out.column(lake.status_column("intent")).to_pylist() == [True] * 60
    state = existing_state(cluster, config, lake.DeltaOutput(str(tmp_path / "out"), "id"), list(QUESTIONS))
    schema = _read_schema(state)
    assert "_inbedder_has_intent" in schema and "_embedding" not in schema, schema
    assert state.where("_has_intent AND _has_feeling").count() == 60


def test_an_output_from_before_status_bits_gets_them_once_and_nothing_is_reembedded(cluster, tmp_path, tiny_dirs,
                                                                                     banking_texts):
    from inbedder import lake

    from ..conftest import QUESTION, output_table

    table = output_table(tmp_path / "out", InBedder.from_pretrained(str(tiny_dirs["llama"])), banking_texts[:30])
    assert lake.status_column("q") not in DeltaTable(str(table)).schema().to_arrow().names  # the old layout
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": [f"k{i}" for i in range(30)], "text": banking_texts[:30]}), src)
    config = load_config(base={"input.path": str(src), "input.key": "id", "input.text": "text",
                               "instructions": {"q": QUESTION}, "output.path": str(table),
                               "model.name": str(tiny_dirs["llama"]), "progress": False})
    report = run_job(config)
    assert report.rows_embedded == 0 and report.instructions["q"].skipped == 30
    assert read_output(table).column(lake.status_column("q")).to_pylist() == [True] * 30
    version = DeltaTable(str(table)).version()
    assert run_job(config).rows_embedded == 0 and DeltaTable(str(table)).version() == version  # once only


def test_a_parquet_output_from_before_status_bits_is_not_reembedded_after_it_grows(cluster, tmp_path, tiny_dirs,
                                                                                    banking_texts):
    """Old rows carried into each rewrite have no bits: for Parquet outputs the vectors decide."""
    import hashlib

    from inbedder import lake

    from ..conftest import QUESTION

    model = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    old = pa.table({"id": [f"k{i}" for i in range(20)],
                    lake.KEY_HASH: [hashlib.sha256(t.encode()).hexdigest() for t in banking_texts[:20]],
                    "q_embedding": pa.array(list(model.encode(banking_texts[:20], QUESTION)), pa.list_(pa.float32())),
                    lake.ERROR: pa.array([None] * 20, pa.string())})
    meta = lake.OutputMeta(model.model_name, model.fingerprint, model.template, model.dim, "id", {"q": QUESTION})
    lake.write_parquet_output(str(tmp_path / "out"), [old], meta, old.schema)  # the layout before status bits
    src = tmp_path / "src.parquet"
    config = load_config(base={"input.path": str(src), "input.key": "id", "input.text": "text",
                               "instructions": {"q": QUESTION}, "output.path": str(tmp_path / "out"),
                               "output.format": "parquet", "model.name": str(tiny_dirs["llama"]), "progress": False})
    pq.write_table(pa.table({"id": [f"k{i}" for i in range(25)], "text": banking_texts[:25]}), src)
    assert run_job(config).rows_embedded == 5  # only the new rows
    assert run_job(config).rows_embedded == 0  # and the carried old rows (bits null) are not taken for missing
