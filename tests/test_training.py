"""Training: the recipe's targets, exact resumption, adapters the engine loads, honest data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from inbedder import InBedder
from inbedder.engine import ModelLoadError
from inbedder.engine.prompts import PromptTokenizer
from inbedder.engine.pooling import LAST_TOKEN
from inbedder.training.trainer import (IGNORE, TrainConfig, TrainingError, batches_for_step, encode_example,
                                       epoch_order, train)

from .conftest import DATA

ROWS = [("My card has not arrived yet.", "What does the customer want?", "card delivery"),
        ("I was charged twice for one coffee.", "What does the customer want?", "refund"),
        ("What a wonderful day, I love it!", "How does the writer feel?", "joy"),
        ("This is the worst service ever.", "How does the writer feel?", "anger")] * 4


@pytest.fixture()
def rows_file(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"input": [r[0] for r in ROWS], "instruction": [r[1] for r in ROWS],
                             "answer": [r[2] for r in ROWS]}), path)
    return path


def _config(tiny_dirs, rows_file, out, **kw) -> TrainConfig:
    base = dict(model=str(tiny_dirs["llama"]), train=str(rows_file), validation=str(rows_file), out=str(out),
                lr=5e-3, batch_size=4, epochs=3, checkpoint_every=2, eval_every=3, progress=False, lora_r=4)
    return TrainConfig(**(base | kw))


def test_only_the_answer_and_eos_are_targets_and_the_prompt_is_the_engines(tiny):
    tok = tiny.loaded.tokenizer
    config = TrainConfig(train="x", out="y", max_length=96)
    example = encode_example(tok, tiny.loaded.pooling, "My card is late.", "What happened?", "late card", config)
    targets = [t for t in example.labels if t != IGNORE]
    if tiny.loaded.masked:
        slots = [i for i, t in enumerate(example.input_ids) if t == tok.mask_token_id]
        assert [example.labels[i] for i in slots] == targets and len(targets) == 3
        prompts = PromptTokenizer(tok, 96, tiny.loaded.pooling)
        assert example.input_ids == prompts.tokenize(["My card is late."], "What happened?")[0]
    else:
        prompt = PromptTokenizer(tok, 96, tiny.loaded.pooling).tokenize(["My card is late."], "What happened?")[0]
        assert example.input_ids[: len(prompt)] == prompt
        assert targets == example.input_ids[len(prompt):] and targets[-1] == tok.eos_token_id
        assert tok.decode(targets[:-1]).strip() == "late card"


def test_a_long_input_is_cut_on_the_left_and_the_answer_kept(tiny_dirs):
    model = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    config = TrainConfig(train="x", out="y", max_length=40)
    example = encode_example(model.loaded.tokenizer, LAST_TOKEN, "word " * 500, "What is it?", "a word", config)
    assert len(example.input_ids) <= 40 and model.loaded.tokenizer.decode(
        [t for t in example.labels if t != IGNORE][:-1]).strip() == "a word"


def test_training_lowers_the_answer_loss(tiny_dirs, rows_file, tmp_path):
    folder = train(_config(tiny_dirs, rows_file, tmp_path / "run", method="full", lr=1e-2))
    record = json.loads((folder / "inbedder_adapter.json").read_text())
    history = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["history"]
    validation = [h["validation_loss"] for h in history if "validation_loss" in h]
    assert record["steps"] == 12 and validation[-1] < 0.7 * validation[0] and record["method"] == "full"


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tiny_dirs, rows_file, tmp_path):
    train(_config(tiny_dirs, rows_file, tmp_path / "whole", max_steps=6))
    train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=3))
    with pytest.raises(TrainingError, match="--resume"):
        train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=6))
    train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=6), resume=True)
    whole = load_file(tmp_path / "whole" / "checkpoint" / "trainable.safetensors")
    parts = load_file(tmp_path / "parts" / "checkpoint" / "trainable.safetensors")
    written = {f.name for f in (tmp_path / "parts" / "checkpoint").iterdir()}
    assert written == {"trainable.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"}  # no pickle
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
    with pytest.raises(TrainingError, match="lr"):
        train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=8, lr=1e-3), resume=True)


def test_grouping_by_length_keeps_every_row_once_and_cuts_padding():
    rng = np.random.default_rng(1)
    lengths = np.where(rng.random(1003) < 0.2, rng.integers(150, 192, 1003), rng.integers(15, 40, 1003))
    plain, grouped = epoch_order(1003, 0, 0), epoch_order(1003, 0, 0, lengths, per_step=8)
    assert sorted(grouped.tolist()) == list(range(1003))  # the same rows, each once
    assert np.array_equal(plain, epoch_order(1003, 0, 0))  # the ungrouped order is unchanged (older runs)
    assert np.array_equal(grouped, epoch_order(1003, 0, 0, lengths, per_step=8))  # resumable: (seed, epoch) only
    assert not np.array_equal(grouped, epoch_order(1003, 0, 1, lengths, per_step=8))

    def padded(order):
        return sum(8 * lengths[order[i: i + 8]].max() for i in range(0, 1000, 8))

    assert padded(grouped) < 0.6 * padded(plain)
    config = TrainConfig(train="x", out="y", batch_size=4, grad_accum=2, group_by_length=True)
    steps = [np.concatenate(batches_for_step(s, 1003, config, lengths)) for s in range(126)]
    assert sorted(np.concatenate(steps).tolist()) == list(range(1003)) and len(steps[-1]) == 3  # the tail stays last
    with pytest.raises(TrainingError, match="lengths"):
        batches_for_step(0, 1003, config)
    assert "group_by_length" not in TrainConfig(train="x", out="y").identity()  # older checkpoints still resume
    assert config.identity()["group_by_length"] is True


def test_a_length_grouped_run_trains_and_resumes_exactly(tiny_dirs, rows_file, tmp_path):
    train(_config(tiny_dirs, rows_file, tmp_path / "whole", max_steps=4, batch_size=2, group_by_length=True))
    train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=2, batch_size=2, group_by_length=True))
    train(_config(tiny_dirs, rows_file, tmp_path / "parts", max_steps=4, batch_size=2, group_by_length=True),
          resume=True)
    whole = load_file(tmp_path / "whole" / "checkpoint" / "trainable.safetensors")
    parts = load_file(tmp_path / "parts" / "checkpoint" / "trainable.safetensors")
    written = {f.name for f in (tmp_path / "parts" / "checkpoint").iterdir()}
    assert written == {"trainable.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"}  # no pickle
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


def test_the_adapter_loads_into_the_engine_with_its_own_fingerprint(tiny_dirs, rows_file, tmp_path):
    folder = train(_config(tiny_dirs, rows_file, tmp_path / "run", epochs=1))
    plain = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    tuned = InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(folder))
    assert tuned.fingerprint != plain.fingerprint and tuned.model_name.endswith(" + adapter run")  # RUN/adapter
    shipped = {f.name for f in folder.iterdir()}
    assert shipped == {"adapter_config.json", "adapter_model.safetensors", "inbedder_adapter.json"}
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == plain.model_name
    a, b = plain.encode(["My card is late."], "What?"), tuned.encode(["My card is late."], "What?")
    assert not np.allclose(a, b)
    assert tuned.fingerprint == InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(folder)).fingerprint
    (folder / "README.md").write_text("how this adapter was made")  # documentation is not part of the model
    assert tuned.fingerprint == InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(folder)).fingerprint
    import shutil

    moved = shutil.copytree(folder, tmp_path / "my-adapter")  # a folder of its own keeps its own name
    assert InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(moved)).model_name.endswith(
        " + adapter my-adapter")
    with pytest.raises(ModelLoadError, match="other base weights"):
        InBedder.from_pretrained(str(tiny_dirs["opt"]), adapter=str(folder))


def test_plain_lora_merges_without_peft_exactly_as_peft_does(tiny_dirs, rows_file, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from inbedder.engine.loading import merge_plain_lora

    folder = train(_config(tiny_dirs, rows_file, tmp_path / "run", epochs=1, lr=5e-2))
    ours = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"])
    assert merge_plain_lora(ours, folder)
    theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]), folder)
    theirs = theirs.merge_and_unload()
    plain = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]).state_dict()
    merged, reference = ours.state_dict(), theirs.state_dict()
    assert merged.keys() == reference.keys()
    assert any(not torch.equal(merged[k], plain[k]) for k in merged)  # the adapter changed something
    for k in merged:
        torch.testing.assert_close(merged[k], reference[k], rtol=1e-5, atol=1e-6)
    dora = json.loads((folder / "adapter_config.json").read_text()) | {"use_dora": True}
    (folder / "adapter_config.json").write_text(json.dumps(dora))
    assert not merge_plain_lora(AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]), folder)  # peft's job


def test_top_layers_trains_only_the_top_and_masked_lms_train_too(tiny_dirs, rows_file, tmp_path):
    folder = train(_config(tiny_dirs, rows_file, tmp_path / "top", method="top_layers", top_layers=1, epochs=1))
    trained = load_file(folder / "trained_weights.safetensors")
    assert trained and all(".layers.1." in k for k in trained)
    tuned = InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(folder))
    assert tuned.encode(["hello"], "What?").shape == (1, 64)
    masked = train(_config(tiny_dirs, rows_file, tmp_path / "roberta", model=str(tiny_dirs["roberta"]), epochs=1))
    assert InBedder.from_pretrained(str(tiny_dirs["roberta"]), adapter=str(masked)).loaded.masked


def test_unusable_training_rows_are_named(tiny_dirs, tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"input": ["a text", "b"], "instruction": ["Q?", "Q?"], "answer": ["yes", "  "]}), bad)
    with pytest.raises(TrainingError, match="row 1: empty or non-text answer"):
        train(TrainConfig(model=str(tiny_dirs["llama"]), train=str(bad), out=str(tmp_path / "o")))
    pq.write_table(pa.table({"text": ["a"]}), bad)
    with pytest.raises(TrainingError, match="lacks column"):
        train(TrainConfig(model=str(tiny_dirs["llama"]), train=str(bad), out=str(tmp_path / "o")))


def test_training_data_keeps_evaluation_sets_out():
    from inbedder.training.data import EVALUATION_ONLY, DataOptions, build_training_rows, used_files

    assert not [f for f in used_files() for e in EVALUATION_ONLY if f.startswith(e)]
    if not (DATA / "qa").exists():
        pytest.skip("../shared/data not present")
    train_rows, validation = build_training_rows(DATA, DataOptions(per_qa_source=200, per_label_question=200))
    texts = set(train_rows.column("input").to_pylist())
    for file in ("clustering/massive_intent_scenario.small.parquet", "clustering/clinc_intent_domain.small.parquet",
                 "clustering/mtop_intent_domain.small.parquet", "clustering/few_rel_nat.small.parquet",
                 "clustering/few_nerd_nat.small.parquet"):
        assert not texts & set(pq.read_table(DATA / file).column("text").to_pylist()), file
    assert all(len(a.split()) <= 8 for a in train_rows.column("answer").to_pylist())
    assert {"squad", "banking77-intent", "banking77-area", "goemotions"} <= set(train_rows.column("source").to_pylist())
    assert not texts & set(validation.column("input").to_pylist())


def test_coarse_facet_rows_are_added_without_changing_the_others():
    from inbedder.training.data import EMOTION_GROUPS, SENTIMENTS, DataOptions, build_training_rows, hinted

    rng = np.random.default_rng(0)
    asks = [hinted("Which area", "card", ["card", "top up", "bank transfer", "currency exchange"], rng)
            for _ in range(40)]
    assert all(q.startswith("Which area, such as ") and q.endswith("?") for q in asks)
    assert 5 < sum("card" in q for q in asks) < 35  # the right answer is only sometimes among the examples
    with pytest.raises(ValueError, match="at least 4 labels"):
        hinted("Which area", "card", ["card", "top up", "bank transfer"], rng)
    if not (DATA / "qa").exists():
        pytest.skip("../shared/data not present")
    options = DataOptions(per_qa_source=100, per_label_question=100)
    plain, _ = build_training_rows(DATA, options)
    coarse, _ = build_training_rows(DATA, DataOptions(**{**options.__dict__, "coarse_facets": True}))
    key = lambda t: {(r["input"], r["instruction"], r["answer"]) for r in t.to_pylist()}  # noqa: E731
    added = coarse.filter(pa.compute.is_in(coarse.column("source"), pa.array(
        ["goemotions-group", "goemotions-sentiment", "banking77-area-hinted", "squad-topic"])))
    assert coarse.num_rows == plain.num_rows + added.num_rows == plain.num_rows + 400
    assert key(coarse) - key(added) == key(plain)
    by_source = {}
    for r in added.to_pylist():
        by_source.setdefault(r["source"], []).append(r)
    assert {r["answer"] for r in by_source["goemotions-group"]} <= set(EMOTION_GROUPS)
    assert {r["answer"] for r in by_source["goemotions-sentiment"]} <= set(SENTIMENTS)
    assert any("such as" in r["instruction"] for r in by_source["squad-topic"])
    assert all(len(r["answer"].split()) <= 8 for r in added.to_pylist())


def _keyword_embed(texts: list[str]) -> np.ndarray:
    """A stand-in for MiniLM: one axis per subject, set when the text names that subject's first keyword."""
    from inbedder.training.data import SUBJECTS

    keys = [description.split(",")[0].split()[-1] for description in SUBJECTS.values()]
    vectors = np.array([[float(k in t.lower()) for k in keys] + [0.1] for t in texts])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_article_subjects_picks_the_nearest_description():
    from inbedder.training.data import article_subjects

    got = article_subjects(["Beyonce", "Super_Bowl_50", "Nothing"],
                           ["She sold songs and music worldwide.", "The sports final of the league.", "xyz"],
                           _keyword_embed)
    assert got["Beyonce"] == "music" and got["Super_Bowl_50"] == "sports"
    assert set(got) == {"Beyonce", "Super_Bowl_50", "Nothing"}


