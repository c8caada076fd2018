"""The evaluation harness scores what it should: a facet-aware embedder wins its diagonal."""

from __future__ import annotations

import numpy as np
import pytest

from inbedder.evaluation import clustering_eval, diagonal_margins, facet_table, to_markdown

from .conftest import DATA


def test_an_embedder_that_answers_the_question_wins_the_diagonal():
    rng = np.random.default_rng(0)
    topics = rng.integers(0, 4, 200)
    moods = rng.integers(0, 3, 200)
    centres = {"topic": rng.normal(size=(4, 16)) * 5, "mood": rng.normal(size=(3, 16)) * 5}
    texts = [f"t{i}" for i in range(200)]

    def embed(batch, question):
        facet = "topic" if "topic" in question else "mood"
        labels = topics if facet == "topic" else moods
        return (centres[facet][labels] + rng.normal(size=(len(batch), 16))).astype(np.float32)

    table = facet_table(embed, texts, {"topic": (topics.tolist(), "What is the topic?"),
                                       "mood": (moods.tolist(), "What is the mood?")})
    assert table["topic"]["topic"] > 0.9 and table["mood"]["mood"] > 0.9
    assert table["topic"]["mood"] < 0.1 and table["mood"]["topic"] < 0.1
    assert all(m > 0.8 for m in diagonal_margins(table).values())


def test_clustering_eval_on_real_data_with_a_tiny_model(tiny):
    if not (DATA / "clustering").exists():
        pytest.skip("../shared/data not present")
    results = clustering_eval(lambda t, q: tiny.encode(list(t), q), DATA, ["massive"], rows=80)
    table = results["massive"]["v_measure"]
    assert set(table) == {"intent", "scenario"} and all(0 <= v <= 1 for row in table.values() for v in row.values())
    assert "| intent |" in to_markdown(results, "tiny")
