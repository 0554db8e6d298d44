"""The JSON API v1: one record shape, bounded cursor pages, CLI time forms, and its OpenAPI doc.

Runs on both store backends. The OpenAPI document is checked three ways: valid OpenAPI 3
(openapi-spec-validator), one path per route and one route per path, and the committed
docs/openapi.json equal to what the code generates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate
from starlette.routing import Route

from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Budget, Settings
from agentwatch.model import ExecutionFinished, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.server import AgentwatchServer, make_server
from agentwatch.server.api import MAX_PAGE, decode_cursor, encode_cursor
from agentwatch.server.openapi import document, render
from agentwatch.server.records import EVENT_FIELDS, EXECUTION_FIELDS
from agentwatch.store import Store
from conftest import Records

DOCS = Path(__file__).resolve().parent.parent / "docs"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()


def write(store: Store, *items: WriterItem) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))


@pytest.fixture
def filled(store: Store, records: Records) -> Store:
    """25 runs of two agents, three of them sharing one start time (keyset ties)."""
    items: list[WriterItem] = []
    for i in range(25):
        started = T0 + (i // 3 if i < 3 else i) * 60.0  # runs 0, 1, 2 start together
        agent = "planner" if i % 2 == 0 else "writer"
        error = "TimeoutError" if i % 5 == 0 else None
        events = [records.llm(started + 0.1, cost_usd=0.01 * (i + 1)), records.tool(started + 0.2)]
        items.append(
            ExecutionFinished(
                records.execution(agent, started, duration=2.0, events=events, error_type=error,
                                  error_message="dsn timed out" if error else None)
            )
        )  # fmt: skip
    write(store, *items)
    return store


@pytest.fixture
def api(filled: Store, backend_url: str) -> Iterator[AgentwatchServer]:
    budgets = (Budget(name="monthly", period="month", limit_usd=10.0),)
    server = make_server(
        Settings(store_url=backend_url, budgets=budgets), port=0, clock=lambda: T0 + 3600
    )
    server.start()
    yield server
    server.shutdown()


def _get(server: AgentwatchServer, path: str, **params: Any) -> requests.Response:
    return requests.get(server.url + path, params=params, timeout=10)


def test_execution_records_have_the_shared_shape(api: AgentwatchServer) -> None:
    page = _get(api, "/api/v1/executions", limit=3).json()
    record = page["executions"][0]
    assert tuple(record) == EXECUTION_FIELDS
    assert record["agent"] in {"planner", "writer"}
    assert record["started_at"].endswith("+00:00")
    assert datetime.fromisoformat(record["started_at"]).timestamp() == T0 + 24 * 60
    assert record["duration_seconds"] == pytest.approx(2.0)
    assert record["cost_usd"] == pytest.approx(0.25)
    assert record["llm_calls"] == 1 and record["tool_calls"] == 1


def test_cursor_pages_walk_every_run_once_in_order(api: AgentwatchServer, filled: Store) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        body = _get(api, "/api/v1/executions", **params).json()
        pages += 1
        seen.extend(e["id"] for e in body["executions"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = [e.id for e in filled.executions(limit=None)]
    assert seen == expected and len(seen) == 25
    assert pages == 4


def test_filters_accept_the_cli_time_forms(api: AgentwatchServer) -> None:
    iso = datetime.fromtimestamp(T0 + 20 * 60, tz=UTC).isoformat()
    by_iso = _get(api, "/api/v1/executions", since=iso, limit=100).json()["executions"]
    by_epoch = _get(api, "/api/v1/executions", since=str(T0 + 20 * 60)).json()["executions"]
    # The server's clock is T0 + 1h: "40m" ago is T0 + 20 min.
    by_duration = _get(api, "/api/v1/executions", since="40m").json()["executions"]
    assert (
        [e["id"] for e in by_iso] == [e["id"] for e in by_epoch] == [e["id"] for e in by_duration]
    )
    assert len(by_iso) == 5
    failed = _get(api, "/api/v1/executions", status="failed", agent="planner").json()
    assert {(e["status"], e["agent"]) for e in failed["executions"]} == {("failed", "planner")}


def test_one_execution_comes_with_its_events(api: AgentwatchServer) -> None:
    first = _get(api, "/api/v1/executions", limit=1).json()["executions"][0]
    detail = _get(api, f"/api/v1/executions/{first['id']}").json()
    assert {k: detail[k] for k in EXECUTION_FIELDS} == first
    assert [e["kind"] for e in detail["events"]] == ["llm_call", "tool_call"]
    assert tuple(detail["events"][0]) == EVENT_FIELDS
    assert detail["events"][0]["execution_id"] == first["id"]
    assert detail["events"][0]["offset_seconds"] == pytest.approx(0.1)
    assert detail["child_ids"] == []
    missing = _get(api, "/api/v1/executions/exec_nope")
    assert missing.status_code == 404 and missing.json()["error"]


def test_stats_agents_models_and_budgets(api: AgentwatchServer) -> None:
    stats = _get(api, "/api/v1/stats", agent="planner").json()
    assert stats["runs"] == 13 and stats["failed_runs"] == 3
    agents = _get(api, "/api/v1/agents").json()
    assert {a["agent"]: a["runs"] for a in agents["agents"]} == {"planner": 13, "writer": 12}
    assert {a["agent"]: a["llm_calls"] for a in agents["agents"]} == {"planner": 13, "writer": 12}
    assert agents["truncated"] is False
    assert _get(api, "/api/v1/agents", limit=1).json()["truncated"] is True
    models = _get(api, "/api/v1/models").json()["models"]
    assert models[0]["model"] == "gpt-4o-mini" and models[0]["calls"] == 25
    budgets = _get(api, "/api/v1/budgets").json()["budgets"]
    assert budgets[0]["name"] == "monthly"
    assert budgets[0]["period_start"] == "2026-11-01T00:00:00.000+00:00"
    assert budgets[0]["spend_usd"] == pytest.approx(sum(0.01 * (i + 1) for i in range(25)))


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/v1/executions", "agnet=planner", "unknown parameter 'agnet'"),
        ("/api/v1/executions", f"limit={MAX_PAGE + 1}", f"between 1 and {MAX_PAGE}"),
        ("/api/v1/executions", "cursor=not-ours", "cursor"),
        ("/api/v1/executions", "cursor=WzEsMl0", "cursor"),
        ("/api/v1/executions", "since=2026-13-45", "since"),
        ("/api/v1/stats", "until=yesterday&since=today", "earlier than"),
        ("/api/v1/budgets", "x=1", "unknown parameter"),
        ("/api/v1/agents", "limit=-1", "limit"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(
    api: AgentwatchServer, path: str, query: str, message: str
) -> None:
    response = requests.get(f"{api.url}{path}?{query}", timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_attacker_strings_are_inert(api: AgentwatchServer, filled: Store) -> None:
    hostile = "planner' OR '1'='1"
    assert _get(api, "/api/v1/executions", agent=hostile).json()["executions"] == []
    assert _get(api, "/api/v1/executions/' OR 1=1 --").status_code == 404
    assert filled.count_executions() == 25


def test_cursor_round_trip_and_forgery() -> None:
    assert decode_cursor(encode_cursor(1.5, "exec_1")) == (1.5, "exec_1")


def test_old_routes_answer_in_their_old_shape_with_a_deprecation_header(
    api: AgentwatchServer,
) -> None:
    old = _get(api, "/api/executions", limit=2)
    assert old.status_code == 200
    assert old.headers["Deprecation"].startswith("@")
    assert 'rel="successor-version"' in old.headers["Link"]
    assert "agent_name" in old.json()["executions"][0]
    first = old.json()["executions"][0]["id"]
    detail = _get(api, f"/api/executions/{first}")
    assert detail.headers["Deprecation"] and detail.json()["events"]
    for path in ("/api/stats", "/api/budgets"):
        response = _get(api, path)
        assert response.status_code == 200 and response.headers["Deprecation"]
    assert "Deprecation" not in _get(api, "/api/v1/stats").headers


def test_big_pages_are_gzipped_when_the_client_accepts_it(api: AgentwatchServer) -> None:
    response = requests.get(
        api.url + "/api/v1/executions?limit=25", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(response.json()["executions"]) == 25


def test_openapi_document_is_valid_openapi_3() -> None:
    validate(document())


def test_openapi_document_lists_exactly_the_routes(api: AgentwatchServer) -> None:
    served = requests.get(api.url + "/api/openapi.json", timeout=10).json()
    assert served == json.loads(render())
    app = api.http._server.config.app.app  # the Starlette app behind the web guard
    # The HTML console (/ui/...) is for people, not part of the documented API.
    routes = {r.path for r in app.routes if isinstance(r, Route) and not r.path.startswith("/ui")}
    assert routes == set(served["paths"])


def test_committed_openapi_json_is_current() -> None:
    committed = (DOCS / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/openapi.json is stale: python -m agentwatch.server.openapi > docs/openapi.json"
    )


def test_api_doc_names_every_route() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for path in document()["paths"]:
        assert f"`{path.replace('{execution_id}', '{id}')}`" in text or f"`{path}`" in text, path