def test_subject_facet_asks_broad_subjects_of_squad_questions_and_names_the_bank_in_area_questions():
    from inbedder.training.data import (BANK_NAMED_AREA_HINT_QUESTIONS, BANK_NAMED_AREA_QUESTIONS, SUBJECT_QUESTIONS,
                                        SUBJECTS, DataOptions, build_training_rows)

    if not (DATA / "qa").exists():
        pytest.skip("../shared/data not present")
    options = DataOptions(per_qa_source=50, per_label_question=100, coarse_facets=True, subject_facet=True,
                          subject_rows=200)
    rows, _ = build_training_rows(DATA, options, embed=_keyword_embed)
    by_source: dict[str, list[dict]] = {}
    for r in rows.to_pylist():
        by_source.setdefault(r["source"], []).append(r)
    subject = by_source["squad-question-subject"]
    questions = set(pq.read_table(DATA / "qa/squad_v11_train.parquet", columns=["question"]).column(0).to_pylist())
    assert len(subject) == 200 and {r["input"] for r in subject} <= {q.strip() for q in questions}
    assert {r["answer"] for r in subject} <= set(SUBJECTS) and len({r["answer"] for r in subject}) > 3
    assert all(r["instruction"].split(",")[0].rstrip("?") in SUBJECT_QUESTIONS for r in subject)
    assert {r["instruction"] for r in by_source["banking77-area"]} <= set(BANK_NAMED_AREA_QUESTIONS)
    assert {r["instruction"].split(",")[0].rstrip("?") for r in by_source["banking77-area-hinted"]} \
        <= set(BANK_NAMED_AREA_HINT_QUESTIONS)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "jobs").glob("train_*.yaml")),
                         ids=lambda p: p.name)
