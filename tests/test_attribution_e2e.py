"""Cost attribution and budget enforcement end to end, with several real processes.

Four worker processes (`tests/_attribution_worker.py`) make real litellm calls (offline,
`mock_response=`) into one store: two for team `search`, two for team `ads`, each for one of
two customers (named with litellm's `user=`, or its `metadata` for calls made outside a run).
The config declares `team` and `customer` and an enforcing daily budget for team `search`.
Then a real `agentwatch serve` reads the store, and the test checks on its /metrics that:

- spend by team and by customer equals litellm's own computed cost of the calls each group
  made (`litellm.completion_cost`, summed by the workers);
- the budget stopped `search`'s calls once spent, and only those: `ads` was never refused;
- no `search` call started later than the documented delay after the limit was reached
  (`2 x budget_refresh_interval` plus a query and scheduling allowance), and the overshoot is
  within the documented bound;
- refusals, the exact spend, the remaining budget and the exhaustion time are exposed.

The Prometheus rules and dashboard panels for attribution are run against a real Prometheus
by tests/test_grafana_dashboards.py (the cluster mixin config lists `team` and `customer`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.store import open_store
from support.binaries import start_agentwatch_serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WORKER = Path(__file__).with_name("_attribution_worker.py")
#: Seconds between two reads of the store by each enforcing process.
REFRESH = 0.2
#: Seconds between two calls of one worker.
PACE = 0.1
#: The documented delay before a process sees another's spend: two refresh intervals, plus an
#: allowance for one store query, litellm's logging thread and a loaded 2-core machine.
SEEN_WITHIN = 2 * REFRESH + 0.6
CALLS = 30
#: (team, customer, calls outside a run too).
WORKERS = (
    ("search", "acme", False),
    ("search", "globex", False),
    ("ads", "acme", True),
    ("ads", "globex", True),
)


def _call_cost() -> float:
    """litellm's price of one worker call (same model, prompt and answer)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    sys.path.insert(0, str(WORKER.parent))
    try:
        from _attribution_worker import ANSWER, MESSAGES
    finally:
        sys.path.pop(0)
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=ANSWER)
    return float(litellm.completion_cost(completion_response=response))


def _start(url: str, config: Path, home: Path, team: str, customer: str, outside: bool) -> Any:
    argv = [sys.executable, str(WORKER), "--store", url, "--config", str(config), "--team",
            team, "--customer", customer, "--calls", str(CALLS), "--pace", str(PACE)]  # fmt: skip
    if outside:
        argv.append("--outside")
    env = {**os.environ, "AGENTWATCH_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((dict(sample.labels), sample.value))
    return found


def _sum_by(samples: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for labels, value in samples:
        totals[labels.get(label, "")] += value
    return dict(totals)


def test_spend_by_team_and_customer_and_an_enforcing_budget_across_processes(
    backend_url: str, tmp_path: Path
) -> None:
    cost = _call_cost()
    limit = 15 * cost  # about half of what team search attempts
    config = tmp_path / "agentwatch.yaml"
    config.write_text(
        "attribution:\n"
        "  team: {max_values: 10}\n"
        "  customer: {max_values: 10, litellm_user: true}\n"
        "budgets:\n"
        f"  - {{name: search-cap, period: day, limit_usd: {limit!r}, team: search, "
        "enforce: true}\n"
        f"budget_refresh_interval: {REFRESH}\n"
    )
    store = open_store(backend_url)
    store.migrate()
    store.close()

    workers = [_start(backend_url, config, tmp_path / f"home{i}", *spec)
               for i, spec in enumerate(WORKERS)]  # fmt: skip
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline().strip()
            assert line == "ready", (line, worker.stderr.read() if worker.stderr else "")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=180)
            assert worker.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(r["flushed"] for r in reports), reports

    by_team: dict[str, float] = defaultdict(float)
    by_customer: dict[str, float] = defaultdict(float)
    refused: dict[str, int] = defaultdict(int)
    for (team, customer, _), report in zip(WORKERS, reports, strict=True):
        by_team[team] += report["cost"]
        by_customer[customer] += report["cost"]
        refused[team] += report["refused"]

    # The budget stopped team search, and only team search.
    assert refused["ads"] == 0
    assert sum(r["made"] for r, w in zip(reports, WORKERS, strict=True) if w[0] == "ads") == (
        2 * CALLS
    )
    assert refused["search"] > 0
    assert by_team["search"] >= limit  # it did reach the limit before refusing

    with start_agentwatch_serve(backend_url, tmp_path / "serve", config=config) as serve:
        metrics = _scrape(serve.url)

    # serve's cost by team and by customer is litellm's own cost per group.
    spend = metrics["agentwatch_llm_cost_usd_total"]
    assert _sum_by(spend, "team") == pytest.approx(dict(by_team), rel=1e-9, abs=1e-12)
    assert _sum_by(spend, "customer") == pytest.approx(dict(by_customer), rel=1e-9, abs=1e-12)
    requests_by_team = _sum_by(metrics["agentwatch_llm_requests_total"], "team")
    assert requests_by_team == {
        "search": sum(r["made"] for r, w in zip(reports, WORKERS, strict=True) if w[0] == "search"),
        "ads": 2 * CALLS,
    }

    # Refusals are counted where serve shows them, for this budget only.
    refusals = _sum_by(metrics["agentwatch_llm_refused_requests_total"], "budget")
    assert refusals == {"search-cap": refused["search"]}

    # The exact spend, the remaining budget and the exhaustion time, all finite.
    def gauge(name: str) -> float:
        ((labels, value),) = metrics[name]
        assert labels == {"budget": "search-cap", "period": "day"}
        assert math.isfinite(value)
        return value

    assert gauge("agentwatch_budget_spend_usd") == pytest.approx(by_team["search"], rel=1e-9)
    assert gauge("agentwatch_budget_remaining_usd") == 0
    assert gauge("agentwatch_budget_projected_exhaustion_timestamp_seconds") <= time.time()

    # The overshoot: no search call started later than the documented delay after the spend
    # reached the limit, and the excess stays within the documented bound.
    reader = open_store(backend_url, create=False)
    try:
        calls = [
            e
            for e in reader.events(limit=None)
            if e.kind == "llm_call" and e.attribution.get("team") == "search"
        ]
    finally:
        reader.close()
    calls.sort(key=lambda e: e.started_at + (e.duration or 0.0))
    total = 0.0
    reached_at = None
    for event in calls:
        total += event.cost_usd or 0.0
        if reached_at is None and total >= limit:
            reached_at = event.started_at + (event.duration or 0.0)
    assert reached_at is not None
    late = [e.started_at - reached_at for e in calls if e.started_at > reached_at + SEEN_WITHIN]
    assert not late, f"calls started {late} s after the limit was reached"
    processes = sum(1 for w in WORKERS if w[0] == "search")
    bound = processes * (math.ceil(SEEN_WITHIN / PACE) + 1) * cost
    assert total - limit <= bound, (total, limit, bound)
