"""`agentwatch monitor` subcommands against a store filled by real captured runs."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from _cli_runs import Workload, clean_environment, record_workload
from agentwatch.cli import cli
from agentwatch.store import open_store
from agentwatch.store.rows import EXECUTION_RECORD_FIELDS


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    clean_environment(monkeypatch, home)
    return home


@pytest.fixture
def workload(home: Path, tmp_path: Path) -> Workload:
    return record_workload(f"sqlite:///{tmp_path / 'runs.db'}")


def _run(workload: Workload, *args: str) -> Result:
    """`agentwatch monitor <args> --store <the workload's store>`."""
    command, *rest = args
    return CliRunner().invoke(cli, ["monitor", command, "--store", workload.url, *rest])


def _json(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# -- list -------------------------------------------------------------------------------


def test_list_shows_recent_runs_newest_first(workload: Workload) -> None:
    result = _run(workload, "list")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "COMPLETED" in line or "FAILED" in line]
    assert len(rows) == Workload.executions
    assert "translator" in rows[0]  # the track() block ran last
    assert any("researcher" in row and "FAILED" in row for row in rows)
    assert "$0.0003" in rows[0]


def test_list_json_is_the_documented_record(workload: Workload) -> None:
    records = _json(_run(workload, "list", "--status", "failed", "--json"))
    assert isinstance(records, list) and len(records) == 1
    record = records[0]
    assert tuple(record) == EXECUTION_RECORD_FIELDS
    assert record["id"] == workload.failed_id
    assert record["status"] == "failed"
    assert record["error_type"] == "RateLimitError"
    assert record["error_message"] == "429 slow down"
    started = datetime.fromisoformat(record["started_at"])
    assert started.utcoffset() is not None and started.timestamp() > workload.boundary
    assert record["cost_usd"] == pytest.approx(0.002)
    assert record["input_tokens"] == 300


def test_list_filters_by_agent_and_says_when_more_runs_match(workload: Workload) -> None:
    result = _run(workload, "list", "--agent", "translator", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "researcher" not in result.output
    assert "Showing the 2 most recent of 3 runs" in result.output


def test_list_since_an_iso_time_excludes_older_runs(workload: Workload) -> None:
    records = _json(_run(workload, "list", "--since", _iso(workload.boundary), "--json"))
    assert isinstance(records, list)
    assert len(records) == Workload.executions - Workload.old_executions
    assert not {r["id"] for r in records} & set(workload.old_ids)
    assert _json(_run(workload, "list", "--since", "1h", "--json")) != []


def test_a_bad_since_is_a_usage_error(workload: Workload) -> None:
    result = _run(workload, "list", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "neither a duration" in result.output
    assert "Traceback" not in result.output


def test_times_are_shown_in_local_time_with_the_zone(
    workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        result = _run(workload, "list", "--limit", "1")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert result.exit_code == 0, result.output
    assert " JST" in result.output


# -- stats ------------------------------------------------------------------------------


def test_stats_json_reports_the_captured_totals_and_percentiles(workload: Workload) -> None:
    stats = _json(_run(workload, "stats", "--json"))
    assert isinstance(stats, dict)
    assert stats["runs"] == Workload.executions
    assert stats["top_level_runs"] == Workload.executions - 2  # two nested summarisers
    assert stats["nested_runs"] == 2
    assert stats["failed_runs"] == Workload.failed
    assert stats["completed_runs"] == Workload.executions - Workload.failed
    assert stats["success_rate"] == pytest.approx(6 / 7)
    # Calls and spend cover every call, the one made outside any run too (as `cost` does).
    assert stats["cost_usd"] == pytest.approx(Workload.run_cost + Workload.orphan_cost)
    assert stats["llm_calls"] == 8 and stats["tool_calls"] == 2
    assert stats["unpriced_calls"] == 0
    p50, p95, p99 = (stats[f"p{p}_duration_seconds"] for p in (50, 95, 99))
    assert 0 <= p50 <= p95 <= p99


def test_stats_table_for_one_agent(workload: Workload) -> None:
    result = _run(workload, "stats", "--agent", "researcher")
    assert result.exit_code == 0, result.output
    assert "agent researcher" in result.output
    for label in ("Success rate", "50.0%", "p50 duration", "p95 duration", "p99 duration"):
        assert label in result.output
    assert "$0.0040" in result.output  # two researcher runs at $0.002


# -- trace ------------------------------------------------------------------------------


def test_trace_of_a_failed_run_shows_nested_agents_events_and_the_error(
    workload: Workload,
) -> None:
    result = _run(workload, "trace", workload.failed_id)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"Execution Trace: researcher ({workload.failed_id})" in text
    assert "Error: RateLimitError: 429 slow down" in text
    assert "LLM claude-3-5-haiku" in text and "380 tokens (300 in / 80 out)" in text
    assert "Tool search" in text
    assert "Memory recall" in text
    assert "Agent summariser" in text and "LLM gpt-4o-mini" in text
    # The nested run's LLM call is drawn under the nested run.
    assert text.index("Agent summariser") < text.index("LLM gpt-4o-mini")


def test_trace_json_nests_children_with_offsets(workload: Workload) -> None:
    trace = _json(_run(workload, "trace", workload.completed_researcher_id, "--json"))
    assert isinstance(trace, dict)
    assert trace["agent"] == "researcher"
    kinds = [e["kind"] for e in trace["events"]]
    assert {"llm_call", "tool_call", "memory"} <= set(kinds)
    started = datetime.fromisoformat(trace["started_at"]).timestamp()
    for event in trace["events"]:
        assert event["offset_seconds"] == pytest.approx(
            datetime.fromisoformat(event["started_at"]).timestamp() - started, abs=0.002
        )
    [child] = trace["children"]
    assert child["agent"] == "summariser"
    assert child["parent_id"] == trace["id"]
    assert child["events"][0]["model"] == "gpt-4o-mini"


def test_trace_of_an_unknown_id_is_one_line_exit_1(workload: Workload) -> None:
    result = _run(workload, "trace", "no-such-run")
    assert result.exit_code == 1
    assert "no-such-run" in _one_error_line(result)


# -- cost -------------------------------------------------------------------------------


def test_cost_by_model_with_a_monthly_estimate_from_the_window(workload: Workload) -> None:
    report = _json(_run(workload, "cost", "--group-by", "model", "--json"))
    assert isinstance(report, dict)
    by_model = {row["model"]: row for row in report["rows"]}
    assert by_model["claude-3-5-haiku"]["cost_usd"] == pytest.approx(0.004)
    assert by_model["claude-3-5-haiku"]["calls"] == 2
    assert by_model["gpt-4o-mini"]["cost_usd"] == pytest.approx(
        3 * 0.0003 + 2 * 0.0001 + Workload.orphan_cost
    )
    total = Workload.run_cost + Workload.orphan_cost
    assert report["total_cost_usd"] == pytest.approx(total)
    assert report["window_seconds"] == pytest.approx(7 * 86400, abs=5)
    assert report["estimated_monthly_cost_usd"] == pytest.approx(total * 30 / 7, rel=1e-3)
    assert "7 days" in report["estimate_basis"]


def test_cost_table_by_agent_and_model_states_its_basis(workload: Workload) -> None:
    result = _run(workload, "cost", "--group-by", "agent,model", "--since", "1d")
    assert result.exit_code == 0, result.output
    assert "Agent" in result.output and "Model" in result.output and "Total" in result.output
    assert "Estimated monthly cost:" in result.output
    assert "scaled to 30 days" in result.output and "the last 1 day " in result.output


def test_cost_by_date_uses_the_local_day(workload: Workload) -> None:
    report = _json(_run(workload, "cost", "--group-by", "date", "--json"))
    assert isinstance(report, dict)
    today = datetime.now().astimezone().strftime("%Y-%m-%d")
    assert [row["date"] for row in report["rows"]] == [today]


def test_an_unknown_group_is_a_usage_error(workload: Workload) -> None:
    result = _run(workload, "cost", "--group-by", "team-name")
    assert result.exit_code == 2
    assert "'team-name' is not one of agent, model, provider, date" in result.output


# -- export -----------------------------------------------------------------------------


def test_export_csv_to_a_file_has_the_documented_columns(
    workload: Workload, tmp_path: Path
) -> None:
    target = tmp_path / "runs.csv"
    result = _run(workload, "export", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert f"Exported {Workload.executions} runs to {target} (csv)" in result.output
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert tuple(rows[0]) == EXECUTION_RECORD_FIELDS
    assert len(rows) == Workload.executions
    started = [datetime.fromisoformat(r["started_at"]) for r in rows]
    assert started == sorted(started)  # oldest first
    tracked = next(r for r in rows if r["attributes"] != "{}")
    assert json.loads(tracked["attributes"]) == {"team": "i18n"}
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_export_json_formats_to_stdout(workload: Workload, fmt: str) -> None:
    result = _run(workload, "export", "--format", fmt, "--output", "-", "--status", "failed")
    assert result.exit_code == 0, result.output
    if fmt == "json":
        records = json.loads(result.stdout)
    else:
        records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == [workload.failed_id]


def test_export_of_nothing_is_still_valid_json(workload: Workload) -> None:
    result = _run(workload, "export", "--format", "json", "--agent", "nobody")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_export_progress_bar_counts_every_row(workload: Workload, tmp_path: Path) -> None:
    target = tmp_path / "runs.jsonl"
    result = _run(workload, "export", "-o", str(target), "--progress")
    assert result.exit_code == 0, result.output
    assert f"{Workload.executions}/{Workload.executions}" in result.stderr
    assert len(target.read_text().splitlines()) == Workload.executions


# -- prune ------------------------------------------------------------------------------


def _rollups(url: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    store = open_store(url)
    try:
        return sorted(
            (r.sample, tuple(sorted(r.labels.items())), r.value) for r in store.read_rollups()
        )
    finally:
        store.close()


def test_prune_deletes_old_runs_and_keeps_the_rollups(workload: Workload) -> None:
    before = _rollups(workload.url)
    cutoff = _iso(workload.boundary)
    dry = _run(workload, "prune", "--older-than", cutoff, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"Would delete {Workload.old_executions} runs" in dry.output
    result = _run(workload, "prune", "--older-than", cutoff)
    assert result.exit_code == 0, result.output
    assert f"Deleted {Workload.old_executions} runs" in result.output
    assert "Rollup counters are unchanged" in result.output
    remaining = _json(_run(workload, "list", "--json", "--limit", "100"))
    assert isinstance(remaining, list)
    assert len(remaining) == Workload.executions - Workload.old_executions
    assert _rollups(workload.url) == before


def test_prune_json_reports_the_count(workload: Workload) -> None:
    report = _json(_run(workload, "prune", "--older-than", "30d", "--json"))
    assert report == {
        "dry_run": False,
        "older_than": report["older_than"],  # type: ignore[index]
        "older_than_epoch": report["older_than_epoch"],  # type: ignore[index]
        "deleted_executions": 0,
        "matching_executions": 0,
    }


# -- the live view's single frame, settings and errors -------------------------------------


def test_once_prints_totals_and_recent_activity(workload: Workload) -> None:
    result = CliRunner().invoke(cli, ["monitor", "--store", workload.url, "--once", "--rows", "3"])
    assert result.exit_code == 0, result.output
    assert f"Runs: {Workload.executions}" in result.output
    assert "Failed: 1" in result.output
    assert "Success rate: 85.7%" in result.output
    assert "Recent Activity" in result.output
    assert result.output.count("COMPLETED") + result.output.count("FAILED") == 3


def test_store_flag_after_the_subcommand_wins(workload: Workload, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(
        cli, ["monitor", "--store", missing, "stats", "--store", workload.url, "--json"]
    )
    assert _json(result)["runs"] == Workload.executions  # type: ignore[index]


def test_the_environment_names_the_store(
    workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_STORE_URL", workload.url)
    result = CliRunner().invoke(cli, ["monitor", "stats", "--json"])
    assert _json(result)["runs"] == Workload.executions  # type: ignore[index]


def test_a_missing_sqlite_store_says_to_run_init(home: Path) -> None:
    result = CliRunner().invoke(cli, ["monitor", "list"])
    assert result.exit_code == 1
    assert "agentwatch init" in _one_error_line(result)
    assert not (home / "telemetry.db").exists()


def test_an_unreachable_store_is_one_line_exit_1(home: Path) -> None:
    result = CliRunner().invoke(
        cli, ["monitor", "stats", "--store", "postgresql://postgres@127.0.0.1:1/test"]
    )
    assert result.exit_code == 1
    assert "127.0.0.1" in _one_error_line(result)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("stor_url: x\n", "'stor_url'"),
        ("port: [1\n", "not valid YAML"),
        ("store_url: mysql://x\n", "store_url"),
    ],
)
def test_a_bad_config_file_names_the_file_and_key_and_exits_2(
    home: Path, tmp_path: Path, text: str, key: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["monitor", "list", "--config", str(config)])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert str(config) in line and key in line


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def postgres_workload(home: Path, postgres_url: str) -> Workload:
    """The workload in a throw-away PostgreSQL schema (conftest's `postgres_url`)."""
    return record_workload(postgres_url)


@pytest.mark.postgres
def test_commands_read_a_postgresql_store(postgres_workload: Workload) -> None:
    stats = _json(_run(postgres_workload, "stats", "--json"))
    assert stats["runs"] == Workload.executions  # type: ignore[index]
    report = _json(_run(postgres_workload, "cost", "--group-by", "provider", "--json"))
    providers = {row["provider"] for row in report["rows"]}  # type: ignore[index]
    assert providers == {"openai", "anthropic"}
    trace = _run(postgres_workload, "trace", postgres_workload.failed_id)
    assert "RateLimitError" in trace.output


# -- bounded memory ----------------------------------------------------------------------


def _bulk(url: str, agent: str, runs: int) -> None:
    import agentwatch

    agentwatch.configure(store_url=url)
    try:
        observed = agentwatch.observe(name=agent)(lambda: agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=5, cost_usd=1e-5
        ))  # fmt: skip
        for _ in range(runs):
            observed()
        assert agentwatch.flush(timeout=60)
    finally:
        agentwatch.close()


def _export_peak(url: str, agent: str, target: Path) -> int:
    """Peak bytes allocated by Python while exporting one agent's runs to a file."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = CliRunner().invoke(
            cli, ["monitor", "export", "--store", url, "--agent", agent, "-o", str(target)]
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak


@pytest.mark.slow
def test_export_memory_does_not_grow_with_the_number_of_runs(home: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    _bulk(url, "small", 2_000)
    _bulk(url, "large", 8_000)
    small = _export_peak(url, "small", tmp_path / "small.jsonl")
    large = _export_peak(url, "large", tmp_path / "large.jsonl")
    assert len((tmp_path / "large.jsonl").read_text().splitlines()) == 8_000
    # Four times the rows (each export several chunks); streaming holds one chunk at a time.
    assert large < 1.5 * small, (small, large)


def test_live_view_options_before_a_subcommand_are_refused(workload: Workload) -> None:
    result = CliRunner().invoke(cli, ["monitor", "--agent", "researcher", "list"])
    assert result.exit_code == 2
    assert "--agent belong(s) to the live view" in result.output
