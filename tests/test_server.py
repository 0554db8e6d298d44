"""`agentwatch serve`: /metrics from the store's rollups, budgets, health and the JSON API.

The store is filled through the public capture API (observe, record_llm_call, flush), so
these tests cover the whole path a user's records take to a scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import agentwatch
from agentwatch.config import Budget, Settings
from agentwatch.errors import StoreError
from agentwatch.server import AgentwatchServer, make_server, serve_in_thread
from agentwatch.store import open_store

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def store_url(migrated_url: str) -> Iterator[str]:
    """A fresh, initialised store on each backend (SQLite file, throw-away PostgreSQL schema).

    Initialised as `agentwatch init` would: serve only reads stores that exist.
    """
    with open_store(migrated_url) as store:
        store.migrate()
    agentwatch.configure(store_url=migrated_url)
    yield migrated_url
    agentwatch.close()


def _serve(settings: Settings, clock: float | None = None) -> AgentwatchServer:
    server = make_server(settings, port=0, clock=(lambda: clock) if clock else time.time)
    serve_in_thread(server)
    return server


@pytest.fixture
def served(store_url: str) -> Iterator[AgentwatchServer]:
    server = _serve(Settings(store_url=store_url))
    yield server
    server.shutdown()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, frozenset(labels.items())))


def _record_workload() -> None:
    @agentwatch.observe(name="planner")
    def planner(fail: bool) -> str:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=100, output_tokens=20,
            cost_usd=0.25, duration=0.8,
        )  # fmt: skip
        agentwatch.record_tool_call("search", duration=0.05)
        if fail:
            raise ValueError("no plan")
        return "ok"

    planner(False)
    planner(False)
    with pytest.raises(ValueError):
        planner(True)
    assert agentwatch.flush(timeout=10)


def test_metrics_are_served_from_the_store_rollups(served: AgentwatchServer) -> None:
    _record_workload()
    text = requests.get(served.url + "/metrics", timeout=5).text

    assert _value(text, "agentwatch_executions_total", agent="planner", status="completed") == 2
    assert _value(text, "agentwatch_executions_total", agent="planner", status="failed") == 1
    assert (
        _value(text, "agentwatch_execution_errors_total", agent="planner", error_type="ValueError")
        == 1
    )
    cost = _value(
        text, "agentwatch_llm_cost_usd_total", agent="planner", model="gpt-4o-mini",
        provider="openai",
    )  # fmt: skip
    assert cost == pytest.approx(0.75)
    tokens = {"agent": "planner", "model": "gpt-4o-mini", "provider": "openai"}
    assert _value(text, "agentwatch_llm_tokens_total", **tokens, type="input") == 300
    assert _value(text, "agentwatch_llm_tokens_total", **tokens, type="output") == 60
    assert (
        _value(
            text, "agentwatch_tool_calls_total", agent="planner", tool="search", status="success"
        )
        == 3
    )
    assert _value(text, "agentwatch_store_up") == 1


def test_histograms_are_complete_and_cumulative(served: AgentwatchServer) -> None:
    _record_workload()
    text = requests.get(served.url + "/metrics", timeout=5).text
    family = next(
        f for f in text_string_to_metric_families(text)
        if f.name == "agentwatch_llm_request_duration_seconds"
    )  # fmt: skip
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    assert len(buckets) == len(agentwatch.contract.LLM_DURATION_BUCKETS) + 1
    values = [s.value for s in buckets]
    assert values == sorted(values), "bucket counts must be cumulative"
    by_le = {s.labels["le"]: s.value for s in buckets}
    assert by_le["0.5"] == 0 and by_le["1.0"] == 3 and by_le["+Inf"] == 3
    count = next(s.value for s in family.samples if s.name.endswith("_count"))
    total = next(s.value for s in family.samples if s.name.endswith("_sum"))
    assert count == 3 and total == pytest.approx(2.4)


def test_counters_survive_a_server_restart_and_a_prune(store_url: str) -> None:
    _record_workload()
    first = _serve(Settings(store_url=store_url))
    before = requests.get(first.url + "/metrics", timeout=5).text
    first.shutdown()

    deleted = agentwatch.EventStore(store_url).delete_old_executions(older_than=time.time() + 60)
    assert deleted == 3
    second = _serve(Settings(store_url=store_url))
    try:
        after = requests.get(second.url + "/metrics", timeout=5).text
    finally:
        second.shutdown()
    for name in ("agentwatch_executions_total", "agentwatch_llm_cost_usd_total"):
        assert {k: v for k, v in _samples(before).items() if k[0] == name} == {
            k: v for k, v in _samples(after).items() if k[0] == name
        }


def test_budget_gauges_count_only_spend_inside_the_current_period(store_url: str) -> None:
    day = 86_400.0
    agentwatch.record_llm_call("gpt-4o", provider="openai", cost_usd=2.0, started_at=NOW - 3600)
    agentwatch.record_llm_call("gpt-4o", provider="openai", cost_usd=5.0, started_at=NOW - day)
    agentwatch.record_llm_call("claude-haiku-4-5", provider="anthropic", cost_usd=1.5,
                               started_at=NOW - 60)  # fmt: skip
    assert agentwatch.flush(timeout=10)
    budgets = (
        Budget(name="daily", period="day", limit_usd=4.0),
        Budget(name="openai-month", period="month", limit_usd=100.0, provider="openai"),
    )
    server = _serve(Settings(store_url=store_url, budgets=budgets), clock=NOW)
    try:
        text = requests.get(server.url + "/metrics", timeout=5).text
        api = requests.get(server.url + "/api/budgets", timeout=5).json()
    finally:
        server.shutdown()

    assert _value(text, "agentwatch_budget_spend_usd", budget="daily", period="day") == 3.5
    assert _value(text, "agentwatch_budget_limit_usd", budget="daily", period="day") == 4.0
    start = datetime(2026, 11, 24, tzinfo=UTC).timestamp()
    assert (
        _value(
            text, "agentwatch_budget_period_start_timestamp_seconds", budget="daily", period="day"
        )
        == start
    )
    assert (
        _value(text, "agentwatch_budget_period_end_timestamp_seconds", budget="daily", period="day")
        == start + day
    )
    assert _value(text, "agentwatch_budget_spend_usd", budget="openai-month", period="month") == 7.0
    daily = next(b for b in api["budgets"] if b["name"] == "daily")
    assert daily["used_ratio"] == pytest.approx(3.5 / 4.0)


def test_openmetrics_is_negotiated_and_carries_eof(served: AgentwatchServer) -> None:
    _record_workload()
    response = requests.get(
        served.url + "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    plain = requests.get(served.url + "/metrics", timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain")


def test_unreachable_store_reports_down_and_not_ready(tmp_path: Path) -> None:
    # A port nobody listens on: the server must start anyway and say the store is down.
    settings = Settings(store_url="postgresql://agentwatch@127.0.0.1:1/none")
    server = _serve(settings)
    try:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert _value(text, "agentwatch_store_up") == 0
        assert requests.get(server.url + "/api/stats", timeout=10).status_code == 503
    finally:
        server.shutdown()


def test_ready_once_the_store_answers(served: AgentwatchServer) -> None:
    assert requests.get(served.url + "/readyz", timeout=5).status_code == 200


def test_json_api_lists_and_fetches_executions(served: AgentwatchServer) -> None:
    _record_workload()
    listing = requests.get(served.url + "/api/executions?status=failed", timeout=5).json()
    assert [e["status"] for e in listing["executions"]] == ["failed"]
    failed = listing["executions"][0]
    detail = requests.get(served.url + f"/api/executions/{failed['id']}", timeout=5).json()
    assert detail["error_type"] == "ValueError"
    assert [e["kind"] for e in detail["events"]] == ["llm_call", "tool_call"]
    stats = requests.get(served.url + "/api/stats?agent=planner", timeout=5).json()
    assert stats["total_executions"] == 3 and stats["failed"] == 1
    assert requests.get(served.url + "/api/executions/exec_nope", timeout=5).status_code == 404


@pytest.mark.parametrize("route", ["/api/v1/executions", "/api/executions"])
@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=abc",
        "limit=1001",
        "since=fortnight",
        "status=exploded",
        "since=nan",
        "since=1h&until=2h",
        "since=" + "9" * 400,
    ],
)
def test_bad_query_parameters_get_a_400_with_a_reason(
    served: AgentwatchServer, route: str, query: str
) -> None:
    response = requests.get(served.url + route + "?" + query, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]


def test_server_binds_to_localhost_by_default(store_url: str) -> None:
    server = make_server(Settings(store_url=store_url), port=0)
    try:
        assert server.host == "127.0.0.1"
    finally:
        server.close()


class _Refused(StoreError):
    """What the store layer raises for a foreign or missing store (StoreNotFound & co)."""


def _refusing_opener(url: str) -> Any:
    raise _Refused(f"no agentwatch store at {url}")


def test_a_refused_store_is_not_ready_and_readyz_reveals_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    server = make_server(Settings(store_url=url), port=0, opener=_refusing_opener)
    server.start()
    try:
        ready = requests.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.text == "not ready\n"
        assert requests.get(server.url + "/healthz", timeout=5).text == "ok\n"
        text = requests.get(server.url + "/metrics", timeout=5).text
        assert _value(text, "agentwatch_store_up") == 0
        api = requests.get(server.url + "/api/v1/executions", timeout=5)
        assert api.status_code == 503 and api.json() == {"error": "store unavailable"}
    finally:
        server.shutdown()


def test_the_store_password_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://agentwatch:hunter2-secret@127.0.0.1:1/none?connect_timeout=2"
    server = _serve(Settings(store_url=url))
    try:
        with caplog.at_level(logging.INFO, logger="agentwatch"):
            assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
            requests.get(server.url + "/metrics", timeout=10)
    finally:
        server.shutdown()
    assert "unavailable" in caplog.text
    assert "hunter2" not in caplog.text
    assert "***" in caplog.text
    assert "hunter2" not in server.access.masked_url


def test_a_mistyped_or_foreign_sqlite_path_is_refused_not_created(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    missing = tmp_path / "typo" / "telemetry.db"
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = foreign.read_bytes()
    for path in (missing, foreign):
        server = _serve(Settings(store_url=f"sqlite:///{path}"))
        try:
            with caplog.at_level(logging.WARNING, logger="agentwatch"):
                ready = requests.get(server.url + "/readyz", timeout=10)
            assert (ready.status_code, ready.text) == (503, "not ready\n")
            text = requests.get(server.url + "/metrics", timeout=10).text
            assert _value(text, "agentwatch_store_up") == 0
        finally:
            server.shutdown()
    assert not missing.exists() and not missing.parent.exists(), "serve never creates a store"
    assert foreign.read_bytes() == before, "serve never adds its tables to a foreign file"
    assert "StoreNotFound" in caplog.text and "IncompatibleStore" in caplog.text


def test_a_new_agents_failure_series_is_served_at_zero_from_its_first_run(
    served: AgentwatchServer,
) -> None:
    """Written by the real writer, read back through serve's /metrics in both formats: the
    failure series of a new agent and model exist at 0 before their first failure, so
    Prometheus' increase() sees that failure."""

    @agentwatch.observe(name="newcomer")
    def newcomer(fail: bool) -> None:
        agentwatch.record_llm_call(
            "brand-new", provider="openai", input_tokens=1, output_tokens=1,
            status="failure" if fail else "success", cost_usd=0.01,
        )  # fmt: skip
        if fail:
            raise ValueError("first failure")

    newcomer(False)
    assert agentwatch.flush(timeout=10)
    call = {"agent": "newcomer", "model": "brand-new", "provider": "openai"}
    for accept in ("text/plain", "application/openmetrics-text"):
        text = requests.get(served.url + "/metrics", headers={"Accept": accept}, timeout=5).text
        assert _value(text, "agentwatch_executions_total", agent="newcomer", status="failed") == 0
        assert _value(text, "agentwatch_llm_requests_total", **call, status="failure") == 0

    with pytest.raises(ValueError):
        newcomer(True)
    assert agentwatch.flush(timeout=10)
    text = requests.get(served.url + "/metrics", timeout=5).text
    assert _value(text, "agentwatch_executions_total", agent="newcomer", status="failed") == 1
    assert _value(text, "agentwatch_executions_total", agent="newcomer", status="completed") == 1
    assert _value(text, "agentwatch_llm_requests_total", **call, status="failure") == 1
    lines = [line for line in text.splitlines() if line.startswith("agentwatch_executions_total{")]
    assert len(lines) == 2, lines


