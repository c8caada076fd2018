"""Column names in predicates and Spark expressions."""

from __future__ import annotations

import pytest

from inbedder import lake


def test_column_names_are_quoted_and_a_backtick_refused():

    assert lake.quote("row id.v1") == "`row id.v1`"
    with pytest.raises(lake.TableError, match="backtick"):
        lake.quote("we`ird")
