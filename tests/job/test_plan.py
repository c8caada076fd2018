"""The run's decisions, without Spark: what to keep, what to embed in which wave, what to refuse."""

import pyarrow as pa
import pytest

from inbedder.errors import TableError
from inbedder.job.plan import (check_existing, check_key_unchanged, check_source, default_run_id, meta_with,
                               plan_instructions, plan_waves)
from inbedder.job.settings import load_config
from inbedder.lake import ExistingOutput, OutputMeta, Snapshot

BASE = {"input.path": "/lake/src", "input.key": "id", "input.text": "text", "output.path": "/lake/out",
        "instructions": {"intent": "What does the user want?", "area": "Which area?"}}


def _config(**fields):
    return load_config(None, [], {**BASE, **fields})


def _snapshot(**types) -> Snapshot:
    schema = pa.schema([pa.field(n, t) for n, t in {"id": pa.int64(), "text": pa.string(), **types}.items()])
    return Snapshot("/lake/src", "delta", 3, ["/lake/src/part-0.parquet"], schema)


def _meta(fingerprint="f1", **instructions) -> OutputMeta:
    return OutputMeta("m", fingerprint, "T", 4, "id", instructions or {"intent": "What does the user want?"})


def test_a_changed_question_is_cleared_an_unasked_one_kept_as_stale_and_the_same_one_reused():
    plan = plan_instructions({"intent": "What does the user want?", "area": "Which area, broadly?", "new": "Q?"},
                             {"intent": "What does the user want?", "area": "Which area?", "old": "Q0?"},
                             {"id", "intent_embedding", "area_embedding", "old_embedding"})
    assert plan.usable == ["intent"] and plan.changed == ["area"] and plan.stale == ["old"]


def test_waves_group_rows_by_what_they_miss_most_first_and_split_by_size():
    names = ["intent", "area"]
    waves = plan_waves(names, {(True, True): 25_000, (False, True): 3, (False, False): 0}, wave_rows=10_000)
    assert [w.instructions for w in waves] == [("intent", "area")] * 3 + [("area",)]
    assert [(w.bucket, w.buckets) for w in waves[:3]] == [(0, 3), (1, 3), (2, 3)]
    assert waves[0].expected_rows == 8_334 and waves[-1].expected_rows == 3
    assert plan_waves(names, {}, 10_000) == []


def test_rows_with_new_keys_make_waves_of_their_own_after_the_merged_ones():
    names = ["intent"]
    waves = plan_waves(names, {(True,): 25_000}, wave_rows=10_000, new_keys={(True,): 24_000})
    # 1,000 changed rows: one merged wave; 24,000 new keys: three appended waves
    assert [(w.new_keys, w.bucket, w.buckets, w.expected_rows) for w in waves] == [
        (False, 0, 1, 1_000), (True, 0, 3, 8_000), (True, 1, 3, 8_000), (True, 2, 3, 8_000)]
    only_new = plan_waves(names, {(True,): 5}, wave_rows=10, new_keys={(True,): 5})
    assert [(w.new_keys, w.expected_rows) for w in only_new] == [(True, 5)]


def test_source_problems_are_named_before_anything_starts():
    config = _config(**{"input.passthrough": ["lang"]})
    with pytest.raises(TableError, match="no column.*lang"):
        check_source(_snapshot(), config)
    with pytest.raises(TableError, match="not a string column"):
        check_source(_snapshot(text=pa.int32(), lang=pa.string()), config)
    with pytest.raises(TableError, match="use an integer or string key"):
        check_source(_snapshot(id=pa.float64(), lang=pa.string()), config)
    with pytest.raises(TableError, match="collide"):
        check_source(_snapshot(q_embedding=pa.string()), _config(**{"input.passthrough": ["q_embedding"]}))
    check_source(_snapshot(lang=pa.string()), config)


def test_a_key_that_changed_kind_is_refused_but_a_wider_integer_is_not():
    config = _config()
    existing = ExistingOutput("delta", 1, _meta(), pa.schema([("id", pa.int32())]))
    check_key_unchanged(existing, _snapshot(), config)  # int32 -> int64: the same keys still match
    with pytest.raises(TableError, match="now string.*new output path"):
        check_key_unchanged(existing, _snapshot(id=pa.string()), config)


def test_an_output_of_another_model_or_of_nobody_is_refused():
    config = _config()
    with pytest.raises(TableError, match="holds vectors from model .* not comparable"):
        check_existing(ExistingOutput("delta", 1, _meta("f0"), pa.schema([])), _meta("f1"), config)
    with pytest.raises(TableError, match="not written by inbedder"):
        check_existing(ExistingOutput("delta", 1, None, pa.schema([])), _meta("f1"), config)
    merge = _config(**{"output.path": "/lake/src", "output.mode": "merge"})
    check_existing(ExistingOutput("delta", 1, None, pa.schema([])), _meta("f1"), merge)  # a source not yet embedded


def test_the_record_after_a_run_keeps_earlier_instructions_and_the_run_id_is_stable():
    before = ExistingOutput("delta", 1, _meta(old="Q0?"), pa.schema([]))
    after = meta_with(_meta(intent="What now?"), before)
    assert after.instructions == {"old": "Q0?", "intent": "What now?"}
    config = _config()
    assert default_run_id(config, 3) == default_run_id(_config(), 3) != default_run_id(config, 4)
