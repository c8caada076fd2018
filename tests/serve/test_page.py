"""The page in a real browser (Debian's headless Chromium driven by Selenium): search, compare, clusters."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import QUESTIONS, TEXTS

ARTIFACTS = Path(os.environ.get("INBEDDER_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "out" /
                                "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(served, llama, tmp_path_factory):
    """The real server (uvicorn) on loopback, with an `inbedder cluster` report for one question."""
    import uvicorn

    from inbedder.clusters import ClusterOptions, cluster_table, write_report
    from inbedder.index import build_index
    from inbedder.serve.app import create_app
    from inbedder.serve.indexes import IndexSet, read_clusters
    from inbedder.serve.settings import ServeSettings

    result, data, labels = cluster_table(str(served / "table"), "intent",
                                         ClusterOptions(k=3, sample_per_cluster=3, max_answer_tokens=4), llama)
    report = write_report(result, data, labels, tmp_path_factory.mktemp("report"))
    build_index(str(served / "table"), "intent", str(served / "index_intent"))  # the table has labels now
    port = free_port()
    settings = ServeSettings((str(served / "index_intent"), str(served / "index_feeling")), (str(report.parent),),
                             port=port)
    app = create_app(settings, llama, IndexSet(settings.indexes, llama, read_clusters(settings.clusters)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_server_listens_on_loopback_only(server):
    import psutil

    import ipaddress

    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)

    listening = [c for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    port = int(server.rsplit(":", 1)[1])
    assert any(c.laddr.port == port and c.laddr.ip == "127.0.0.1" for c in listening), listening
    assert all(loopback(c.laddr.ip) for c in listening), listening  # nor anything else this process started


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Debian's chromium and chromium-driver are needed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_search_compare_and_clusters_in_a_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server + "/")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert "intent: 42 rows" in browser.find_element(By.ID, "served").text
    Select(browser.find_element(By.ID, "search-question")).select_by_value("feeling")
    assert browser.find_element(By.ID, "search-question-text").text == QUESTIONS["feeling"]
    browser.find_element(By.ID, "search-text").send_keys("I love my new card")
    browser.find_element(By.ID, "search-go").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#search-results .hit")) == 5)
    first = browser.find_element(By.CSS_SELECTOR, "#search-results .hit .key").text
    assert first.startswith("k")  # the hit's text is read from the column the table records, not from `text`
    assert all(t.text in TEXTS for t in browser.find_elements(By.CSS_SELECTOR, "#search-results .hit .text"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "serve_search.png"))

    browser.find_element(By.ID, "tab-compare").click()
    browser.find_element(By.ID, "compare-text").send_keys("please cancel my loan")
    browser.find_element(By.ID, "compare-go").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#compare-left-results .hit")) == 5
               and len(b.find_elements(By.CSS_SELECTOR, "#compare-right-results .hit")) == 5)
    left = browser.find_element(By.CSS_SELECTOR, "#compare-left-results .question").text
    right = browser.find_element(By.CSS_SELECTOR, "#compare-right-results .question").text
    assert {left, right} == set(QUESTIONS.values())
    side = "left" if left == QUESTIONS["intent"] else "right"  # the table stores answers under "intent" only
    answers = browser.find_elements(By.CSS_SELECTOR, f"#compare-{side}-results .hit .answer")
    assert len(answers) == 5 and all(a.text.startswith("answers: wants ") for a in answers)
    browser.save_screenshot(str(ARTIFACTS / "serve_compare.png"))

    browser.find_element(By.ID, "tab-clusters").click()
    Select(browser.find_element(By.ID, "clusters-question")).select_by_value("intent")
    browser.find_element(By.ID, "clusters-go").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#clusters-list .cluster")))
    cards = browser.find_elements(By.CSS_SELECTOR, "#clusters-list .cluster h3")
    assert len(cards) == 3 and sum(int(c.text.split("·")[1].split()[0]) for c in cards) == 42
    nearest = browser.find_elements(By.CSS_SELECTOR, "#clusters-list .cluster li")  # texts from the recorded column
    assert nearest and all(li.text in TEXTS for li in nearest)
    wait.until(lambda b: b.find_element(By.ID, "clusters-map").get_attribute("data-points") == "42")
    browser.save_screenshot(str(ARTIFACTS / "serve_clusters.png"))
    assert (ARTIFACTS / "serve_clusters.png").stat().st_size > 10_000
