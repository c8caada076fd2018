"""Column names in predicates and Spark expressions."""

from __future__ import annotations

import pytest

from inbedder import lake


def test_column_names_are_quoted_and_a_backtick_refused():

    assert lake.quote("row id.v1") == "`row id.v1`"
    with pytest.raises(lake.TableError, match="backtick"):
        lake.quote("we`ird")


def test_the_embedded_text_column_is_the_recorded_one_else_text():

    assert lake.embedded_text_column("utterance") == "utterance"
    assert lake.embedded_text_column("") == "text"  # a table written before the job recorded its column
    assert lake.embedded_text_column(None) == "text"
