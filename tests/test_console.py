"""The console without a browser: routes Grafana and alerts link to exist, the packaged
runbooks equal docs/runbooks.md, filters and id prefixes on both backends, bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from starlette.routing import Match, Route

from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Settings
from agentwatch.console import ConsoleContext, console_routes
from agentwatch.console.runbooks import anchor, render_markdown, runbooks_html
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.server import AgentwatchServer, make_server
from agentwatch.store import Store, open_store
from agentwatch.store.rows import RunSearch
from conftest import Records

ROOT = Path(__file__).resolve().parent.parent


def _routes() -> list[Route]:
    return console_routes(ConsoleContext(lane=None))  # type: ignore[arg-type]


def _resolves(url: str) -> bool:
    """True when the path of `url` (Grafana variables filled in) matches a console route."""
    filled = re.sub(r"\$\$?\{[^}]*\}", "x", url)
    path = urlsplit(filled).path
    scope = {"type": "http", "path": path, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in _routes())


def test_grafana_exemplar_destination_and_data_links_point_to_console_routes() -> None:
    datasource = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    (source,) = datasource["datasources"]
    destinations = source["jsonData"]["exemplarTraceIdDestinations"]
    assert any(d["name"] == "execution_id" for d in destinations)
    for destination in destinations:
        assert "/ui/runs/" in destination["url"] and _resolves(destination["url"])
    urls = []
    for dashboard in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        text = dashboard.read_text()
        urls += [u for u in re.findall(r'"url":\s*"([^"]+)"', text) if "/ui" in u]
        json.loads(text)
    assert len(urls) >= 5
    unresolved = [u for u in urls if not _resolves(u)]
    assert not unresolved, unresolved
    # Query parameters the links send are ones the runs list accepts.
    from agentwatch.console.routes import RUNS_PARAMS

    for url in urls:
        if "/ui/runs?" in url:
            names = {p.split("=")[0] for p in url.split("?", 1)[1].split("&")}
            assert names <= set(RUNS_PARAMS), url


def test_alert_console_and_runbook_links_resolve() -> None:
    rules = yaml.safe_load((ROOT / "prometheus/rules/agentwatch-alerts.yml").read_text())
    html = runbooks_html()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            annotations = rule["annotations"]
            runbook = annotations["runbook_url"]
            assert _resolves(runbook.split("#")[0]), runbook
            assert f'id="{runbook.split("#")[1]}"' in html, runbook
            if "console_url" in annotations:
                console = re.sub(r"\{\{[^}]*\}\}", "x", annotations["console_url"])
                assert _resolves(console), annotations["console_url"]


def test_packaged_runbooks_equal_docs() -> None:
    packaged = ROOT / "exporter/agentwatch/console/runbooks.md"
    assert packaged.read_text() == (ROOT / "docs/runbooks.md").read_text(), (
        "copy docs/runbooks.md to exporter/agentwatch/console/runbooks.md"
    )


def test_markdown_escapes_raw_html_and_anchors_headings() -> None:
    html = render_markdown("## AgentwatchBudgetExhausted\n\n<script>alert(1)</script>\n")
    assert '<h2 id="agentwatchbudgetexhausted">' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert anchor("Useful everywhere!") == "useful-everywhere"


@pytest.fixture
def filled(backend_url: str, store: Store, records: Records) -> Iterator[str]:
    if True:
        fail = records.execution(
            "shop", 1_000.0, 2.0, error_type="TimeoutError", error_message="50% of_calls"
        )
        slow = records.execution("shop", 1_010.0, 9.0, events=[records.llm(1_010.0,
                                 model="gpt-4o", cost_usd=0.5)])  # fmt: skip
        other = records.execution("other", 1_020.0, 1.0)
        items = [ExecutionFinished(e) for e in (fail, slow, other)]
        store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
    yield backend_url


def _store_ids(url: str) -> list[str]:
    with open_store(url) as store:
        return sorted(r.id for r in store.executions(limit=None))


def test_search_runs_filters_and_orders(filled: str) -> None:
    with open_store(filled) as store:
        by_text = store.search_runs(RunSearch(text="50%"))
        assert [r.agent for r in by_text] == ["shop"]
        assert store.search_runs(RunSearch(text="50_")) == []  # `_` is text, not a wildcard
        assert len(store.search_runs(RunSearch(text="OF_CALLS"))) == 1  # case-insensitive
        assert [r.error_type for r in store.search_runs(RunSearch(error_type="TimeoutError"))] == [
            "TimeoutError"
        ]
        assert len(store.search_runs(RunSearch(model="gpt-4o"))) == 1
        assert len(store.search_runs(RunSearch(min_cost=0.4))) == 1
        slowest = store.search_runs(RunSearch(sort="duration"), limit=1)
        assert slowest[0].duration == pytest.approx(9.0)
        after = (slowest[0].duration or 0.0, slowest[0].id)
        rest = store.search_runs(RunSearch(sort="duration"), after=after)
        assert [r.duration for r in rest] == pytest.approx([2.0, 1.0])
        ids = store.ids_starting_with("exec_0000", limit=10)
        assert len(ids) == 3
        assert store.ids_starting_with("exec_%") == []
        points = store.run_trend(since=1_000.0, until=1_030.0, step=10.0, agent="shop")
        assert [(p.start, p.count, p.failed) for p in points] == [(1_000.0, 1, 1), (1_010.0, 1, 0)]
        calls = store.call_trend(since=1_000.0, until=1_030.0, step=10.0, model="gpt-4o")
        assert [(p.start, p.count) for p in calls] == [(1_010.0, 1)]
        assert store.top_errors(agent="shop")[0].error_type == "TimeoutError"


@pytest.fixture
def served(filled: str) -> Iterator[AgentwatchServer]:
    server = make_server(Settings(store_url=filled), port=0, clock=lambda: 2_000.0,
                         external_url="https://aw.example.com/watch")  # fmt: skip
    server.start()
    yield server
    server.shutdown()


def test_pages_on_both_backends(served: AgentwatchServer) -> None:
    base = served.url
    page = requests.get(base + "/ui/runs?since=0&agent=shop&sort=duration", timeout=10)
    assert page.status_code == 200
    assert page.text.index("exec_000002") < page.text.index("exec_000001")
    assert 'href="/watch/ui/runs/exec_000002"' in page.text  # links under the external URL
    prefix = requests.get(base + "/ui/runs/exec_00000", allow_redirects=False, timeout=10)
    assert prefix.status_code == 404 and "exec_000003" in prefix.text  # ambiguous: candidates
    one = requests.get(base + "/ui/runs/exec_000003x", allow_redirects=False, timeout=10)
    assert one.status_code == 404
    for path in ("/ui/?since=0", "/ui/agents/shop?since=0", "/ui/models/gpt-4o?since=0",
                 "/ui/runs/exec_000002", "/ui/runbooks"):  # fmt: skip
        assert requests.get(base + path, timeout=10).status_code == 200, path
    assert served.console_url == "https://aw.example.com/watch"


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday-ish",
        "status=running",
        "min_cost=-1",
        "min_cost=nan",
        "sort=random",
        "cursor=AAAA",
        "agnet=shop",
        "since=2h&until=3h",
    ],
)
def test_bad_runs_queries_are_400_pages(served: AgentwatchServer, query: str) -> None:
    response = requests.get(served.url + "/ui/runs?" + query, timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="message"' in response.text


def test_monitor_trace_prints_the_console_url_when_one_is_configured(
    sqlite_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from agentwatch.cli import cli

    with open_store(sqlite_url) as store:
        store.migrate()
        run = records.execution("shop", 1_000.0)
        store.write_batch(RollupBuilder(CardinalityGuard(1000)).build([ExecutionFinished(run)]))
    monkeypatch.delenv("AGENTWATCH_EXTERNAL_URL", raising=False)
    args = ["monitor", "trace", "--store", sqlite_url, run.id]
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 0 and "/ui/runs/" not in plain.output
    monkeypatch.setenv("AGENTWATCH_EXTERNAL_URL", "https://aw.example.com/")
    linked = CliRunner().invoke(cli, args)
    assert linked.exit_code == 0, linked.output
    assert f"console: https://aw.example.com/ui/runs/{run.id}" in linked.output
    monkeypatch.setenv("AGENTWATCH_EXTERNAL_URL", "ftp://nope")
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code != 0 and "http(s) URL" in bad.output and "Traceback" not in bad.output
