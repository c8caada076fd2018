"""The evaluation harness scores what it should: facet-aware vectors win, ignored questions don't."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from inbedder.evaluation.compare import acceptance, acceptance_markdown
from inbedder.evaluation.harness import (EvalOptions, InBedderUnderTest, clustering_eval, diagonal_margins, evaluate,
                                         facet_table, robustness_eval, stsb_eval, to_markdown, write_results)

from .conftest import DATA


class FacetOracle:
    """Vectors that encode whichever facet the question names (noise otherwise)."""

    name = "oracle"

    def __init__(self, labels: dict[str, np.ndarray], dim: int = 16, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.labels = labels
        self.centres = {f: self.rng.normal(size=(int(v.max()) + 1, dim)) * 10 for f, v in labels.items()}
        self.dim = dim

    def encode_many(self, texts, questions):
        out = {}
        for name, q in questions.items():
            facet = next((f for f in self.labels if f in q), None)
            base = self.centres[facet][self.labels[facet]] if facet else np.zeros((len(texts), self.dim))
            out[name] = (base + self.rng.normal(size=(len(texts), self.dim))).astype(np.float32)
        return out


def test_an_embedder_that_answers_the_question_wins_the_diagonal():
    rng = np.random.default_rng(0)
    topics, moods = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
    oracle = FacetOracle({"topic": topics, "mood": moods})
    table = facet_table(oracle, [f"t{i}" for i in range(200)],
                        {"topic": (topics.tolist(), "What is the topic?"),
                         "mood": (moods.tolist(), "What is the mood?")})
    assert table["topic"]["topic"] > 0.9 and table["mood"]["mood"] > 0.9
    assert table["topic"]["mood"] < 0.1 and table["mood"]["topic"] < 0.1
    assert all(m > 0.8 for m in diagonal_margins(table).values())


@pytest.fixture
def eval_data(tmp_path):
    """A miniature ../shared/data: one robustness set, the instruction file, STS-B."""
    rng = np.random.default_rng(1)
    (tmp_path / "clustering").mkdir()
    labels = rng.integers(0, 5, 150)
    pq.write_table(pa.table({"task": ["few_rel_nat"] * 150, "text": [f"sentence {i}" for i in range(150)],
                             "label": [f"relation {x}" for x in labels]}),
                   tmp_path / "clustering" / "few_rel_nat.small.parquet")
    groups = {"correct": "relation between the entities", "implicit": "relation, what links them",
              "incorrect": "summarize the paragraph"}
    task = {f"{g}_instructions": [f"{text} (paraphrase {i})" for i in range(10)] for g, text in groups.items()}
    (tmp_path / "inbedder_instructions").mkdir()
    (tmp_path / "inbedder_instructions" / "inbedder_task_instructions.json").write_text(
        json.dumps({"source": {}, "tasks": {"FewRelClustering": task}}))
    (tmp_path / "stsb").mkdir()
    scores = np.linspace(0, 5, 80)
    pq.write_table(pa.table({"sentence1": [f"a{i}" for i in range(80)], "sentence2": [f"b{i}" for i in range(80)],
                             "score": scores}), tmp_path / "stsb" / "sts-test.parquet")
    return tmp_path, labels, scores


def test_robustness_separates_correct_from_incorrect_instructions(eval_data):
    data, labels, _ = eval_data
    oracle = FacetOracle({"relation": labels})
    result = robustness_eval(oracle, data, ["fewrel"], rows=None, per_group=3)["fewrel"]
    assert result["rows"] == 150 and len(result["v_measure"]["correct"]) == 3
    assert result["mean"]["correct"] > 0.8 and result["mean"]["implicit"] > 0.8
    assert result["mean"]["incorrect"] < 0.2
    assert result["correct_minus_incorrect"] > 0.6


def test_stsb_spearman_follows_the_gold_score(eval_data):
    data, _, scores = eval_data

    class Graded:
        name = "graded"

        def encode_many(self, texts, questions):
            # pair i: the second sentence turns away from the first as the gold score falls
            angles = {**{f"a{i}": 0.0 for i in range(80)},
                      **{f"b{i}": (5 - s) / 5 * np.pi / 2 for i, s in enumerate(scores)}}
            v = np.array([[np.cos(angles[t]), np.sin(angles[t])] for t in texts], dtype=np.float32)
            return {n: v for n in questions}

    result = stsb_eval(Graded(), data)
    assert result["pairs"] == 80 and result["spearman"] > 0.99


def test_results_are_written_as_json_markdown_and_plot(eval_data, tmp_path):
    data, labels, _ = eval_data
    oracle = FacetOracle({"relation": labels})
    options = EvalOptions(tests=("robustness", "stsb"), robustness_sets=("fewrel",), robustness_rows=None,
                          per_group=2)
    results = {"oracle": evaluate(oracle, data, options)}
    json_path, md, png = write_results(results, tmp_path / "out" / "eval.json")
    assert json.loads(json_path.read_text())["oracle"]["robustness"]["fewrel"]["rows"] == 150
    assert "| oracle | fewrel (150) |" in md.read_text() and "STS-B" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_eval_runs_the_model_and_both_baselines(eval_data, tiny_dirs, tmp_path):
    from inbedder.cli import main

    data, _, _ = eval_data
    out = tmp_path / "r" / "eval.json"
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_dirs["llama"]), "--data-dir", str(data),
                                       "--test", "robustness", "--test", "stsb", "--robustness-set", "fewrel",
                                       "--per-group", "2",
                                       "--robustness-rows", "60", "--stsb-pairs", "40", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert len(saved) == 3 and {"all-MiniLM-L6-v2", "all-MiniLM-L6-v2 + question"} < set(saved)
    plain = saved["all-MiniLM-L6-v2"]["robustness"]["fewrel"]
    assert plain["std"]["correct"] == 0.0  # a plain embedder ignores the question: every paraphrase scores alike
    assert out.with_suffix(".png").exists() and "Robustness" in result.stdout


def test_cli_eval_without_data_dir_names_the_problem(tmp_path):
    from inbedder.cli import main

    result = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "clustering" in result.output


def test_every_test_on_real_data_with_a_tiny_model(tiny):
    if not (DATA / "clustering").exists():
        pytest.skip("../shared/data not present")
    options = EvalOptions(rows=80, robustness_rows=60, stsb_pairs=40, per_group=1, datasets=("massive",),
                          transfer_rows=60, facet_rows=40, facet_sets=("tweeteval_irony", "airline_tweets"))
    results = evaluate(InBedderUnderTest(tiny), DATA, options)
    assert set(results["facets"]) == {"tweeteval_irony", "airline_tweets"}
    assert results["facets"]["airline_tweets"]["rows"] == 40
    assert "Breadth" in to_markdown({"tiny": results})
    held = results["transfer"]["sgd-held-out"]
    assert held["rows"] == 60 and set(held["v_measure"]) == {"domain", "intent"}
    assert "Taxonomy transfer" in to_markdown({"tiny": results})
    table = results["clustering"]["massive"]["v_measure"]
    assert set(table) == {"intent", "scenario"} and all(0 <= v <= 1 for row in table.values() for v in row.values())
    assert set(results["robustness"]) == {"fewrel", "fewnerd"}
    assert -1 <= results["stsb"]["spearman"] <= 1
    assert "massive" in to_markdown({"tiny": results})
    assert clustering_eval(InBedderUnderTest(tiny), DATA, ["massive"], rows=80)["massive"]["rows"] == 80


def test_cli_eval_names_a_missing_data_file_before_loading_a_model(eval_data):
    from inbedder.cli import main

    data, _, _ = eval_data
    result = CliRunner().invoke(main, ["eval", "--model", "/nonexistent", "--data-dir", str(data),
                                       "--test", "robustness"])
    assert result.exit_code != 0 and "few_nerd_nat.small.parquet" in result.output


class QuestionBlind(FacetOracle):
    """Encodes one facet whatever the question asks: the zero-shot failure mode."""

    def encode_many(self, texts, questions):
        facet = next(iter(self.labels))
        return {n: (self.centres[facet][self.labels[facet]] + self.rng.normal(size=(len(texts), self.dim)))
                .astype(np.float32) for n in questions}


def _two_facet_results(embedder, topics, moods, robustness):
    table = facet_table(embedder, [f"t{i}" for i in range(len(topics))],
                        {"topic": (topics.tolist(), "What is the topic?"),
                         "mood": (moods.tolist(), "What is the mood?")})
    return {"clustering": {"toy": {"rows": len(topics), "v_measure": table,
                                   "diagonal_margin": diagonal_margins(table)}},
            "robustness": robustness}


def test_acceptance_passes_a_question_following_model_and_fails_a_blind_one(eval_data):
    data, labels, _ = eval_data
    rng = np.random.default_rng(3)
    topics, moods = rng.integers(0, 4, 150), rng.integers(0, 3, 150)
    facets = {"topic": topics, "mood": moods, "relation": labels}
    follows = _two_facet_results(FacetOracle(facets), topics, moods,
                                 robustness_eval(FacetOracle(facets), data, ["fewrel"], rows=None, per_group=3))
    style = rng.integers(0, 5, 150)  # what a question-blind model encodes instead: the writing style
    blind = _two_facet_results(QuestionBlind({"style": style}), topics, moods,
                               robustness_eval(QuestionBlind({"style": style}), data, ["fewrel"], rows=None,
                                               per_group=3))
    checks = acceptance(follows, blind)
    assert len(checks) == 5 and all(c.passed for c in checks), checks
    backwards = {c.name: c.passed for c in acceptance(blind, follows)}
    assert not backwards["toy mood: own question wins by >= 0.05"]
    assert not backwards["fewrel: correct instructions beat incorrect ones beyond their spread"]
    assert "| toy topic: own question wins by >= 0.05 | pass |" in acceptance_markdown(checks, "a", "b")
    smaller = {**blind, "clustering": {"toy": {**blind["clustering"]["toy"], "rows": 100}}}
    with pytest.raises(ValueError, match="toy: 150 rows here but 100"):
        acceptance(follows, smaller)
    averaged = {**follows, "clustering": {"toy": {**follows["clustering"]["toy"], "kmeans_seeds": 3}}}
    with pytest.raises(ValueError, match="toy: v-measure averaged over 3 k-means seed"):
        acceptance(averaged, blind)  # results without the field were scored on one seed


def test_v_measure_averages_over_kmeans_seeds():
    from inbedder.evaluation.harness import v_measure

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, 300)
    vectors = (rng.normal(size=(6, 8))[labels] * 1.5 + rng.normal(size=(300, 8))).astype(np.float32)
    single = [v_measure(vectors, labels, seed=s) for s in range(3)]
    assert v_measure(vectors, labels) == single[0]  # the default is the one seed results were always scored on
    assert v_measure(vectors, labels, seeds=3) == pytest.approx(np.mean(single))
    assert len(set(single)) > 1  # the seeds really differ, so the mean is not one run repeated


def test_cli_eval_compares_with_earlier_results_and_more_models(eval_data, tiny_dirs, tmp_path):
    from inbedder.cli import main

    data, _, _ = eval_data
    common = ["--data-dir", str(data), "--test", "robustness", "--robustness-set", "fewrel", "--per-group", "2",
              "--no-baselines"]
    first = tmp_path / "before.json"
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_dirs["opt"]), *common, "--robustness-rows", "60",
                                       "--out", str(first)])
    assert result.exit_code == 0, result.output
    after = tmp_path / "after.json"
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_dirs["llama"]), *common, "--robustness-rows", "60",
                                       "--also-model", str(tiny_dirs["roberta"]), "--before", str(first),
                                       "--out", str(after)])
    assert result.exit_code == 0, result.output
    saved = json.loads(after.read_text())
    assert list(saved) == [str(tiny_dirs["llama"]), str(tiny_dirs["roberta"]), str(tiny_dirs["opt"])]
    assert f"### Acceptance: {tiny_dirs['llama']} against {tiny_dirs['opt']}" in after.with_suffix(".md").read_text()
    again = tmp_path / "again.json"  # the same name (a default retrained since): both runs stay in the tables
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_dirs["opt"]), *common, "--robustness-rows", "60",
                                       "--before", str(first), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert list(json.loads(again.read_text())) == [str(tiny_dirs["opt"]), f"{tiny_dirs['opt']} (earlier run)"]
    # refused before any model loads (this model path does not even exist)
    mismatch = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "no-model"), *common,
                                         "--robustness-rows", "50", "--before", str(first),
                                         "--out", str(tmp_path / "x.json")])
    assert mismatch.exit_code != 0 and "fewrel: 50 rows here but 60" in mismatch.output
    seeds = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "no-model"), *common,
                                      "--robustness-rows", "60", "--kmeans-seeds", "3", "--before", str(first),
                                      "--out", str(tmp_path / "x.json")])
    assert seeds.exit_code != 0 and "3 k-means seed(s) here but 1" in seeds.output


def test_transfer_scores_the_held_out_domains_under_both_questions(tmp_path):
    from inbedder.evaluation.harness import TRANSFER_QUESTIONS, transfer_eval
    from inbedder.evaluation.harness import HELD_OUT_DOMAINS

    rng = np.random.default_rng(0)
    domains = ["Hotels", *HELD_OUT_DOMAINS]
    rows = 400
    picked = rng.integers(0, len(domains), rows)
    (tmp_path / "sgd").mkdir()
    pq.write_table(pa.table({"text": [f"request {i}" for i in range(rows)], "domain": [domains[d] for d in picked],
                             "intent": [f"{domains[d]}-{i % 2}" for i, d in enumerate(picked)],
                             "split": ["train"] * rows}), tmp_path / "sgd" / "sgd_intent_turns.parquet")

    class DomainReader:
        """Reads the domain off a text when asked about the kind of service, nothing otherwise."""

        name = "domain reader"

        def encode_many(self, texts, questions):
            index = {f"request {i}": d for i, d in enumerate(picked)}
            centres = np.eye(len(domains), dtype=np.float32) * 10
            out = {}
            for key, question in questions.items():
                noise = rng.normal(size=(len(texts), len(domains))).astype(np.float32)
                signal = centres[[index[t] for t in texts]] if question == TRANSFER_QUESTIONS["domain"] else 0
                out[key] = signal + noise
            return out

    result = transfer_eval(DomainReader(), tmp_path, rows=200)["sgd-held-out"]
    assert result["rows"] == 200  # only held-out domains: the trained one (Hotels) is never scored
    assert result["v_measure"]["domain"]["domain"] > 0.9 and result["diagonal_margin"]["domain"] > 0.8