def test_serve_and_the_in_process_registry_expose_the_same_outcome_series(
    store_url: str, served: AgentwatchServer
) -> None:
    """One workload, both expositions: the same status series, zeros included."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)

    @agentwatch.observe(name="worker")
    def worker(agent_fails: bool, call_fails: bool, model: str) -> None:
        agentwatch.record_llm_call(
            model, provider="openai", input_tokens=1, output_tokens=1, cost_usd=0.01,
            status="failure" if call_fails else "success",
        )  # fmt: skip
        if agent_fails:
            raise ValueError("boom")

    worker(False, False, "m-ok")
    with pytest.raises(ValueError):
        worker(True, True, "m-bad")
    agentwatch.record_llm_call("m-outside", provider="openai", status="failure")
    assert agentwatch.flush(timeout=10)

    families = ("agentwatch_executions_total", "agentwatch_llm_requests_total")

    def outcomes(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {k: v for k, v in _samples(text).items() if k[0] in families}

    in_process = outcomes(generate_latest(registry).decode())
    served_text = requests.get(served.url + "/metrics", timeout=5).text
    assert outcomes(served_text) == in_process
    zeros = {
        (labels["agent"], labels["model"], labels["status"])
        for (_, frozen), value in in_process.items()
        if value == 0 and (labels := dict(frozen))
    }
    assert zeros == {
        ("worker", "m-ok", "failure"),
        ("worker", "m-bad", "success"),
        ("none", "m-outside", "success"),
    }
