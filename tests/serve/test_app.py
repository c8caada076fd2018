"""The API on a small index: hits equal the Python search, every bad input is a one-line 4xx, token, hot swap."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from .conftest import QUESTIONS, TEXT_COLUMN, TEXTS, make_app, write_two_question_output


@pytest.fixture()
def client(served, llama):
    with TestClient(make_app(served, llama)) as c:
        yield c


def test_indexes_and_health_describe_what_is_served(client, llama):
    listed = client.get("/indexes").json()["indexes"]
    assert {i["question"]: i["question_text"] for i in listed} == QUESTIONS
    assert all(i["rows"] == 42 and i["fingerprint"] == llama.fingerprint and i["table"] == "table" for i in listed)
    assert "/" not in json.dumps([i["table"] for i in listed])  # no path of the machine leaks
    assert client.get("/health").json()["status"] == "ok"


def test_hits_equal_the_python_search_with_rows_read_by_key(client, served, llama):
    from inbedder.index import Searcher

    expected = Searcher(served / "index_feeling", llama).search(["I am so happy with the app"], 5)[0]
    got = client.post("/search", json={"question": "feeling", "texts": ["I am so happy with the app"], "k": 5}).json()
    hits = got["results"][0]["hits"]
    assert [h["key"] for h in hits] == [h.key for h in expected]
    assert [round(h["score"], 5) for h in hits] == [round(h.score, 5) for h in expected]
    assert got["text_column"] == TEXT_COLUMN and all(h["row"][TEXT_COLUMN] in TEXTS for h in hits)
    assert all(h["row"]["id"] == h["key"] for h in hits)
    assert all("answer" not in h for h in hits)  # the table stores answers under "intent" only
    intent = client.post("/search", json={"question": "intent", "texts": ["please cancel my loan"], "k": 3}).json()
    assert all(h["answer"] == "wants " + h["row"][TEXT_COLUMN].split()[-1] for h in intent["results"][0]["hits"])
    assert set(got["timing_ms"]) == {"encode", "search"}


@pytest.mark.parametrize("body, status, reason", [
    ({"question": "topic", "texts": ["x"]}, 404, "unknown question 'topic'"),
    ({"question": "intent", "texts": []}, 422, "texts is empty"),
    ({"question": "intent", "texts": ["  "]}, 422, "texts.0 is empty"),
    ({"question": "intent", "texts": ["x" * 5000]}, 422, "at most 4000"),
    ({"question": "intent", "texts": ["x"] * 33}, 422, "at most 32 per request"),
    ({"question": "intent", "texts": ["x"], "k": 0}, 422, "k must be between 1 and 100"),
    ({"question": "intent", "texts": ["x"], "k": 101}, 422, "k must be between 1 and 100"),
    ({"question": "intent", "texts": "x"}, 422, "texts"),
    ({"question": "intent", "texts": ["x"], "extra": 1}, 422, "extra"),
])
def test_bad_requests_get_a_one_line_4xx(client, body, status, reason):
    response = client.post("/search", json=body)
    assert response.status_code == status and reason in response.json()["error"]
    assert "\n" not in response.json()["error"] and "Traceback" not in response.text


def test_malformed_and_non_utf8_bodies(client):
    bad_json = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json() == {"error": "the body is not valid JSON"}
    latin = client.post("/search", content='{"question": "caf\xe9"}'.encode("latin-1"))
    assert latin.status_code == 400 and latin.json() == {"error": "the body is not UTF-8"}
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()


def test_a_token_is_checked_on_every_request(served, llama):
    with TestClient(make_app(served, llama, token="s3cret-token-of-sixteen")) as c:
        assert c.get("/health").status_code == 401 and c.get("/").status_code == 401
        ok = {"Authorization": "Bearer s3cret-token-of-sixteen"}
        assert c.get("/health", headers=ok).status_code == 200
        assert c.get("/indexes?token=s3cret-token-of-sixteen").status_code == 200


def test_no_token_off_loopback_refuses_to_start(served, tmp_path, monkeypatch):
    from inbedder.serve.settings import ServeError, ServeSettings, check_exposure, read_token

    monkeypatch.delenv("INBEDDER_SERVE_TOKEN", raising=False)
    with pytest.raises(ServeError, match="--host 0.0.0.0 is reachable from other machines"):
        check_exposure(ServeSettings(("x",), host="0.0.0.0"))
    check_exposure(ServeSettings(("x",), host="127.0.0.1"))
    check_exposure(ServeSettings(("x",), host="0.0.0.0", token="t" * 16))
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ServeError, match="at least 16 characters"):
        read_token(str(tmp_path / "short"))


def test_a_missing_or_corrupt_index_is_named_at_start_up(served, llama, tmp_path):
    from inbedder.errors import InBedderError
    from inbedder.serve.indexes import IndexSet

    with pytest.raises(InBedderError, match="manifest.json not found"):
        IndexSet((str(tmp_path / "nothing"),), llama)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (served / "index_intent").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(InBedderError, match="index.faiss is corrupt"):
        IndexSet((str(broken),), llama)


def test_indexes_of_another_model_are_refused_at_start_up(served, tiny_dirs):
    from inbedder import InBedder
    from inbedder.errors import InBedderError
    from inbedder.serve.indexes import IndexSet

    with pytest.raises(InBedderError, match="Load the model"):
        IndexSet((str(served / "index_intent"),), InBedder.from_pretrained(str(tiny_dirs["opt"])))


def test_a_rebuilt_index_is_swapped_in_while_requests_run(tmp_path, llama):
    import time

    from inbedder.index import build_index

    write_two_question_output(tmp_path / "table", llama)
    for name in QUESTIONS:
        build_index(str(tmp_path / "table"), name, str(tmp_path / f"index_{name}"))
    seen, errors, stop = set(), [], threading.Event()
    with TestClient(make_app(tmp_path, llama)) as c:
        def hammer():
            while not stop.is_set():
                r = c.post("/search", json={"question": "intent", "texts": ["lost card"], "k": 50}).json()
                if "results" not in r:
                    errors.append(r)
                    continue
                keys = {h["key"] for h in r["results"][0]["hits"]}
                version = r["table_version"]
                # each answer comes from one index: every key exists in that version's table
                if version == 0 and not keys <= {f"k{i}" for i in range(len(TEXTS))}:
                    errors.append(("mixed", version, keys))
                seen.add((version, len(keys)))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        write_two_question_output(tmp_path / "table", llama, TEXTS + ["a brand new text"] * 1, version_tag="t")
        build_index(str(tmp_path / "table"), "intent", str(tmp_path / "index_intent"))
        deadline = time.time() + 20
        while time.time() < deadline and c.get("/health").json()["swaps"] < 1:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert c.get("/health").json()["swaps"] == 1
        assert not errors
        versions = {v for v, _ in seen}
        assert len(versions) == 2 and {n for v, n in seen if v == max(versions)} == {43}


def test_the_serve_command_ends_a_user_error_in_one_line(tmp_path, tiny_dirs, monkeypatch):
    from click.testing import CliRunner

    from inbedder.cli import main

    monkeypatch.delenv("INBEDDER_SERVE_TOKEN", raising=False)
    exposed = CliRunner().invoke(main, ["serve", "--index", str(tmp_path), "--host", "0.0.0.0"])
    assert exposed.exit_code == 1 and exposed.output.count("\n") == 1 and "give a token" in exposed.output
    missing = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "nope"), "--model", str(tiny_dirs["llama"])])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1 and "manifest.json not found" in missing.output