def test_the_shipped_training_configs_validate(path):
    import yaml

    config = TrainConfig(**yaml.safe_load(path.read_text()))
    assert config.model is None and config.method == "lora"  # both start from the zero-shot base


def test_request_facets_ask_each_text_twice_and_keep_held_out_domains_out():
    from inbedder.evaluation.harness import HELD_OUT_DOMAINS
    from inbedder.training.data import SGD_DOMAIN_ANSWERS, DataOptions, build_training_rows, split_camel

    assert split_camel("SearchOnewayFlight") == "search oneway flight"
    if not (DATA / "sgd").exists():
        pytest.skip("../shared/data not present")
    options = DataOptions(per_qa_source=50, per_label_question=50, request_facets=True, per_request_source=600)
    train_rows, validation = build_training_rows(DATA, options)
    requests = [r for r in train_rows.to_pylist() if r["source"].split("-")[0] in ("sgd", "snips", "nlupp")]
    by_text: dict[str, dict[str, str]] = {}
    for r in requests:
        by_text.setdefault(r["input"], {})[r["source"].rsplit("-", 1)[1]] = r["answer"]
    assert len(by_text) > 900 and all(set(a) == {"area", "intent"} for a in by_text.values())
    assert sum(a["area"] != a["intent"] for a in by_text.values()) / len(by_text) > 0.95
    sgd = pq.read_table(DATA / "sgd/sgd_intent_turns.parquet").to_pylist()
    allowed = {r["text"].strip() for r in sgd if r["split"] == "train" and r["domain"] not in HELD_OUT_DOMAINS}
    assert {r["input"] for r in requests if r["source"].startswith("sgd")} <= allowed
    held_answers = {a for d in HELD_OUT_DOMAINS for a in SGD_DOMAIN_ANSWERS[d]}
    assert not {r["answer"] for r in requests} & held_answers
    assert not any(a in r["instruction"] for r in requests for a in ("alarms", "housing", "ride sharing", "trains"))
    sgd_validation = [r for r in validation.to_pylist() if r["source"].startswith("sgd")]
    assert sgd_validation and {r["input"] for r in sgd_validation} <= {r["text"].strip() for r in sgd
                                                                       if r["split"] == "dev"}
    assert all(len(r["answer"].split()) <= 8 for r in requests)


