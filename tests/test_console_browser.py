"""The on-call console in a real headless Chromium, on a store filled by the demo workload.

The path an on-call engineer takes: open the overview, check its numbers (each against the
JSON API for the same window), follow a recent failure to its run page, read the error.
Attacker-controlled strings (an agent name, an error message) must show as text and never
run. With UPDATE_CONSOLE_SCREENSHOTS=1 the light and dark screenshots of docs/console.md
are rewritten (docs/img/).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch.config import Budget, Settings
from agentwatch.demo import run_demo
from agentwatch.ids import short_id
from agentwatch.server import AgentwatchServer, make_server
from support.binaries import require_binary, unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
AGENT_XSS = '<img src=x onerror="window.__pwned=1">"\'&'
ERROR_XSS = "</pre><script>window.__pwned=2</script><b>bold?</b>"


def _xss_workload() -> None:
    @agentwatch.observe(name=AGENT_XSS)
    def hostile() -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=5,
                                   output_tokens=5, cost_usd=0.002)  # fmt: skip
        raise ValueError(ERROR_XSS)

    with pytest.raises(ValueError):
        hostile()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentwatchServer]:
    home = tmp_path_factory.mktemp("console")
    monkeypatch = pytest.MonkeyPatch()
    clean_environment(monkeypatch, home)
    url = f"sqlite:///{home / 'console.db'}"
    agentwatch.configure(store_url=url, registry=CollectorRegistry())
    try:
        run_demo(runs=24, seed=5)
        _xss_workload()
        assert agentwatch.flush(timeout=30)
    finally:
        agentwatch.close()
    budgets = (Budget(name="daily-openai", limit_usd=0.05, period="day", provider="openai"),)
    server = make_server(Settings(store_url=url, budgets=budgets), port=0)
    server.start()
    yield server
    server.shutdown()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _api(server: AgentwatchServer, path: str, **params: Any) -> Any:
    response = requests.get(server.url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _close(shown: str, expected: float | None) -> None:
    """A number as the page shows it equals the API's, to the page's precision."""
    if expected is None:
        assert shown in ("unpriced", "–")
        return
    text = shown.replace("$", "").replace(",", "").strip()
    if text.endswith("%"):
        assert abs(float(text[:-1]) / 100 - expected) < 0.0006
    elif text.endswith(" ms"):
        assert abs(float(text[:-3]) / 1000 - expected) < 0.0006
    elif text.endswith(" s"):
        assert abs(float(text[:-2]) - expected) < 0.006
    else:
        assert abs(float(text) - expected) < 0.00006, (shown, expected)


def _no_script_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__pwned === undefined") is True
    errors = [e for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not errors, errors  # the stylesheet and every resource load under the CSP


def test_overview_numbers_match_the_api(console: AgentwatchServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console.url + "/ui/")
    assert browser.title.startswith("Overview")
    window = browser.find_element(By.ID, "window")
    since, until = window.get_attribute("data-since"), window.get_attribute("data-until")
    stats = _api(console, "/api/v1/stats", since=since, until=until)
    tiles = browser.find_elements(By.CSS_SELECTOR, ".tiles a[data-metric]")
    assert len(tiles) == 6
    for tile in tiles:
        metric = tile.get_attribute("data-metric")
        value = tile.find_element(By.CSS_SELECTOR, ".value").text
        if metric == "spend_today":
            today = _api(console, "/api/v1/stats", since=tile.get_attribute("data-since"),
                         until=tile.get_attribute("data-until"))  # fmt: skip
            _close(value, today["cost_usd"])
        else:
            _close(value, stats[metric])
        assert "/ui/runs?" in tile.get_attribute("href")
    assert stats["runs"] > 20 and stats["failed_runs"] > 0

    agents = {a["agent"]: a for a in _api(console, "/api/v1/agents", since=since,
                                          until=until)["agents"]}  # fmt: skip
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.agent-row")
    assert {r.get_attribute("data-agent") for r in rows} == set(agents)
    for row in rows:
        record = agents[row.get_attribute("data-agent")]
        for cell in row.find_elements(By.CSS_SELECTOR, "a[data-metric]"):
            metric = cell.get_attribute("data-metric")
            expected = (record["completed_runs"] / record["runs"] if metric == "success_rate"
                        else record[metric])  # fmt: skip
            _close(cell.text.split(" +")[0], expected)

    budgets = {b["name"]: b for b in _api(console, "/api/v1/budgets")["budgets"]}
    (budget_row,) = browser.find_elements(By.CSS_SELECTOR, "tr.budget-row")
    spend = budget_row.find_element(By.CSS_SELECTOR, "a[data-metric=spend_usd]")
    _close(spend.text, budgets["daily-openai"]["spend_usd"])
    _no_script_ran(browser)


def test_every_overview_number_links_to_the_list_that_makes_it(
    console: AgentwatchServer, browser: Any
) -> None:
    """The runs list behind "Failures" holds exactly that many runs."""
    from selenium.webdriver.common.by import By

    browser.get(console.url + "/ui/")
    tile = browser.find_element(By.CSS_SELECTOR, ".tiles a[data-metric=failed_runs]")
    failed = int(tile.get_attribute("data-value"))
    tile.click()
    assert "/ui/runs?" in browser.current_url and "status=failed" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.run-row")
    assert len(rows) == failed
    assert all(r.find_element(By.CSS_SELECTOR, ".status").text == "failed" for r in rows)


def test_a_failure_leads_to_its_run_page(console: AgentwatchServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console.url + "/ui/")
    first = browser.find_element(By.CSS_SELECTOR, "table.runs tr.run-row a.run-link")
    run_id = first.find_element(By.XPATH, "./ancestor::tr").get_attribute("data-id")
    first.click()
    assert browser.find_element(By.ID, "run-id").text == run_id
    record = _api(console, f"/api/v1/executions/{run_id}")
    assert record["status"] == "failed"
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .status").text == "failed"
    assert browser.find_element(By.CSS_SELECTOR, "#run-error .error-type").text == (
        record["error_type"] or ""
    )
    steps = browser.find_elements(By.CSS_SELECTOR, "table.waterfall tr.step")
    assert len(steps) >= 1 + len(record["events"])
    assert browser.find_elements(By.CSS_SELECTOR, "table.waterfall svg.bar rect")
    # The short form shown in lists (a prefix of the id) resolves to the same page.
    browser.get(console.url + "/ui/runs/" + short_id(run_id))
    assert browser.find_element(By.ID, "run-id").text == run_id
    _no_script_ran(browser)


def test_nested_run_links_to_its_parent(console: AgentwatchServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    runs = _api(console, "/api/v1/executions", agent="summarizer", limit=1)["executions"]
    nested = runs[0]
    browser.get(console.url + "/ui/runs/" + nested["id"])
    browser.find_element(By.ID, "parent-link").click()
    assert browser.find_element(By.ID, "run-id").text == nested["parent_id"]
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "tr.step td.label")]
    assert any("summarizer" in label for label in labels)


def test_hostile_strings_are_shown_as_text(console: AgentwatchServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console.url + "/ui/")
    row = browser.find_element(By.CSS_SELECTOR, "tr.agent-row a.agent-link")
    texts = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tr.agent-row a.agent-link")]
    assert AGENT_XSS in texts, texts
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script, main b")
    failures = browser.find_elements(By.CSS_SELECTOR, "table.runs tr.run-row")
    hostile = [f for f in failures if ERROR_XSS[:20] in f.text]
    assert hostile, "the hostile failure is listed with its message as text"
    hostile[0].find_element(By.CSS_SELECTOR, "a.run-link").click()
    assert browser.find_element(By.ID, "run-agent").text == AGENT_XSS
    assert browser.find_element(By.CSS_SELECTOR, "#run-error .error-message").text == ERROR_XSS
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img, main b")
    browser.find_element(By.ID, "run-agent").click()  # the agent page, by its hostile name
    assert browser.find_element(By.ID, "agent-name").text == AGENT_XSS
    assert row is not None
    _no_script_ran(browser)


def test_csp_and_security_headers(console: AgentwatchServer) -> None:
    response = requests.get(console.url + "/ui/", timeout=10)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r"<script|style=", response.text)
    assert requests.post(console.url + "/ui/", timeout=10).status_code == 405


def test_screenshots_light_and_dark(
    console: AgentwatchServer, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots: dict[str, Path] = {}
    backgrounds = {}
    failed = _api(console, "/api/v1/executions", agent="researcher", limit=1)
    run_id = failed["executions"][0]["id"]
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        for page, path in (("overview", "/ui/"), ("run", f"/ui/runs/{run_id}")):
            browser.get(console.url + path)
            shot = tmp_path / f"console-{page}-{scheme}.png"
            browser.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
            shots[shot.name] = shot
        body = browser.find_element(By.TAG_NAME, "body")
        backgrounds[scheme] = body.value_of_css_property("background-color")
    assert backgrounds["light"] != backgrounds["dark"]  # the stylesheet loaded, both schemes
    if os.environ.get("UPDATE_CONSOLE_SCREENSHOTS") == "1":
        for name, shot in shots.items():
            shutil.copyfile(shot, ROOT / "docs" / "img" / name)
    for name in shots:
        assert (ROOT / "docs" / "img" / name).is_file(), f"docs/img/{name} missing"
        assert f"img/{name}" in (ROOT / "docs" / "console.md").read_text()
