"""The breadth suite scores what it should: a model that answers each question wins every facet, one that reads
only the content wins none, and the breadth score counts held-out facets only."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from inbedder.evaluation.facets import (FACET_SETS, GENERIC, MINILM_Q, breadth, breadth_markdown, breadth_table,
                                        facet_scores, facets_eval, questions_of)
from inbedder.evaluation.harness import EvalOptions, evaluate, write_results

from .conftest import DATA

SETS = ("airline_tweets", "tweeteval_irony", "politeness_requests")


class QuestionOracle:
    """Vectors that encode the facet a question asks about (noise for the generic question), or with
    `content_only` always the first facet of the set, whatever was asked."""

    def __init__(self, name: str, labels: dict[str, dict[str, np.ndarray]], content_only: bool = False, seed=0):
        self.name, self.labels, self.content_only = name, labels, content_only
        self.rng = np.random.default_rng(seed)

    def encode_many(self, texts, questions):
        spec = next(s for s in FACET_SETS.values() if set(questions) == set(questions_of(s)))
        labels = self.labels[spec.file]
        rows = [int(t.rsplit(" ", 1)[1]) for t in texts]  # "NAME text I": the sampled rows' labels
        out = {}
        for asked in questions:
            facet = next(iter(spec.facets)) if self.content_only else asked
            ids = labels.get(facet)
            base = np.zeros((len(texts), 8)) if ids is None else np.eye(8)[ids[rows] % 8] * 10
            out[asked] = (base + self.rng.normal(size=(len(texts), 8))).astype(np.float32)
        return out


@pytest.fixture
def facet_data(tmp_path):
    """A miniature facets/ folder: three of the sets, 120 rows each, random labels."""
    rng = np.random.default_rng(3)
    (tmp_path / "facets").mkdir()
    labels = {}
    for name in SETS:
        spec = FACET_SETS[name]
        ids = {facet: rng.integers(0, 3, 120) for facet in spec.facets}
        columns = {"text": [f"{name} text {i}" for i in range(120)]}
        columns |= {f.column: [f"label {x}" for x in ids[facet]] for facet, f in spec.facets.items()}
        pq.write_table(pa.table(columns), tmp_path / spec.file)
        labels[spec.file] = ids
    return tmp_path, labels


def test_a_question_following_model_wins_every_facet_and_a_content_reader_none(facet_data):
    data, labels = facet_data
    follows = facets_eval(QuestionOracle("follows", labels), data, SETS, rows=None, seeds=2)
    reader = facets_eval(QuestionOracle("reader", labels, content_only=True), data, SETS, rows=None, seeds=2)
    assert follows["airline_tweets"]["rows"] == 120 and follows["airline_tweets"]["kmeans_seeds"] == 2
    assert set(follows["tweeteval_irony"]["questions"]) == {"irony", GENERIC}  # one facet: the generic question too
    assert all(m > 0.5 for r in follows.values() for m in r["diagonal_margin"].values())
    # the content reader groups the first facet under every question: margin 0 there, negative elsewhere
    assert abs(reader["airline_tweets"]["diagonal_margin"]["airline"]) < 0.05
    assert reader["airline_tweets"]["diagonal_margin"]["sentiment"] < 0.05
    assert len(facet_scores(follows)) == 3 + 1 + 3


def test_breadth_scores_held_out_facets_apart_from_the_sets_training_saw(facet_data):
    data, labels = facet_data
    follows = facets_eval(QuestionOracle("follows", labels), data, SETS, rows=None,
                          trained_on=("politeness_requests",))
    reader = facets_eval(QuestionOracle("reader", labels, content_only=True), data, SETS, rows=None,
                         trained_on=("politeness_requests",))
    held = breadth(facet_scores(follows), facet_scores(reader))
    assert held.facets == 4 and held.margins_at_least == 4 and held.reaches_minilm_q == 4 and held.mean_margin > 0.5
    seen = breadth(facet_scores(follows), trained_on=True)
    assert seen.facets == 3 and seen.reaches_minilm_q is None
    table = breadth_table({"follows": {"facets": follows}, MINILM_Q: {"facets": reader}})
    assert table["follows"]["held-out"].reaches_minilm_q == 4
    assert table[MINILM_Q]["held-out"].mean_margin < table["follows"]["held-out"].mean_margin
    md = breadth_markdown({"follows": {"facets": follows}, MINILM_Q: {"facets": reader}})
    assert "| follows | +0." in md and "4 of 4" in md and "politeness (politeness_requests) *" in md
    assert "**attitude**" in md and "**judgement**" in md


def test_evaluate_writes_the_breadth_table_and_plot(facet_data, tmp_path):
    data, labels = facet_data
    options = EvalOptions(tests=("facets",), facet_sets=SETS, facet_rows=100)
    results = {"follows": evaluate(QuestionOracle("follows", labels), data, options)}
    assert results["follows"]["facets"]["airline_tweets"]["rows"] == 100
    json_path, md, _ = write_results(results, tmp_path / "out" / "eval.json")
    assert json.loads(json_path.read_text())["follows"]["facets"]["tweeteval_irony"]["questions"]["irony"] == \
        "Is the tweet meant ironically?"
    breadth_png = json_path.with_name("eval_breadth.png")
    assert "Breadth" in md.read_text() and breadth_png.read_bytes()[:4] == b"\x89PNG"


def test_cli_eval_facets_names_a_missing_set_and_an_unknown_trained_on_or_facet_set(tmp_path):
    from inbedder.cli import main

    (tmp_path / "clustering").mkdir()
    missing = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path), "--test", "facets"])
    assert missing.exit_code != 0 and "facets/multidomain_sentiment.parquet" in missing.output
    unknown = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path), "--test", "facets",
                                        "--trained-on", "imdb"])
    assert unknown.exit_code != 0 and "--trained-on imdb: not a facet set" in unknown.output
    one = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path), "--test", "facets", "--facet-set",
                                    "trec_question_type", "--no-baselines"])
    assert one.exit_code != 0 and "facets/trec_question_type.parquet" in one.output  # only that set is needed
    assert "multidomain_sentiment" not in one.output
    unknown = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path), "--test", "facets",
                                        "--facet-set", "imdb"])
    assert unknown.exit_code != 0 and "--facet-set imdb: not a facet set" in unknown.output


def test_facet_sets_match_the_shipped_data():
    if not (DATA / "facets").exists():
        pytest.skip("../shared/data not present")
    for name, spec in FACET_SETS.items():
        columns = pq.read_schema(DATA / spec.file).names
        assert "text" in columns and all(f.column in columns for f in spec.facets.values()), name
    assert sum(len(s.facets) for s in FACET_SETS.values()) == 23


def _facet_result(own: dict[str, float], margin: dict[str, float], family: str = "attitude") -> dict:
    """One model's facet results for single-facet sets named after their facet (the generic question beside)."""
    return {"facets": {name: {"v_measure": {name: {name: own[name]}, GENERIC: {name: own[name] - margin[name]}},
                              "diagonal_margin": {name: margin[name]}, "trained_on": False,
                              "families": {name: family}} for name in own}}


