"""One workload, one answer: every reader counts the same runs, calls and cost.

The demo workload (real litellm, mocked network: nested runs, an observed tool, failures,
an unpriced model) plus a few runs whose tool makes an LLM call and fails, and a call
outside any run. Then, for no filter, `--status failed` and `--agent researcher`:
`monitor stats`, `monitor list --json`, `monitor export`, `EventStore`, the JSON API of
`agentwatch serve`, the store's rollup counters and the in-process registry must agree
(docs/metrics.md, "Runs, tool calls and LLM calls").

Before this was fixed the same workload showed three run counts: the demo 40 (top-level
only), stats and metrics 53 (agent runs), list and export 67 (observed tools counted as
runs), and `list --status failed` 5 against 4 in stats.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
import requests
from click.testing import CliRunner, Result
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch.cli import cli
from agentwatch.config import Settings
from agentwatch.demo import DemoReport, run_demo
from agentwatch.server import make_server, serve_in_thread
from agentwatch.store.base import RollupRow

pytestmark = pytest.mark.slow  # end to end: a demo workload read back through every surface

#: (label filter of the counters, CLI flags, EventStore / API keyword arguments)
FILTERS = [
    pytest.param({}, [], {}, id="everything"),
    pytest.param({"status": "failed"}, ["--status", "failed"], {"status": "failed"}, id="failed"),
    pytest.param(
        {"agent": "researcher"}, ["--agent", "researcher"], {"agent": "researcher"}, id="agent"
    ),
]


@dataclass
class Recorded:
    url: str
    report: DemoReport
    #: The in-process registry's samples, read before the runtime closed.
    process: list[tuple[str, dict[str, str], float]]
    rollups: list[RollupRow]
    extra_runs: int = 3
    extra_failed: int = 1


def _extra_workload() -> None:
    """Runs whose observed tool makes an LLM call (and once fails), and an orphan call."""

    @agentwatch.observe(kind="tool", name="rerank")
    def rerank(fail: bool) -> None:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=5, cost_usd=0.001
        )
        if fail:
            raise TimeoutError("rerank timed out")

    @agentwatch.observe(name="researcher")
    def researcher(fail: bool) -> None:
        rerank(fail)

    researcher(False)
    researcher(False)
    with pytest.raises(TimeoutError):
        researcher(True)
    # Outside any run, on a model nobody prices: counted, billed to agent "none", unpriced.
    agentwatch.record_llm_call("acme-7b", provider="hosted_vllm", input_tokens=3, output_tokens=4)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch = pytest.MonkeyPatch()
    clean_environment(monkeypatch, home)
    monkeypatch.setenv("COLUMNS", "200")
    url = f"sqlite:///{home / 'agree.db'}"
    registry = CollectorRegistry()
    agentwatch.configure(store_url=url, registry=registry)
    try:
        report = run_demo(runs=30, seed=3)
        _extra_workload()
        assert agentwatch.flush(timeout=30)
        process = [(s.name, s.labels, s.value) for m in registry.collect() for s in m.samples]
    finally:
        agentwatch.close()
    with agentwatch.EventStore(url) as store:
        rollups = store.read_rollups()
    yield Recorded(url, report, process, rollups)
    monkeypatch.undo()


def _cli(recorded: Recorded, *args: str) -> Result:
    command, *rest = args
    result = CliRunner().invoke(cli, ["monitor", command, "--store", recorded.url, *rest])
    assert result.exit_code == 0, result.output
    return result


def _counter(samples: Iterable[tuple[str, dict[str, str], float]], name: str,
             **labels: str) -> float:  # fmt: skip
    return sum(
        value
        for sample, sample_labels, value in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def _rollup(recorded: Recorded, name: str, **labels: str) -> float:
    return _counter(((r.sample, r.labels, r.value) for r in recorded.rollups), name, **labels)


def _in_process(recorded: Recorded, name: str, **labels: str) -> float:
    return _counter(recorded.process, name, **labels)


def test_the_workload_has_what_the_comparison_needs(recorded: Recorded) -> None:
    """Nested runs, observed tools and failures, or the comparison below proves little."""
    with agentwatch.EventStore(recorded.url) as store:
        assert store.count(kind="tool") > 0
        summary = store.summary()
    assert summary.nested_runs > 0 and summary.failed_runs > 0 and summary.unpriced_calls > 0


@pytest.mark.parametrize(("labels", "flags", "kwargs"), FILTERS)
def test_every_reader_counts_the_same_runs(
    recorded: Recorded, labels: dict[str, str], flags: list[str], kwargs: dict[str, str]
) -> None:
    expected = _rollup(recorded, "agentwatch_executions_total", **labels)
    assert expected > 0
    assert _in_process(recorded, "agentwatch_executions_total", **labels) == expected

    listed = json.loads(_cli(recorded, "list", "--json", "--limit", "100000", *flags).stdout)
    assert len(listed) == expected
    assert {r["kind"] for r in listed} == {"agent"}
    exported = _cli(recorded, "export", "--format", "jsonl", *flags).stdout.splitlines()
    assert len(exported) == expected
    assert {json.loads(line)["id"] for line in exported} == {r["id"] for r in listed}

    stats_flags = [f for f in flags if f != "--status" and f != "failed"]
    stats = json.loads(_cli(recorded, "stats", "--json", *stats_flags).stdout)
    counted = stats["failed_runs"] if labels.get("status") == "failed" else stats["runs"]
    assert counted == expected

    with agentwatch.EventStore(recorded.url) as store:
        assert store.count(**kwargs) == expected
        assert len(store.executions(**kwargs, limit=None)) == expected
        assert store.count_executions(kwargs.get("agent"), kwargs.get("status")) == expected

    server = make_server(Settings(store_url=recorded.url), port=0)
    serve_in_thread(server)
    try:
        listed_by_api: list[str] = []
        query: dict[str, str] = {"limit": "1000", **kwargs}
        while True:  # the API pages with a cursor (at most 1,000 runs a page)
            page = requests.get(server.url + "/api/v1/executions", params=query, timeout=10)
            body = page.json()
            listed_by_api.extend(r["id"] for r in body["executions"])
            if body["next_cursor"] is None:
                break
            query["cursor"] = body["next_cursor"]
        assert len(listed_by_api) == expected
        agent = {"agent": kwargs["agent"]} if "agent" in kwargs else {}
        api_stats = requests.get(server.url + "/api/v1/stats", params=agent, timeout=10).json()
        key = "failed_runs" if labels.get("status") == "failed" else "runs"
        assert api_stats[key] == expected
    finally:
        server.shutdown()


def test_the_demo_line_counts_runs_as_stats_does(recorded: Recorded) -> None:
    stats = json.loads(_cli(recorded, "stats", "--json").stdout)
    report = recorded.report
    assert stats["runs"] == report.runs + recorded.extra_runs
    assert stats["top_level_runs"] == report.top_level_runs + recorded.extra_runs
    assert stats["nested_runs"] == report.nested_runs
    assert stats["failed_runs"] == report.failed_runs + recorded.extra_failed
    assert report.top_level_runs == 30


@pytest.mark.parametrize("agent", [None, "researcher", "none"])
def test_calls_tokens_and_cost_agree_between_stats_cost_and_counters(
    recorded: Recorded, agent: str | None
) -> None:
    flags = ["--agent", agent] if agent else []
    labels = {"agent": agent} if agent else {}
    stats = json.loads(_cli(recorded, "stats", "--json", *flags).stdout)
    cost = json.loads(_cli(recorded, "cost", "--json", "--since", "1d", *flags).stdout)

    requests_total = _rollup(recorded, "agentwatch_llm_requests_total", **labels)
    assert requests_total > 0
    assert stats["llm_calls"] == requests_total == sum(r["calls"] for r in cost["rows"])
    assert _in_process(recorded, "agentwatch_llm_requests_total", **labels) == requests_total

    unpriced = _rollup(recorded, "agentwatch_llm_unpriced_requests_total")
    if agent is None:
        assert stats["unpriced_calls"] == unpriced == cost["unpriced_calls"]
        assert stats["unpriced_calls"] > 0

    spend = _rollup(recorded, "agentwatch_llm_cost_usd_total", **labels)
    assert (stats["cost_usd"] or 0.0) == pytest.approx(spend)
    assert cost["total_cost_usd"] == pytest.approx(spend)
    assert _in_process(recorded, "agentwatch_llm_cost_usd_total", **labels) == pytest.approx(spend)

    tools = _rollup(recorded, "agentwatch_tool_calls_total", **labels)
    assert stats["tool_calls"] == tools
    assert _in_process(recorded, "agentwatch_tool_calls_total", **labels) == tools
    tokens = sum(
        _rollup(recorded, "agentwatch_llm_tokens_total", type=kind, **labels)
        for kind in ("input", "output")
    )
    assert stats["total_tokens"] == tokens


def test_a_runs_cost_includes_the_calls_of_the_tools_it_ran(recorded: Recorded) -> None:
    with agentwatch.EventStore(recorded.url) as store:
        synchronous = [
            run
            for run in store.executions(agent="researcher", limit=None)
            if run.llm_calls == 1 and run.tool_calls == 1 and run.cost_usd == pytest.approx(0.001)
        ]
        tools = store.executions(agent="rerank", kind="tool", limit=None)
    assert len(synchronous) == 3  # the extra researchers: their only call is inside `rerank`
    assert len(tools) == 3 and {t.parent_id for t in tools} == {r.id for r in synchronous}


def test_unpriced_calls_are_shown_as_unpriced_everywhere(recorded: Recorded) -> None:
    table = _cli(recorded, "cost", "--group-by", "model", "--since", "1d").stdout
    acme = next(line for line in table.splitlines() if "acme-7b" in line)
    assert "excludes" in table and "unpriced call" in table
    report = json.loads(_cli(recorded, "cost", "--group-by", "model", "--json").stdout)
    [row] = [r for r in report["rows"] if r["model"] == "acme-7b"]
    assert row["unpriced_calls"] > 0 and "unpriced" in acme
    # A failed call costs a known $0 (nothing billed), so the row may mix priced and unpriced
    # calls; only a row where every call is unpriced has no cost at all.
    if row["unpriced_calls"] == row["calls"]:
        assert row["cost_usd"] is None and "$0.00" not in acme
    else:
        assert row["cost_usd"] is not None
    assert f"excludes {report['unpriced_calls']} unpriced" in report["estimate_basis"]
    stats = _cli(recorded, "stats").stdout
    assert "unpriced" in stats
    # A run whose LLM calls were all unpriced has no cost (null), in list and export alike.
    listed = json.loads(_cli(recorded, "list", "--json", "--limit", "100000").stdout)
    exported = [json.loads(line) for line in _cli(recorded, "export").stdout.splitlines()]
    for records in (listed, exported):
        for record in records:
            all_unpriced = (
                record["llm_calls"] > 0 and record["unpriced_calls"] == record["llm_calls"]
            )
            assert (record["cost_usd"] is None) == all_unpriced, record
    assert {r["id"] for r in listed if r["cost_usd"] is None} == {
        r["id"] for r in exported if r["cost_usd"] is None
    }
