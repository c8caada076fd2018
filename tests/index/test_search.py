"""Queries: the right rows, from the model (and adapter) that made the index."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from inbedder import InBedder
from inbedder.index import IndexBuildError, Searcher, build_index

from ..conftest import QUESTION, output_table


@pytest.fixture()
def table(tmp_path, llama, banking_texts):
    return output_table(tmp_path / "out", llama, banking_texts[:300])


def test_query_returns_the_right_rows_and_columns(tmp_path, table, llama, banking_texts):
    manifest = build_index(str(table), "q", tmp_path / "idx")
    assert manifest.factory == "Flat" and manifest.recall_at_10 == 1.0 and manifest.source_version is not None
    searcher = Searcher(tmp_path / "idx", llama)
    hits = searcher.search([banking_texts[17], banking_texts[42]], k=3, table=str(table))
    assert [h[0].key for h in hits] == ["k17", "k42"]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][0].row["text"] == banking_texts[17] and "q_embedding" not in hits[0][0].row
    saved = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert saved["instruction_text"] == QUESTION and saved["fingerprint"] == llama.fingerprint


def test_a_model_with_another_fingerprint_is_refused(tmp_path, table, tiny_dirs):
    build_index(str(table), "q", tmp_path / "idx")
    with pytest.raises(IndexBuildError, match="holds vectors from model .* not comparable"):
        Searcher(tmp_path / "idx", InBedder.from_pretrained(str(tiny_dirs["opt"])))


def test_cli_index_then_query_json(tmp_path, table, tiny_dirs, banking_texts):
    from click.testing import CliRunner

    from inbedder.cli import main

    runner = CliRunner()
    built = runner.invoke(main, ["index", "--table", str(table), "--out", str(tmp_path / "idx")])
    assert built.exit_code == 0, built.output
    queries = tmp_path / "q.txt"
    queries.write_text(f"{banking_texts[3]}\n{banking_texts[8]}\n")
    result = runner.invoke(main, ["query", str(tmp_path / "idx" / "q"), "--queries-file", str(queries), "-k", "2",
                                  "--table", str(table), "--model", str(tiny_dirs["llama"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["hits"][0]["key"] for r in rows] == ["k3", "k8"] and rows[0]["hits"][0]["row"]["text"] == banking_texts[3]
    again = runner.invoke(main, ["index", "--table", str(table), "--out", str(tmp_path / "idx")])
    assert "'added': 0" in again.stdout


def test_an_index_made_with_an_adapter_is_queried_with_it(tmp_path, tiny_dirs, banking_texts):
    """`inbedder query --adapter`: without it the base model's vectors would not match the index's."""
    import pyarrow as pa
    from click.testing import CliRunner

    from inbedder.cli import main
    from inbedder.training import TrainConfig, train

    rows = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"input": banking_texts[:8], "instruction": ["What does the customer want?"] * 8,
                             "answer": ["card"] * 8}), rows)
    adapter = train(TrainConfig(model=str(tiny_dirs["llama"]), train=str(rows), validation=str(rows),
                                out=str(tmp_path / "run"), batch_size=4, max_steps=2, lora_r=4, lr=5e-3,
                                checkpoint_every=2, eval_every=2, progress=False))
    tuned = InBedder.from_pretrained(str(tiny_dirs["llama"]), adapter=str(adapter))
    table = output_table(tmp_path / "out", tuned, banking_texts[:40])
    runner = CliRunner()
    assert runner.invoke(main, ["index", "--table", str(table), "--out", str(tmp_path / "idx")]).exit_code == 0
    base = ["query", str(tmp_path / "idx" / "q"), banking_texts[5], "--model", str(tiny_dirs["llama"]), "--json"]
    refused = runner.invoke(main, base)
    assert refused.exit_code == 1 and "not comparable" in refused.output and "--adapter" in refused.output
    found = runner.invoke(main, base + ["--adapter", str(adapter)])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout.strip().splitlines()[-1])["hits"][0]["key"] == "k5"
