"""The history and throughput benchmarks run end to end at tiny scale, and their fleet is
what their docs say. Figures are not checked here (speed lives in the benchmarks); only that
every measurement produces one, for this checkout and for a second one compared with it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The benchmarks' helper modules (`_workload`, `_compare`), imported from benchmarks/."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _compare
    import _workload

    yield _workload, _compare


def _runs(workload: ModuleType, n: int, seed: int = 10) -> list[object]:
    fleet = workload.Fleet(200, 10, seed)
    return [fleet.next_run() for _ in range(n)]


def test_fleet_draws_the_same_runs_for_the_same_seed(bench: tuple[ModuleType, ModuleType]) -> None:
    workload, _ = bench
    assert _runs(workload, 300) == _runs(workload, 300)
    assert _runs(workload, 300) != _runs(workload, 300, seed=11)


@pytest.mark.slow  # draws a 20,000-run fleet
def test_fleet_mix_is_the_documented_one(bench: tuple[ModuleType, ModuleType]) -> None:
    workload, _ = bench
    runs = _runs(workload, 20_000)
    failed = [r for r in runs if r.error]
    assert 0.04 < len(failed) / len(runs) < 0.06
    calls = Counter(len(r.calls) for r in runs)
    assert set(calls) == {1, 2, 3}
    assert 1.6 < sum(k * v for k, v in calls.items()) / len(runs) < 1.8
    assert {len(r.tools) for r in runs} == {0, 1, 2}
    assert len({r.agent for r in runs}) == 200
    assert len({c.model.name for r in runs for c in r.calls}) == 10
    # Timeouts and rate limits fail the run's last LLM call; a ValueError fails after it.
    for run in failed:
        assert run.calls[-1].failed == (run.error[0] != "ValueError")
        assert not any(c.failed for c in run.calls[:-1])
    unpriced = {c.model.name for r in runs for c in r.calls if c.cost is None and not c.failed}
    assert unpriced == {"llama3"}


def test_fleet_stays_under_the_default_label_set_cap(bench: tuple[ModuleType, ModuleType]) -> None:
    """Every (agent, model) pair, by both outcomes, fits the writer's default cap of 2,000."""
    workload, _ = bench
    fleet = workload.Fleet(200, 10)
    pairs = sum(len(fleet.agent_models(i)) for i in range(200))
    assert pairs * 2 <= 2_000
    assert pairs > 200  # agents do share models: the 200 x 10 shape is not 200 x 1


def test_table_gain_says_how_much_better_this_checkout_is(
    bench: tuple[ModuleType, ModuleType],
) -> None:
    _, compare = bench
    slower = compare.Row("query", "s", cells={"other": 2.0, "this": 0.5})
    faster = compare.Row("ingest", "/s", cells={"other": 1000.0, "this": 3000.0})
    broken = compare.Row("scrape", "s", cells={"other": 1.0, "this": "error: boom"})
    assert compare.gain(slower, "other", "this") == "4.00×"
    assert compare.gain(faster, "other", "this") == "3.00×"
    assert compare.gain(broken, "other", "this") == ""
    out = io.StringIO()
    compare.print_table([slower, faster, broken], ["other", "this"], out)
    lines = out.getvalue().splitlines()
    assert "this vs other" in lines[0]
    assert "500 ms" in lines[2] and "2.00 s" in lines[2]
    assert "3,000/s" in lines[3]
    assert "error: boom" in lines[4]


