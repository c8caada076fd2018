"""The CLI on the embedded default: the quickstart demo and clear failures."""

from __future__ import annotations

from pathlib import Path

import json

import pytest

from click.testing import CliRunner

from inbedder.cli import main


def test_demo_prints_neighbours_under_each_question():
    result = CliRunner().invoke(main, ["demo", "--rows", "40", "--show", "2", "-k", "3", "--threads", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("under 'intent'") >= 2 and out.count("under 'feeling'") >= 2
    assert "neighbours shared by both questions" in out and "fingerprint:" in out


def test_encode_prints_json_lines_with_answers(tiny_dirs):
    result = CliRunner().invoke(main, ["encode", "--model", str(tiny_dirs["llama"]), "-i", "What is it?",
                                       "--answers", "first text", "second text"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["text"] for r in rows] == ["first text", "second text"]
    assert len(rows[0]["embedding"]) == 64 and isinstance(rows[0]["answer"], str)


def test_encode_bad_text_fails_with_reason(tiny_dirs):
    result = CliRunner().invoke(main, ["encode", "--model", str(tiny_dirs["llama"]), "-i", "What?", "   "])
    assert result.exit_code != 0 and "row 0: text is empty or whitespace-only" in result.output


def test_missing_model_fails_with_reason(tmp_path):
    result = CliRunner().invoke(main, ["info", "--model", str(tmp_path / "missing" / "dir")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_embed_failures_print_one_line_and_log_the_detail(tmp_path, monkeypatch, capsys):
    import inbedder.job.run
    from inbedder.job.entry import run_embed

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "out").write_text("a file")
    base = {"input.path": str(tmp_path / "missing.parquet"), "input.key": "id", "input.text": "text",
            "instructions": {"q": "What?"}, "output.path": str(tmp_path / "out")}
    assert run_embed(None, [], base) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err and "Traceback" not in err

    def broken(config):
        raise RuntimeError("something deep\nwith a second line")

    monkeypatch.setattr(inbedder.job.run, "run_job", broken)
    assert run_embed(None, [], base) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "RuntimeError: something deep" in err
    log_file = err.rsplit("(traceback: ", 1)[1].rstrip(")")
    assert "Traceback" in open(log_file).read() and "with a second line" in open(log_file).read()


def test_train_with_bad_yaml_and_eval_with_bad_before_end_in_one_line(tmp_path):
    from click.testing import CliRunner

    from inbedder.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    result = CliRunner().invoke(main, ["train", "--config", str(bad)])
    # exit 2: a bad settings file, as for `inbedder embed` (one failure contract for every command)
    assert result.exit_code == 2 and "is not valid YAML" in result.output and result.output.count("\n") == 1
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    result = CliRunner().invoke(main, ["train", "--config", str(listed)])
    assert result.exit_code == 2 and "must hold a mapping" in result.output
    before = tmp_path / "before.json"
    before.write_text("{not json")
    (tmp_path / "clustering").mkdir()
    result = CliRunner().invoke(main, ["eval", "--data-dir", str(tmp_path), "--test", "stsb", "--before", str(before)])
    assert result.exit_code != 0 and "Traceback" not in result.output


def _user_errors(tmp_path) -> dict[str, list[str]]:
    missing = str(tmp_path / "missing")
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    return {
        "demo": ["demo", "--model", missing],
        "encode": ["encode", "--model", missing, "-i", "What?", "a text"],
        "info": ["info", "--model", missing],
        "index": ["index", "--table", missing, "--out", str(tmp_path / "idx")],
        "query": ["query", missing, "a query"],
        "serve": ["serve", "--index", missing],
        "eval": ["eval", "--data-dir", missing, "--test", "stsb"],
        "cluster": ["cluster", "--table", missing, "--instruction", "q", "-k", "4"],
        "optimize": ["optimize", "--table", missing],
        "train-data": ["train-data", "--data-dir", str(tmp_path), "--out", str(tmp_path / "rows")],
        "train": ["train", "--set", "lr=-1"],
        "soup": ["soup", "--adapter", str(tmp_path / "a"), "--adapter", str(tmp_path / "b"), "--out", missing],
        "embed": ["embed", "--config", str(tmp_path / "missing.yaml")],
    }


COMMANDS = ["demo", "encode", "info", "index", "query", "serve", "eval", "cluster", "optimize", "train-data", "train",
            "soup", "embed"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_ends_a_user_error_in_one_line(tmp_path, monkeypatch, command):
    """The failure contract: one line naming the problem, no traceback, exit 2 for bad settings and 1 otherwise."""
    from click.testing import CliRunner

    from inbedder.cli import main

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "cache"))
    cases = _user_errors(tmp_path)
    assert sorted(cases) == sorted(COMMANDS)
    result = CliRunner().invoke(main, cases[command])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("[inbedder]")]
    assert result.exit_code in (1, 2), result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert (result.exit_code == 2) == (command in ("train", "embed", "eval")), result.output  # bad settings


def test_an_unexpected_failure_is_one_line_with_the_traceback_in_the_log(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import inbedder.engine
    from inbedder.cli import main

    def broken(*args, **kwargs):
        raise KeyError("deep inside\nsecond line")

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inbedder.engine.InBedder, "from_pretrained", broken)
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "inbedder info failed unexpectedly: KeyError" in result.output
    log_file = result.output.rsplit("(traceback: ", 1)[1].strip().rstrip(")")
    assert "Traceback" in Path(log_file).read_text() and "second line" in Path(log_file).read_text()


def test_the_index_script_keeps_the_same_contract(tmp_path, monkeypatch, capsys):
    import importlib.util

    from .conftest import REPO

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("build_index_script", REPO / "jobs" / "build_index.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--table", str(tmp_path / "missing"), "--out", str(tmp_path / "idx")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inbedder build_index failed:") and err.count("\n") == 0 and "details:" in err
    assert script.main(["--config", str(tmp_path / "missing.yaml")]) == 2