def test_bf16_on_a_cpu_without_it_trains_in_fp32_exactly_as_fp32_does(tiny_dirs, rows_file, tmp_path, monkeypatch,
                                                                        caplog):
    from inbedder.engine import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    with caplog.at_level("INFO", logger="inbedder"):
        train(_config(tiny_dirs, rows_file, tmp_path / "bf16", max_steps=2, bf16=True))
    said = [r.getMessage() for r in caplog.records]
    train(_config(tiny_dirs, rows_file, tmp_path / "fp32", max_steps=2))
    assert any("no native bf16" in m and "fp32" in m for m in said)
    a = load_file(tmp_path / "bf16" / "checkpoint" / "trainable.safetensors")
    b = load_file(tmp_path / "fp32" / "checkpoint" / "trainable.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_answer_loss_equals_the_models_own_loss_on_a_ragged_batch(tiny_dirs):
    from inbedder.training.trainer import answer_loss, collate, prepare_model

    model = InBedder.from_pretrained(str(tiny_dirs["llama"])).loaded
    config = TrainConfig(model=str(tiny_dirs["llama"]), train="unused", out="unused", max_length=64)
    examples = [encode_example(model.tokenizer, LAST_TOKEN, text, question, answer, config)
                for text, question, answer in ROWS[:4] + [("short", "What?", "a much longer answer than usual")]]
    batch = collate(examples, int(model.tokenizer.pad_token_id))
    net = prepare_model(model.model, config, LAST_TOKEN)
    torch.manual_seed(0)
    expected = net(**batch).loss
    got = answer_loss(net, batch, False, LAST_TOKEN)
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
    got.backward()  # gradients flow through the kept positions only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters() if p.requires_grad)


GROUPS = ["bank-intent:card", "bank-intent:refund", "feel:joy", "feel:anger"] * 4


@pytest.fixture()
def grouped_rows_file(tmp_path):
    path = tmp_path / "grouped.parquet"
    pq.write_table(pa.table({"input": [f"{r[0]} ({i})" for i, r in enumerate(ROWS)],
                             "instruction": [r[1] for r in ROWS], "answer": [r[2] for r in ROWS],
                             "group": GROUPS[:-2] + [None, None]}), path)
    return path


def test_the_states_trained_on_are_the_engines_vectors(tiny_dirs):
    from inbedder.training.trainer import answer_loss_and_states, collate

    engine = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    config = TrainConfig(model=str(tiny_dirs["llama"]), train="unused", out="unused", max_length=64)
    texts = [r[0] for r in ROWS[:2]]
    examples = [encode_example(engine.loaded.tokenizer, LAST_TOKEN, t, "What does the customer want?", a, config)
                for t, a in zip(texts, ["card delivery", "a refund of the second charge"], strict=True)]
    batch = collate(examples, int(engine.loaded.tokenizer.pad_token_id))
    with torch.no_grad():
        _, states = answer_loss_and_states(engine.loaded.model, batch, False, LAST_TOKEN)
    expected = engine.encode(texts, "What does the customer want?")
    got = states.numpy()
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(cos > 0.9999), cos


def test_contrastive_loss_is_low_when_groups_cluster_and_ignores_rows_without_a_partner():
    from inbedder.training.trainer import contrastive_loss

    apart = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    groups = ["a", "a", "b", "b", "c"]
    mixed = apart[[0, 2, 1, 3, 4]]
    assert contrastive_loss(apart, groups, 0.1) < 0.1 < contrastive_loss(mixed, groups, 0.1)
    assert float(contrastive_loss(apart, ["a", "b", "c", None, None], 0.1)) == 0.0


def test_contrastive_steps_pair_each_labelled_row_with_its_group_within_one_question():
    from inbedder.training.trainer import paired_steps

    groups = tuple(GROUPS[:-2] + [None, None])
    steps = paired_steps(groups, 0, 0, 4)
    anchors = [int(s[0]) for s in steps if groups[int(s[0])] is not None] + \
              [int(i) for s in steps for i in s[2:3] if groups[int(s[0])] is not None]
    labelled = [s for s in steps if groups[int(s[0])] is not None]
    for step in labelled:
        kinds = {groups[int(i)].split(":")[0] for i in step}
        assert len(kinds) == 1  # one question per step: its other labels are the negatives
        for anchor, partner in zip(step[::2], step[1::2], strict=True):
            assert anchor != partner and groups[int(anchor)] == groups[int(partner)]
    assert sorted(anchors) == [i for i, g in enumerate(groups) if g is not None]  # each labelled row anchors once
    assert sorted(int(i) for s in steps if groups[int(s[0])] is None for i in s) == [14, 15]
    assert [s.tolist() for s in paired_steps(groups, 0, 0, 4)] == [s.tolist() for s in steps]  # (seed, epoch)


def test_coarse_merge_steps_hold_two_areas_each_spread_over_its_intents():
    from pydantic import ValidationError

    from inbedder.training.trainer import TrainConfig, paired_steps, row_relatives, step_temperature

    # 48 requests in 3 areas of 4 intents each, every one asked under both questions
    texts, groups = [], []
    for n in range(48):
        area = ["travel", "music", "bank"][n % 3]
        texts += [f"request {n}", f"request {n}"]
        groups += [f"req-area:{area}", f"req-intent:{area}-{(n // 3) % 4}"]
    rows = pa.table({"input": texts, "group": groups})
    groups = tuple(groups)
    relatives = row_relatives(rows, groups)
    steps = paired_steps(groups, 0, 0, 8, relatives, merge=True)
    area_steps = [s for s in steps if groups[int(s[0])].startswith("req-area")]
    assert sorted(int(i) for s in area_steps for i in s) == list(range(0, 96, 2))  # every area row once
    for step in area_steps:
        areas = [groups[int(i)] for i in step]
        assert len(step) == 8 and len(set(areas)) == 2 and areas.count(areas[0]) == 4
        for area in set(areas):  # each half holds its area's four intents
            assert len({relatives[int(i)][1] for i in step if groups[int(i)] == area}) == 4
    intent_steps = [s for s in steps if groups[int(s[0])].startswith("req-intent")]
    assert len(intent_steps) == len(steps) - len(area_steps) == 12  # the fine question keeps its hard steps
    assert all(len({relatives[int(i)][0] for i in s}) == 1 for s in intent_steps)
    assert [s.tolist() for s in paired_steps(groups, 0, 0, 8, relatives, merge=True)] == [s.tolist() for s in steps]

    config = TrainConfig(train="x", out="y", contrastive_weight=1.0, contrastive_hard_pairs=True)
    assert "contrastive_coarse_merge" not in config.identity()  # runs from before the option still resume
    merged = TrainConfig(train="x", out="y", contrastive_weight=1.0, contrastive_hard_pairs=True,
                         contrastive_coarse_merge=True)
    assert merged.identity()["contrastive_coarse_merge"] is True
    with pytest.raises(ValidationError, match="contrastive_coarse_merge needs"):
        TrainConfig(train="x", out="y", contrastive_weight=1.0, contrastive_coarse_merge=True)

    # a coarse question's steps may have their own temperature; the fine question's keep the common one
    assert "contrastive_coarse_temperature" not in merged.identity()
    assert {step_temperature(merged, s, relatives) for s in steps} == {0.1}
    colder = merged.model_copy(update={"contrastive_coarse_temperature": 0.03})
    assert colder.identity()["contrastive_coarse_temperature"] == 0.03
    assert {step_temperature(colder, s, relatives) for s in area_steps} == {0.03}
    assert {step_temperature(colder, s, relatives) for s in intent_steps} == {0.1}
    with pytest.raises(ValidationError, match="contrastive_coarse_temperature needs"):
        TrainConfig(train="x", out="y", contrastive_weight=1.0, contrastive_hard_pairs=True,
                    contrastive_coarse_temperature=0.03)


def test_hard_pairs_put_a_domains_intents_in_one_step_and_pair_an_area_across_its_intents():
    from inbedder.training.trainer import paired_steps, row_relatives

    # 24 requests in 2 areas of 2 intents each, every one asked under both questions
    intents = {"travel": ["book-flight", "find-hotel"], "music": ["play-song", "add-playlist"]}
    texts, groups = [], []
    for n in range(24):
        area = ["travel", "music"][n % 2]
        intent = intents[area][(n // 2) % 2]
        texts += [f"request {n}", f"request {n}"]
        groups += [f"req-area:{area}", f"req-intent:{intent}"]
    rows = pa.table({"input": texts + ["a question"], "group": groups + [None]})
    groups = tuple(groups + [None])
    relatives = row_relatives(rows, groups)
    assert relatives[0] == (None, "req-intent:book-flight") and relatives[1] == ("req-area:travel", None)
    assert relatives[-1] == (None, None)
    steps = paired_steps(groups, 0, 0, 4, relatives)
    intent_steps = [s for s in steps if groups[int(s[0])] and groups[int(s[0])].startswith("req-intent")]
    area_steps = [s for s in steps if groups[int(s[0])] and groups[int(s[0])].startswith("req-area")]
    assert {relatives[int(i)][0] for s in intent_steps for i in s[::2]} == {"req-area:travel", "req-area:music"}
    for step in intent_steps:  # anchors of one area: its other intent is the negative
        assert len({relatives[int(i)][0] for i in step}) == 1
    for step in area_steps:  # the partner asks for another thing in the same area
        for anchor, partner in zip(step[::2], step[1::2], strict=True):
            assert groups[int(anchor)] == groups[int(partner)]
            assert relatives[int(anchor)][1] != relatives[int(partner)][1]
    anchors = sorted(int(i) for s in intent_steps + area_steps for i in s[::2])
    assert anchors == list(range(48))  # every labelled row anchors once
    plain = paired_steps(groups, 0, 0, 4)
    assert any(len({relatives[int(i)][0] for i in s}) > 1 for s in plain
               if groups[int(s[0])] and groups[int(s[0])].startswith("req-intent"))  # the option is what does it


def test_a_contrastive_run_pulls_a_groups_vectors_together_and_resumes_exactly(tiny_dirs, grouped_rows_file,
                                                                                 tmp_path):
    config = _config(tiny_dirs, grouped_rows_file, tmp_path / "whole", contrastive_weight=1.0, epochs=4,
                     validation=None)
    folder = train(config)
    history = json.loads((tmp_path / "whole" / "checkpoint" / "state.json").read_text())["history"]
    assert "contrastive_loss" in history[0] and config.identity()["contrastive_weight"] == 1.0
    tuned = InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(folder))
    plain = InBedder.from_pretrained(str(tiny_dirs["llama"]))
    texts = [r[0] for r in ROWS[:2]] + ["My new card still has not come.", "I paid twice for my lunch."]

    def separation(model):  # same label vs other label, under the question
        v = model.encode(texts, "What does the customer want?")
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        sims = v @ v.T
        return (sims[0, 2] + sims[1, 3]) / 2 - (sims[0, 1] + sims[2, 3]) / 2

    assert separation(tuned) > separation(plain)
    train(_config(tiny_dirs, grouped_rows_file, tmp_path / "parts", contrastive_weight=1.0, epochs=4,
                  validation=None, max_steps=3))
    train(config.model_copy(update={"out": str(tmp_path / "parts")}), resume=True)
    whole = load_file(tmp_path / "whole" / "checkpoint" / "trainable.safetensors")
    parts = load_file(tmp_path / "parts" / "checkpoint" / "trainable.safetensors")
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


def test_a_run_starts_from_an_earlier_runs_weights_and_refuses_ungrouped_data(tiny_dirs, rows_file, tmp_path):
    train(_config(tiny_dirs, rows_file, tmp_path / "first", max_steps=2))
    first = load_file(tmp_path / "first" / "checkpoint" / "trainable.safetensors")
    train(_config(tiny_dirs, rows_file, tmp_path / "second", max_steps=1, lr=1e-12, init_from=str(tmp_path / "first")))
    second = load_file(tmp_path / "second" / "checkpoint" / "trainable.safetensors")
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)
    train(_config(tiny_dirs, rows_file, tmp_path / "from-adapter", max_steps=1, lr=1e-12,
                  init_from=str(tmp_path / "first" / "adapter")))
    from_adapter = load_file(tmp_path / "from-adapter" / "checkpoint" / "trainable.safetensors")
    assert all(torch.allclose(first[k], from_adapter[k], atol=1e-6) for k in first)
    with pytest.raises(TrainingError, match="set lora_r: 4 and lora_alpha"):
        train(_config(tiny_dirs, rows_file, tmp_path / "other-rank", lora_r=2,
                      init_from=str(tmp_path / "first" / "adapter")))
    with pytest.raises(TrainingError, match="group"):
        train(_config(tiny_dirs, rows_file, tmp_path / "third", contrastive_weight=0.5))
    with pytest.raises(TrainingError, match="another method"):
        train(_config(tiny_dirs, rows_file, tmp_path / "fourth", method="top_layers",
                      init_from=str(tmp_path / "first")))


def test_a_soup_of_two_adapters_merges_to_the_mean_of_their_updates(tiny_dirs, rows_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from inbedder.engine.loading import merge_plain_lora
    from inbedder.training import average_adapters

    first = train(_config(tiny_dirs, rows_file, tmp_path / "first", epochs=1, lr=5e-2))
    second = train(_config(tiny_dirs, rows_file, tmp_path / "second", epochs=1, lr=5e-2, seed=1, lora_r=2))
    soup = average_adapters([first, second], [0.25, 0.75], tmp_path / "soup")

    def merged(folder):
        model = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"])
        assert merge_plain_lora(model, folder)
        return model.state_dict()

    plain = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]).state_dict()
    a, b, blended = merged(first), merged(second), merged(soup)
    changed = [k for k in plain if not torch.equal(a[k], plain[k])]
    assert changed
    for k in plain:
        expected = plain[k] + 0.25 * (a[k] - plain[k]) + 0.75 * (b[k] - plain[k])
        torch.testing.assert_close(blended[k], expected, rtol=1e-5, atol=1e-6)
    record = json.loads((soup / "inbedder_adapter.json").read_text())
    assert [s["weight"] for s in record["soup"]] == [0.25, 0.75] and record["method"] == "lora-soup"
    assert json.loads((soup / "adapter_config.json").read_text())["r"] == 4 + 2
    tuned = InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(soup))
    assert tuned.model_name.endswith(" + adapter soup")
    with pytest.raises(TrainingError, match="sum to 1"):
        average_adapters([first, second], [0.5, 0.6], tmp_path / "bad")
    with pytest.raises(TrainingError, match="different base weights"):
        other = train(_config(tiny_dirs, rows_file, tmp_path / "opt", model=str(tiny_dirs["opt"]), epochs=1))
        average_adapters([first, other], [0.5, 0.5], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    from click.testing import CliRunner

    from inbedder.cli import main

    result = CliRunner().invoke(main, ["soup", "--adapter", str(first), "--adapter", str(second),
                                       "--out", str(tmp_path / "even")])
    assert result.exit_code == 0 and [s["weight"] for s in json.loads(
        (tmp_path / "even" / "inbedder_adapter.json").read_text())["soup"]] == [0.5, 0.5]
    result = CliRunner().invoke(main, ["soup", "--adapter", str(first), "--out", str(tmp_path / "one")])
    lines = result.output.strip().splitlines()  # the common contract: one line, the problem, the log file
    assert result.exit_code == 2 and len(lines) == 1 and "give two adapters or more to blend" in lines[0]


def test_an_adapter_is_stored_smaller_with_the_same_update(tiny_dirs, rows_file, tmp_path):
    from click.testing import CliRunner
    from transformers import AutoModelForCausalLM

    from inbedder.cli import main
    from inbedder.engine.loading import merge_plain_lora
    from inbedder.training.soup import average_adapters, compact_adapter

    first = train(_config(tiny_dirs, rows_file, tmp_path / "first", epochs=1, lr=5e-2))
    second = train(_config(tiny_dirs, rows_file, tmp_path / "second", epochs=1, lr=5e-2, seed=1))
    soup = average_adapters([first, second], [0.5, 0.5], tmp_path / "soup")  # rank 4 + 4

    def update(folder):
        model = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"])
        plain = {k: v.clone() for k, v in model.state_dict().items()}
        assert merge_plain_lora(model, folder)
        return {k: v - plain[k] for k, v in model.state_dict().items() if not torch.equal(v, plain[k])}

    exact = update(soup)
    kept = compact_adapter(soup, tmp_path / "half", dtype="float16")  # same rank, half the bytes
    assert kept["energy_kept_min"] > 0.999999 and kept["rank"] == 8
    assert (tmp_path / "half" / "adapter_model.safetensors").stat().st_size < \
        0.55 * (soup / "adapter_model.safetensors").stat().st_size
    for name, delta in update(tmp_path / "half").items():
        torch.testing.assert_close(delta, exact[name], rtol=0, atol=2e-3 * float(exact[name].abs().max()))
    kept = compact_adapter(soup, tmp_path / "low", rank=2)
    assert 0.3 < kept["energy_kept_min"] < 1.0
    low = update(tmp_path / "low")
    for name, delta in low.items():  # the best rank-2 approximation: what it leaves out is what SVD says
        residual = float(((delta - exact[name]) ** 2).sum()) / float((exact[name] ** 2).sum())
        assert residual <= 1 - kept["energy_kept_min"] + 1e-4
    record = json.loads((tmp_path / "low" / "inbedder_adapter.json").read_text())
    assert record["stored"]["from_rank"] == 8 and record["method"] == "lora-soup"
    result = CliRunner().invoke(main, ["soup", "--adapter", str(soup), "--rank", "9", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "between 1 and the adapter's own (8)" in result.output
    result = CliRunner().invoke(main, ["soup", "--adapter", str(first), "--adapter", str(second), "--rank", "4",
                                       "--dtype", "bfloat16", "--out", str(tmp_path / "both")])
    assert result.exit_code == 0 and "stored at rank 4 (was 8) in bfloat16" in result.output


def test_breadth_rows_come_only_from_sets_licensed_for_training():
    from inbedder.training.data import (EVALUATION_ONLY, HATE_ANSWERS, POLITENESS_ANSWERS, TEXT_KINDS,
                                        TRAINABLE_FACET_SETS, DataOptions, breadth_rows, used_facet_files)

    assert all(any(f.startswith(e) for e in EVALUATION_ONLY) for f in used_facet_files())  # so scored apart
    assert set(TRAINABLE_FACET_SETS) == {"hate_offensive_tweets", "politeness_requests"}  # MIT, Apache-2.0
    if not (DATA / "facets").exists():
        pytest.skip("../shared/data not present")
    rows = breadth_rows(DATA, DataOptions(per_breadth_question=40), np.random.default_rng(0))
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    assert {k: len(v) for k, v in by_source.items()} == {"politeness": 40, "politeness-platform": 40,
                                                          "politeness-community": 40, "hate-offensive": 40,
                                                          "text-kind": 70}
    assert {r["answer"] for r in by_source["politeness"]} <= set(POLITENESS_ANSWERS.values())
    assert {r["answer"] for r in by_source["hate-offensive"]} <= set(HATE_ANSWERS.values())
    assert {r["answer"] for r in by_source["text-kind"]} <= set(TEXT_KINDS)
    assert not any(r["answer"].startswith("Stack Exchange: ") for r in by_source["politeness-community"])
    held_out = set()
    for name in ("tweeteval_offensive", "tweeteval_hate", "headline_sarcasm", "ag_news_topic"):
        held_out |= set(pq.read_table(DATA / f"facets/{name}.parquet").column("text").to_pylist())
    assert not held_out & {r["input"] for r in rows}
    assert all(r["group"] == f"{r['source']}:{r['answer']}" for r in rows)


@pytest.mark.parametrize("question, answer, kind", [
    ("Who wrote the novel?", "Tolstoy", "a person"),
    ("In 1990, whose team won the cup?", "Ajax", "a person"),
    ("Where was Yeltsin during the coup?", "Crimea", "a place"),
    ("Which region of America was the novel set in?", "the South", "a place"),
    ("When did the torch visit New Delhi?", "17 April", "a date or time"),
    ("In what year did the earthquake occur?", "2008", "a date or time"),
    ("What happened on the day?", "March 3, 1921", "a date or time"),
    ("How many people were killed?", "69,197", "a number"),
    ("What was the total?", "about 4.5 million", "a number"),
    ("Why did the king leave?", "he was ill", "a reason"),
    ("How did the army cross the river?", "on rafts", "a way or method"),
    ("What does PPE stand for?", "personal protective equipment", "the meaning of an abbreviation"),
    ("is house tax and property tax the same?", "yes", "yes or no"),
    ("What is a quark?", "an elementary particle", "a definition"),
    ("What can damage buildings?", "earthquakes", "a thing or name"),
    ("How cold was the winter?", "bitter", None),           # "how" + an adjective not of amount: unclear
    ("Name the author.", "Tolstoy", None),                  # no wh-word
    ("What may have caused the noise?", "Someone was running from the cops", None),  # a long free answer
])
def test_answer_kind_reads_the_wording_then_the_answers_form(question, answer, kind):
    from inbedder.training.data import answer_kind

    assert answer_kind(question, answer) == kind


def test_question_kind_rows_ask_qa_questions_evenly_per_kind_and_never_read_the_held_out_set():
    from inbedder.training.data import ANSWER_KIND_QUESTIONS, DataOptions, question_kind_rows, used_files
    from inbedder.evaluation.facets import FACET_SETS

    if not (DATA / "facets").exists():
        pytest.skip("../shared/data not present")
    rows = question_kind_rows(DATA, DataOptions(per_question_kind=30), np.random.default_rng(0))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["answer"]] = counts.get(r["answer"], 0) + 1
    assert set(counts.values()) == {30} and len(counts) == 10
    held_out_question = FACET_SETS["trec_question_type"].facets["question_type"].question
    assert all(r["instruction"].split(",")[0].rstrip("?") in ANSWER_KIND_QUESTIONS for r in rows)
    assert held_out_question.rstrip("?") not in ANSWER_KIND_QUESTIONS  # the suite's own phrasing stays unseen
    trec = set(pq.read_table(DATA / FACET_SETS["trec_question_type"].file).column("text").to_pylist())
    qa = set()
    for file in used_files():
        if file.startswith("qa/"):
            qa |= set(pq.read_table(DATA / file, columns=["question"]).column("question").to_pylist())
    assert {r["input"] for r in rows} <= qa and not trec & {r["input"] for r in rows}
    everything = question_kind_rows(DATA, DataOptions(per_question_kind=10**6), np.random.default_rng(0))
    assert "What does IBM stand for?" in qa and not trec & {r["input"] for r in everything}  # in both: left out
    assert all(r["group"] == f"question-kind:{r['answer']}" for r in rows)
