"""The console gets one line per message; the log file gets everything."""

import logging
import time

from inbedder.console import PolledProgress, log_to_console, log_to_file


def test_one_line_on_the_console_and_the_traceback_in_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path))
    path = log_to_file("test")
    log_to_console()
    log_to_console()  # idempotent: still one line per message
    log = logging.getLogger("inbedder.test")
    try:
        raise ValueError("deep\ncause")
    except ValueError as exc:
        log.warning("step failed", exc_info=exc)
    log.debug("detail only for the file")
    err = capsys.readouterr().err
    assert err == "[inbedder] step failed\n"
    text = path.read_text()
    assert "Traceback" in text and "deep" in text and "detail only for the file" in text


def test_the_progress_bar_follows_its_counter_to_the_end(capsys):
    done = [0]
    bar = PolledProgress(10, lambda: done[0], interval_s=0.01, desc="rows")
    done[0] = 4
    time.sleep(0.05)
    done[0] = 10
    bar.close()
    assert "10/10" in capsys.readouterr().err


def test_the_failure_contract_tells_bad_settings_from_failures_and_defects(tmp_path, monkeypatch):
    from inbedder.console import EXIT_CONFIG, EXIT_FAILED, failure_line
    from inbedder.errors import ConfigError, TableError

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path))
    log_file = log_to_file("contract")
    bad = failure_line("embed", ConfigError("output.path: missing\nmore"), log_file)
    assert bad.exit_code == EXIT_CONFIG
    assert bad.line == f"inbedder embed failed: output.path: missing (details: {log_file})"
    failed = failure_line("index", TableError("table /t does not exist"), None)
    assert failed.exit_code == EXIT_FAILED and failed.line == "inbedder index failed: table /t does not exist"
    defect = failure_line("query", ZeroDivisionError("division by zero"), log_file)
    assert defect.exit_code == EXIT_FAILED and "failed unexpectedly: ZeroDivisionError: division by zero" in defect.line
    assert f"(traceback: {log_file})" in defect.line


def test_the_cache_root_follows_inbedder_cache(tmp_path, monkeypatch):
    from inbedder.fs import cache_root

    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" and (tmp_path / "c").is_dir()
