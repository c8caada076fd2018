"""Bad input gets a clear error naming it, or a per-row error; never a garbage vector."""

from __future__ import annotations

import numpy as np
import pytest

from inbedder.engine.errors import InvalidInputError

BAD = [None, "", "   \n\t", 42, "ok \ud800 broken"]
REASONS = ["null", "empty", "empty", "int, not a string", "not valid Unicode"]


def test_each_bad_text_is_named_with_its_position(tiny):
    texts = ["fine text"] + BAD
    with pytest.raises(InvalidInputError) as err:
        tiny.encode(texts, "What is it?")
    where = [w for w, _ in err.value.problems]
    assert where == [f"row {i}" for i in range(1, len(texts))]
    for (_, why), expected in zip(err.value.problems, REASONS):
        assert expected in why
    assert "row 1: text is null" in str(err.value)


def test_per_row_errors_keep_good_rows(tiny):
    texts = ["fine text", None, "another fine text", ""]
    result = tiny.embed(texts, {"q": "What is it?"}, on_error="row")
    assert result.errors[0] is None and result.errors[2] is None
    assert "null" in result.errors[1] and "empty" in result.errors[3]
    vecs = result.vectors["q"]
    assert np.isnan(vecs[[1, 3]]).all() and np.isfinite(vecs[[0, 2]]).all()
    np.testing.assert_allclose(vecs[[0, 2]], tiny.encode(["fine text", "another fine text"], "What is it?"),
                               rtol=1e-4, atol=1e-4)
    assert result.ok.tolist() == [True, False, True, False]


def test_all_rows_bad_gives_all_errors(tiny):
    result = tiny.embed([None, ""], {"q": "What is it?"}, on_error="row")
    assert all(result.errors) and np.isnan(result.vectors["q"]).all()


@pytest.mark.parametrize(
    "instructions, message",
    [
        ({"q": ""}, "question is empty"),
        ({"q": "   "}, "question is empty"),
        ({"q": None}, "not a string"),
        ({"": "What?"}, "name is empty"),
        ({"1bad": "What?"}, "must be ASCII letters"),
        ({"has space": "What?"}, "must be ASCII letters"),
        ({}, "no instruction given"),
    ],
)
def test_bad_instructions_are_named(tiny, instructions, message):
    with pytest.raises(InvalidInputError, match=message):
        tiny.embed(["text"], instructions)


def test_instruction_over_the_length_budget(tiny):
    question = "why " * (tiny.max_length + 5)
    with pytest.raises(InvalidInputError, match=r"instruction 'q' is \d+ tokens .* over the length budget"):
        tiny.embed(["text"], {"q": question})


def test_on_error_value_is_checked(tiny):
    with pytest.raises(ValueError, match="on_error"):
        tiny.embed(["text"], {"q": "What?"}, on_error="ignore")