def test_compare_with_refuses_this_checkout_and_a_folder_without_agentwatch(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    _, compare = bench
    with pytest.raises(compare.BenchError, match="this checkout"):
        compare.versions(str(ROOT), None)
    with pytest.raises(compare.BenchError, match="no agentwatch package"):
        compare.versions(str(tmp_path), None)


def _other_checkout(tmp_path: Path) -> Path:
    """A copy of this checkout's package, standing in for an older one."""
    other = tmp_path / "other"
    shutil.copytree(
        ROOT / "exporter" / "agentwatch",
        other / "exporter" / "agentwatch",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return other


def _run(script: str, *args: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| What"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_history_benchmark_measures_two_checkouts_on_one_cached_store(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    out = _run(
        "history.py",
        *("--runs", "1500", "--repeat", "1", "--cache-dir", str(cache)),
        *("--compare-with", str(_other_checkout(tmp_path))),
    )
    # Same schema: the other checkout builds the store, this one reads the cached file.
    assert re.search(r"^other store \(built now\)", out, re.M), out
    assert re.search(r"^this store \(cached\)", out, re.M), out
    assert len(list(cache.glob("history-*.db"))) == 1
    rows = _table(out)
    expected = [
        "`agentwatch --help` (start-up)",
        "`monitor stats`, empty store (start-up)",
        "`monitor stats` (1,500 runs)",
        "`monitor stats --since 7d`",
        "`monitor cost` (by agent, 7d)",
        "`monitor cost --group-by date --since 30d`",
        "/metrics in process, first (no budgets)",
        "/metrics in process, repeated",
        "series on /metrics (no budgets)",
        "/metrics over HTTP, first scrape (5 budgets)",
        "/metrics over HTTP, repeated scrapes",
        "/metrics over HTTP, 2 concurrent scrapes (wall)",
        "store size / run (SQLite)",
    ]
    for what in expected:
        assert what in rows, f"{what!r} missing from\n{out}"
    budgets = [what for what in rows if what.startswith("budget, ")]
    assert len(budgets) == 5
    for what in [*expected, *budgets]:
        other, this, gain = rows[what][:3]
        assert re.match(r"[\d,.]+ ?(µs|ms|s|B)?$", other), (what, other)
        assert re.match(r"[\d,.]+ ?(µs|ms|s|B)?$", this), (what, this)
        if "series" not in what:
            assert gain.endswith("×"), (what, gain)
    assert rows["budget spends agree between versions"][1] == "yes"
    assert rows["`monitor stats --json` totals agree between versions"][1] == "yes"


@pytest.mark.slow
@pytest.mark.postgres
def test_history_benchmark_builds_and_reads_a_postgresql_store(
    tmp_path: Path, postgres_url: str
) -> None:
    base = postgres_url.split("?options=")[0]
    cache = tmp_path / "cache"
    try:
        out = _run(
            "history.py",
            *("--runs", "500", "--repeat", "1", "--cache-dir", str(cache), "--store", base),
        )
    finally:
        import psycopg

        for info in cache.glob("history-pg*.json"):
            schema = json.loads(info.read_text())["schema"]
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    rows = _table(out)
    assert re.match(r"[\d,]+ B$", rows["store size / run (PostgreSQL)"][0])
    assert re.match(r"[\d.]+ (µs|ms|s)$", rows["`monitor stats` (500 runs)"][0])
    assert re.match(r"[\d.]+ (µs|ms|s)$", rows["/metrics over HTTP, repeated scrapes"][0])


@pytest.mark.slow
@pytest.mark.postgres
def test_throughput_benchmark_measures_both_shapes_and_backends(
    tmp_path: Path, postgres_url: str
) -> None:
    base = postgres_url.split("?options=")[0]
    before = _throwaway_schemas(base)
    out = _run(
        "throughput.py",
        *("--runs", "300", "--warmup", "50", "--repeat", "1", "--postgres", base),
        *("--compare-with", str(_other_checkout(tmp_path))),
    )
    rows = _table(out)
    rates = [what for what in rows if what.startswith(("end to end", "writer only"))]
    assert len(rates) == 6
    for what in rates:
        for cell in rows[what][:2]:
            assert re.match(r"[\d,]+/s$", cell), (what, cell)
    for backend in ("SQLite", "PostgreSQL"):
        (size,) = [what for what in rows if what.startswith(f"bytes per run, {backend}")]
        assert re.match(r"[\d,]+ B$", rows[size][0])
    cpu = [what for what in rows if what.startswith("CPU per run")]
    assert len(cpu) == 3  # the writer's process on both backends, PostgreSQL's server process
    for what in cpu:
        for cell in rows[what][:2]:
            assert re.match(r"[\d.]+ (µs|ms)$", cell), (what, cell)
    assert _throwaway_schemas(base) <= before  # every schema it made was dropped


def _throwaway_schemas(base: str) -> set[str]:
    import psycopg

    with psycopg.connect(base) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'awbench_t_%'"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_startup_benchmark_times_every_command_for_two_checkouts(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    created = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom agentwatch.store import open_store\n"
            "s = open_store(sys.argv[1])\ns.migrate()\ns.close()\n",
            store,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    out = _run(
        "startup.py",
        *("--repeat", "1", "--store", store),
        *("--compare-with", str(_other_checkout(tmp_path))),
    )
    rows = _table(out)
    commands = [
        "`agentwatch --help`",
        "`agentwatch monitor --help`",
        "`monitor stats`, empty store",
        "`monitor stats --json`, empty store",
        "`monitor list`, empty store",
        "`monitor stats --json`, store named by a config file",
        f"`monitor stats`, --store {store}",
        f"`monitor stats --json`, --store {store}",
    ]
    for what in [f"{c}, {kind}" for c in commands for kind in ("wall", "CPU")]:
        assert what in rows, f"{what!r} missing from\n{out}"
        for cell in rows[what][:2]:
            assert re.match(r"[\d.]+ (µs|ms|s)$", cell), (what, cell)
    assert rows["`agentwatch --help`, wall"][3] == "≤ 80 ms"


@pytest.mark.slow
def test_scrape_benchmark_times_both_checkouts_on_the_same_writes(tmp_path: Path) -> None:
    out = _run(
        "scrape.py",
        *("--runs", "300", "--repeat", "2", "--touch", "2", "--cache-dir", str(tmp_path)),
        *("--compare-with", str(_other_checkout(tmp_path))),
    )
    rows = _table(out)
    for what in ("first scrape (new server)", "unchanged store", "after a write of 2 runs"):
        other, this, gain = rows[what][:3]
        assert re.match(r"[\d.]+ (µs|ms|s)$", other), (what, other)
        assert re.match(r"[\d.]+ (µs|ms|s)$", this), (what, this)
        assert gain.endswith("×"), (what, gain)
    # Both stores got the same writes, so both bodies have the same series and changes.
    series, changed = rows["series on /metrics"], rows["lines changed per write"]
    assert series[0] == series[1] and int(series[0].replace(",", "")) > 0
    assert changed[0] == changed[1] and int(changed[0].replace(",", "")) > 0