def test_breadth_acceptance_checks_the_issues_four_criteria():
    from inbedder.evaluation.facets import breadth_acceptance, breadth_acceptance_markdown

    facets = ("a", "b", "c")
    results = {
        "new": _facet_result({"a": 0.40, "b": 0.30, "c": 0.02}, {"a": 0.20, "b": 0.10, "c": 0.00}),
        "v1": _facet_result({"a": 0.42, "b": 0.20, "c": 0.01}, {"a": 0.10, "b": 0.05, "c": 0.00}),
        "v2": _facet_result({"a": 0.30, "b": 0.25, "c": 0.00}, {"a": 0.05, "b": 0.08, "c": 0.00}),
        MINILM_Q: _facet_result({"a": 0.10, "b": 0.10, "c": 0.04}, dict.fromkeys(facets, 0.0)),  # c: below 0.05
    }
    checks = breadth_acceptance(results, "new", ["v1", "v2"])
    assert [c.passed for c in checks] == [True, True, True, True, True]
    assert checks[0].measured == "+0.100 vs +0.050" and checks[4].measured == "2 of 2 (needs 2)"
    # a facet 0.05 below the better reference fails; so does a non-content facet under MiniLM + question
    results["new"] = _facet_result({"a": 0.37, "b": 0.30, "c": 0.06}, {"a": 0.20, "b": 0.10, "c": 0.04})
    results[MINILM_Q] = _facet_result({"a": 0.10, "b": 0.10, "c": 0.08}, dict.fromkeys(facets, 0.0))
    failed = {c.name: c for c in breadth_acceptance(results, "new", ["v1", "v2"]) if not c.passed}
    assert list(failed) == ["no facet more than 0.03 below the better reference",
                            "own >= MiniLM + question where it reaches 0.05 (not content)"]
    assert "a (a) 0.370 < 0.420" in failed["no facet more than 0.03 below the better reference"].measured
    assert "3 of 5 checks pass" in breadth_acceptance_markdown(breadth_acceptance(results, "new", ["v1", "v2"]),
                                                               "new", ["v1", "v2"])


def test_a_facets_only_run_against_an_earlier_one_prints_no_empty_harness_acceptance(facet_data):
    from inbedder.evaluation.compare import run_evaluation

    data, labels = facet_data
    options = EvalOptions(tests=("facets",), facet_sets=SETS, facet_rows=100)
    earlier = {"blind": evaluate(QuestionOracle("blind", labels, content_only=True), data, options)}
    results, checks_md = run_evaluation([QuestionOracle("follows", labels)], data, options, earlier)
    assert checks_md == "" and set(results) == {"follows", "blind"}  # the breadth checks are printed apart


@pytest.mark.skipif(not (DATA / "facets").is_dir(), reason="needs ../shared/data/facets")
def test_cli_eval_names_an_unknown_breadth_reference_before_it_embeds(monkeypatch, tiny_dirs):
    import inbedder.evaluation
    from inbedder.cli import main

    def no_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the reference was checked")

    monkeypatch.setattr(inbedder.evaluation, "run_evaluation", no_run)
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_dirs["llama"]), "--data-dir", str(DATA),
                                       "--test", "facets", "--no-baselines", "--breadth-reference", "v9"])
    assert result.exit_code == 2 and "--breadth-reference 'v9' names 0 models of this run" in result.output
