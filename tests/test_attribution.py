"""Attribution dimensions: where values come from, the labels they become, what is stored.

Capture tests use a real runtime on a fresh registry with a collecting sink; store tests use
the real SQLite file and the real PostgreSQL (the `store` fixture), and read the rollups the
way `agentwatch serve` does (`store_metrics.rollup_families`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import Captured, captured
from agentwatch import contract
from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import AttributionDimension, load_settings
from agentwatch.errors import ConfigError
from agentwatch.metrics import AgentMetrics
from agentwatch.model import ExecutionFinished, LateEvent
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, open_store
from agentwatch.store_metrics import rollup_families
from conftest import Records

__all__ = ["captured"]

DIMENSIONS = {"team": {"max_values": 3}, "customer": {"litellm_user": True}}
TEAM_CUSTOMER = (AttributionDimension("team", 3), AttributionDimension("customer", 100, True))


@pytest.fixture
def attributed(captured: Captured) -> Captured:
    return captured.reconfigure(attribution=DIMENSIONS)


# --------------------------------------------------------------------------------- config


def _settings(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_dimensions_are_declared_with_their_caps(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "attribution: {team: {max_values: 50}, customer: {max_values: 1000, litellm_user: true}}",
    )
    assert settings.attribution == (
        AttributionDimension("team", 50, False),
        AttributionDimension("customer", 1000, True),
    )
    assert _settings(tmp_path, "attribution: [team, project]").attribution == (
        AttributionDimension("team"),
        AttributionDimension("project"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("attribution: {agent: {}}", "'agent' is reserved"),
        ("attribution: {le: {}}", "'le' is reserved"),
        ("attribution: {'team-name': {}}", "a Prometheus label name"),
        ("attribution: {__team: {}}", "a Prometheus label name"),
        ("attribution: {team: {max_values: 0}}", "max_values: must be between 1"),
        ("attribution: {team: {max_values: 1000000}}", "max_values: must be between 1"),
        ("attribution: {team: {colour: red}}", "unknown key 'colour'"),
        (
            "attribution: {a: {litellm_user: true}, b: {litellm_user: true}}",
            "litellm_user may be true for one dimension only",
        ),
        ("attribution: [a, b, c, d, e, f, g, h, i]", "at most 8 dimensions"),
        (
            "budgets: [{name: b, limit_usd: 1, team: search}]",
            "unknown key 'team' (declare it under attribution:",
        ),
        (
            "attribution: [team]\nbudgets: [{name: b, limit_usd: 1, team: {x: 1}}]",
            "expected a non-empty attribution value",
        ),
        (
            "attribution: [team]\nbudgets: [{name: b, limit_usd: 1, enforce: maybe}]",
            "enforce: expected true or false",
        ),
    ],
)
def test_a_bad_dimension_or_scope_is_one_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as info:
        _settings(tmp_path, text)
    assert message in str(info.value)


def test_a_budget_scope_names_declared_dimensions(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "attribution: [team, customer]\n"
        "budgets:\n"
        "  - {name: search, period: month, limit_usd: 500, team: search, enforce: true}\n"
        "  - {name: acme, period: day, limit_usd: 20, customer: acme, agent: bot, "
        "fail_closed: true, enforce: true}\n",
    )
    search, acme = settings.budgets
    assert search.scope() == {"team": "search"} and search.enforce and not search.fail_closed
    assert acme.scope() == {"agent": "bot", "customer": "acme"} and acme.fail_closed


# ------------------------------------------------------------------------ where values come from


def test_a_run_and_its_nested_runs_tool_and_llm_calls_carry_its_values(
    attributed: Captured,
) -> None:
    @agentwatch.observe(kind="tool")
    def lookup() -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", cost_usd=0.01)

    @agentwatch.observe(attributes={"customer": "acme"})
    def child() -> None:
        lookup()

    with agentwatch.track("parent", team="search"):
        child()
        agentwatch.record_tool_call("grep")

    parent, nested = attributed.sink.execution("parent"), attributed.sink.execution("child")
    tool_run = attributed.sink.execution("lookup")
    assert parent.attribution == {"team": "search"}
    assert nested.attribution == {"team": "search", "customer": "acme"}
    assert tool_run.attribution == nested.attribution
    (call,) = [e for e in tool_run.events if e.kind == "llm_call"]
    assert call.attribution == {"team": "search", "customer": "acme"}
    assert all(e.attribution == {"team": "search"} for e in parent.events)
    assert nested.events[0].attribution == nested.attribution  # the tool_call event


def test_a_calls_own_values_override_its_runs_and_none_clears_one(attributed: Captured) -> None:
    with agentwatch.track("job", team="search", customer="acme"):
        agentwatch.record_llm_call("m", provider="p", cost_usd=0.1, customer="globex")
        with agentwatch.track("inner", team=None):
            pass
    job = attributed.sink.execution("job")
    assert job.events[0].attribution == {"team": "search", "customer": "globex"}
    assert attributed.sink.execution("inner").attribution == {"customer": "acme"}
    assert job.attribution == {"team": "search", "customer": "acme"}  # never mutated


def test_undeclared_keys_are_attributes_only(attributed: Captured) -> None:
    with agentwatch.track("job", team="search", region="eu"):
        pass
    run = attributed.sink.execution("job")
    assert run.attribution == {"team": "search"}
    assert run.attributes == {"team": "search", "region": "eu"}


def test_hostile_values_are_repaired_cut_or_ignored_and_counted(attributed: Captured) -> None:
    with agentwatch.track("a", team="x\x00y" + "z" * 300):
        pass
    with agentwatch.track("b", team={"nested": 1}, customer=42):
        pass
    with agentwatch.track("c", team=float("nan"), customer=True):
        pass
    a, b, c = (attributed.sink.execution(n) for n in "abc")
    assert a.attribution["team"].startswith("x\ufffdyz") and len(a.attribution["team"]) == 128
    assert b.attribution == {"customer": "42"}
    assert c.attribution == {"customer": "true"}
    invalid = attributed.value("agentwatch_invalid_values_total", {"field": "attributes"})
    assert invalid is not None and invalid >= 3  # NUL, a mapping, NaN


def test_redact_patterns_apply_to_values_like_agent_names(captured: Captured) -> None:
    captured.reconfigure(attribution=DIMENSIONS, redact_patterns=["ACME-[0-9]+"])
    with agentwatch.track("job", customer="ACME-1234"):
        pass
    assert captured.sink.execution("job").attribution == {"customer": "[REDACTED]"}


def test_without_dimensions_nothing_is_attributed(captured: Captured) -> None:
    with agentwatch.track("job", team="search"):
        agentwatch.record_llm_call("m", provider="p", cost_usd=0.1)
    run = captured.sink.execution("job")
    assert run.attribution == {} and run.events[0].attribution == {}
    assert captured.value("agentwatch_llm_cost_usd_total", {"agent": "job", "model": "m",
                                                            "provider": "p"}) == 0.1  # fmt: skip


# --------------------------------------------------------------------------- in-process labels


def test_money_and_volume_counters_carry_the_dimensions_and_histograms_do_not(
    attributed: Captured,
) -> None:
    with agentwatch.track("job", team="search"):
        agentwatch.record_llm_call(
            "m", provider="p", input_tokens=5, output_tokens=7, cost_usd=0.25, duration=1.0,
            customer="acme",
        )  # fmt: skip
    call = {"agent": "job", "model": "m", "provider": "p", "team": "search", "customer": "acme"}
    run = {"agent": "job", "status": "completed", "team": "search", "customer": ""}
    assert attributed.value("agentwatch_executions_total", run) == 1
    assert attributed.value("agentwatch_llm_requests_total", {**call, "status": "success"}) == 1
    assert attributed.value("agentwatch_llm_tokens_total", {**call, "type": "output"}) == 7
    assert attributed.value("agentwatch_llm_cost_usd_total", call) == 0.25
    assert (
        attributed.value(
            "agentwatch_llm_request_duration_seconds_count", {"model": "m", "provider": "p"}
        )
        == 1
    )
    for spec in contract.ALL_METRICS:
        family = {m.name: m for m in attributed.registry.collect()}.get(spec.name)
        if family is None:
            continue
        for sample in family.samples:
            assert ("team" in sample.labels) == spec.attributed, (spec.name, sample)


def test_each_dimension_has_its_own_cap_and_folds_only_its_label(attributed: Captured) -> None:
    for team in ("a", "b", "c", "d", "e"):
        with agentwatch.track("job", team=team, customer="acme"):
            pass
    run = {"agent": "job", "status": "completed", "customer": "acme"}
    assert [
        attributed.value("agentwatch_executions_total", {**run, "team": t}) for t in "abcd"
    ] == [1, 1, 1, None]
    assert attributed.value("agentwatch_executions_total", {**run, "team": "__overflow__"}) == 2
    assert attributed.value("agentwatch_attribution_overflow_total", {"dimension": "team"}) == 2


def test_the_label_set_fold_leaves_the_dimensions_absent() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, max_label_sets=1, attribution=TEAM_CUSTOMER)
    agentwatch_records = Records()
    for agent in ("one", "two"):
        execution = agentwatch_records.execution(agent, attribution={"team": "t"})
        metrics.observe_execution(execution)
    folded = {"agent": "__overflow__", "status": "__overflow__", "team": "", "customer": ""}
    assert registry.get_sample_value("agentwatch_executions_total", folded) == 1


# ------------------------------------------------------------------------------ litellm values


def test_litellm_metadata_and_user_attribute_calls_outside_runs(attributed: Captured) -> None:
    import litellm

    from agentwatch.integrations.litellm import instrument_litellm, uninstrument_litellm

    instrument_litellm()
    try:
        litellm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            mock_response="hello",
            metadata={"team": "ads", "unrelated": "x"},
            user="acme",
        )
        with agentwatch.track("job", team="search"):
            litellm.completion(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                mock_response="hello",
            )
        job = attributed.sink.execution("job")

        def calls() -> list[Any]:
            # litellm records a sync call on its logging thread: the call made in the run
            # may arrive after the run ended, as a late event of it. Wait for both before
            # uninstrumenting (a hook fired after that is not recorded).
            found = (*job.events, *attributed.sink.late_events())
            return [e for e in found if e.kind == "llm_call"]

        deadline = time.monotonic() + 10
        while len(calls()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        uninstrument_litellm()
    (orphan,) = [e for e in calls() if e.execution_id is None]
    assert orphan.attribution == {"team": "ads", "customer": "acme"}
    (inside,) = [e for e in calls() if e.execution_id == job.id]
    assert inside.attribution == {"team": "search"}
    labels = {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "team": "ads",
              "customer": "acme"}  # fmt: skip
    assert attributed.value("agentwatch_llm_cost_usd_total", labels) == orphan.cost_usd


# ------------------------------------------------------------------------------- store and serve


def _write(store: Store, *items: Any, attribution: tuple[AttributionDimension, ...]) -> None:
    builder = RollupBuilder(CardinalityGuard(2_000), attribution=attribution)
    store.write_batch(builder.build(list(items)))


def _series(store: Store, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    for metric in rollup_families(store.read_rollups()):
        if metric.name == family:
            return {
                tuple(sorted(s.labels.items())): s.value
                for s in metric.samples
                if s.name.endswith("_total")
            }
    return {}


def test_the_store_keeps_values_and_serve_exposes_them_as_labels(
    store: Store, records: Records
) -> None:
    call = records.llm(agent="job", attribution={"team": "search", "customer": "acme"})
    run = records.execution("job", events=[call], attribution={"team": "search"})
    orphan = records.llm(agent="none", cost_usd=0.5, attribution={"customer": "globex"})
    plain = records.execution("job", events=[records.llm(agent="job", cost_usd=0.25)])
    _write(store, ExecutionFinished(run), LateEvent(orphan), ExecutionFinished(plain),
           attribution=TEAM_CUSTOMER)  # fmt: skip
    cost = _series(store, "agentwatch_llm_cost_usd")
    base = (("agent", "job"), ("model", "gpt-4o-mini"), ("provider", "openai"))
    assert cost == {
        tuple(sorted((*base, ("customer", "acme"), ("team", "search")))): 0.001,
        tuple(sorted((*base, ("customer", ""), ("team", "")))): 0.25,
        tuple(sorted((("agent", "none"), ("model", "gpt-4o-mini"), ("provider", "openai"),
                      ("customer", "globex"), ("team", "")))): 0.5,
    }  # fmt: skip
    assert store.get_executions(attributes={"team": "search"})[0]["attribution"] == {
        "team": "search"
    }
    assert store.count_executions(attributes={"team": "search"}) == 1
    assert store.count_executions(attributes={"team": "search", "customer": "acme"}) == 0
    assert store.spend(0, 10_000, attributes={"customer": "acme"}) == pytest.approx(0.001)
    assert store.spend(0, 10_000, attributes={"customer": "globex"}) == pytest.approx(0.5)
    by_team = {r["team"]: r["cost"] for r in store.cost_breakdown(["team"])}
    assert by_team == pytest.approx({"search": 0.001, "": 0.75})


def test_a_hostile_filter_key_is_refused_and_values_are_parameters(
    store: Store, records: Records
) -> None:
    run = records.execution("job", attribution={"team": "x' OR '1'='1"})
    _write(store, ExecutionFinished(run), attribution=TEAM_CUSTOMER)
    with pytest.raises(ValueError, match="label names"):
        store.count_executions(attributes={"team') OR 1=1 --": "x"})
    assert store.count_executions(attributes={"team": "x' OR '1'='1"}) == 1
    assert store.count_executions(attributes={"team": "' OR '1'='1"}) == 0


def test_the_per_dimension_cap_holds_for_every_writer_together(
    backend_url: str, records: Records
) -> None:
    """Two writers (two store connections) with team capped at 3: the fourth and fifth
    teams fold into __overflow__ in the team label only, counted once per run."""
    first, second = open_store(backend_url), open_store(backend_url)
    try:
        first.migrate()
        for index, team in enumerate(("a", "b", "c", "d", "e")):
            writer = first if index % 2 == 0 else second
            run = records.execution("job", attribution={"team": team, "customer": "acme"})
            _write(writer, ExecutionFinished(run), attribution=TEAM_CUSTOMER)
        exposed = _series(first, "agentwatch_executions")
        # every run completed; serve exposes each label set's failed series at 0 beside it
        runs = {k: v for k, v in exposed.items() if dict(k)["status"] == "completed"}
        assert {dict(k)["team"] for k, v in exposed.items() if k not in runs and v == 0} == {
            dict(k)["team"] for k in runs
        }
        teams = sorted(dict(key)["team"] for key in runs)
        assert teams == ["__overflow__", "a", "b", "c"]
        overflow = next(v for k, v in runs.items() if dict(k)["team"] == "__overflow__")
        assert overflow == 2
        assert all(dict(k)["customer"] == "acme" for k in runs)
        folds = _series(first, "agentwatch_attribution_overflow")
        assert folds == {(("dimension", "team"),): 2.0}
        assert first.count_executions(attributes={"team": "e"}) == 1  # stored as it was
    finally:
        first.close()
        second.close()


def test_declaring_a_dimension_later_continues_the_existing_series(
    store: Store, records: Records
) -> None:
    _write(store, ExecutionFinished(records.execution("job")), attribution=())
    _write(store, ExecutionFinished(records.execution("job")), attribution=TEAM_CUSTOMER)
    searched = records.execution("job", attribution={"team": "search"})
    _write(store, ExecutionFinished(searched), attribution=TEAM_CUSTOMER)
    runs = _series(store, "agentwatch_executions")
    assert runs == {
        (("agent", "job"), ("status", "completed"), ("team", "")): 2.0,  # one series
        (("agent", "job"), ("status", "completed"), ("team", "search")): 1.0,
        # their failed series, at 0 until a run fails (contract.ZERO_FILLED_STATUSES)
        (("agent", "job"), ("status", "failed"), ("team", "")): 0.0,
        (("agent", "job"), ("status", "failed"), ("team", "search")): 0.0,
    }


def test_budget_gauges_are_finite_and_say_what_remains(store: Store, records: Records) -> None:
    from agentwatch.budgets import evaluate_budgets
    from agentwatch.config import Budget
    from agentwatch.store_metrics import budget_families

    day = 86_400.0
    call = records.llm(started_at=day + 3_600, cost_usd=2.0, attribution={"team": "search"})
    other = records.llm(started_at=day + 3_600, cost_usd=7.0, attribution={"team": "ads"})
    _write(store, LateEvent(call), LateEvent(other), attribution=TEAM_CUSTOMER)
    budgets = [
        Budget("search", "day", 10.0, attributes=(("team", "search"),)),
        Budget("idle", "day", 10.0, attributes=(("team", "nobody"),)),
        Budget("spent", "day", 5.0),
    ]
    now = day + 7_200  # two hours into the day
    search, idle, spent = evaluate_budgets(store, budgets, now)
    assert search.spend_usd == pytest.approx(2.0) and search.remaining_usd == pytest.approx(8.0)
    # $2 in 2 hours: $8 more takes 8 hours.
    assert search.projected_exhaustion == pytest.approx(now + 8 * 3_600)
    assert idle.projected_exhaustion == idle.period_end  # nothing spent: lasts the period
    assert spent.remaining_usd == 0 and spent.projected_exhaustion == now
    for family in budget_families([search, idle, spent]):
        assert all(math.isfinite(s.value) for s in family.samples), family.name


# ------------------------------------------------------------------------------------ the CLI


def test_the_cli_filters_and_groups_by_attribution(tmp_path: Path, records: Records) -> None:
    import json as jsonlib

    from click.testing import CliRunner

    from agentwatch.cli import cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    store.migrate()
    now = 1_790_000_000.0
    for team, customer, cost in (("search", "acme", 1.0), ("search", "globex", 2.0),
                                 ("ads", "acme", 4.0)):  # fmt: skip
        call = records.llm(started_at=now, agent="job", cost_usd=cost,
                           attribution={"team": team, "customer": customer})  # fmt: skip
        run = records.execution("job", started_at=now, events=[call],
                                attribution={"team": team, "customer": customer})  # fmt: skip
        _write(store, ExecutionFinished(run), attribution=TEAM_CUSTOMER)
    store.close()

    def run(*args: str) -> Any:
        command, *rest = args
        result = CliRunner().invoke(
            cli, ["monitor", command, "--store", url, "--since", "2026-01-01", *rest]
        )
        assert result.exit_code == 0, result.output
        return jsonlib.loads(result.stdout)

    listed = run("list", "--attr", "team=search", "--json")
    assert sorted(r["attribution"]["customer"] for r in listed) == ["acme", "globex"]
    assert run("list", "--attr", "team=search", "--attr", "customer=acme", "--json")[0][
        "attribution"
    ] == {"team": "search", "customer": "acme"}
    cost = run("cost", "--group-by", "team", "--json")
    assert {r["team"]: r["cost_usd"] for r in cost["rows"]} == {"ads": 4.0, "search": 3.0}
    by_customer = run("cost", "--group-by", "customer", "--attr", "team=search", "--json")
    assert {r["customer"]: r["cost_usd"] for r in by_customer["rows"]} == {
        "globex": 2.0,
        "acme": 1.0,
    }
    assert run("stats", "--attr", "customer=acme", "--json")["cost_usd"] == 5.0
    bad = CliRunner().invoke(cli, ["monitor", "list", "--store", url, "--attr", "team"])
    assert bad.exit_code == 2 and "expected DIMENSION=VALUE" in bad.output
    assert "Traceback" not in bad.output


def test_the_json_api_filters_by_attribution(tmp_path: Path, records: Records) -> None:
    import requests

    from agentwatch.config import Settings
    from agentwatch.server import make_server, serve_in_thread

    url = f"sqlite:///{tmp_path / 'api.db'}"
    store = open_store(url)
    store.migrate()
    for team in ("search", "ads"):
        call = records.llm(agent="job", cost_usd=2.0, attribution={"team": team})
        run = records.execution("job", events=[call], attribution={"team": team})
        _write(store, ExecutionFinished(run), attribution=TEAM_CUSTOMER)
    store.close()
    server = make_server(Settings(store_url=url), port=0)
    serve_in_thread(server)
    try:
        base = server.url + "/api/v1"
        page = requests.get(f"{base}/executions", params={"attr": "team=search"}, timeout=10)
        assert [r["attribution"] for r in page.json()["executions"]] == [{"team": "search"}]
        stats = requests.get(f"{base}/stats", params={"attr": "team=ads"}, timeout=10).json()
        assert stats["runs"] == 1 and stats["cost_usd"] == 2.0
        bad = requests.get(f"{base}/executions", params={"attr": "team') OR 1=1"}, timeout=10)
        assert bad.status_code == 400 and "DIMENSION=VALUE" in bad.json()["error"]
    finally:
        server.shutdown()
