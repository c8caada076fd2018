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
