"""History-scale queries: the CLI, budgets and /metrics over a store of 1M (or 10M) runs.

Builds (once, then cached) a store of `--runs` agent runs at `--agents` x `--models` labels
with the realistic mix of `_workload.py`, spread over `--days` days that end with the
current UTC day, through agentwatch's own write path (`BatchWriter`, big batches). Then it
times, each `--repeat` times (median shown):

- `agentwatch --help` and `agentwatch monitor stats` on an empty store (start-up);
- `monitor stats`, `monitor stats --since 7d`, `monitor cost`,
  `monitor cost --group-by date --since 30d` (subprocesses: wall time, start-up included);
- each configured budget's spend (`budgets.evaluate_budgets`, one budget at a time: what
  every scrape pays per budget);
- with `--teams N` (runs and calls spread over N `team` values; the default mix has
  none), budgets and `monitor stats` / `monitor cost` scoped by one team;
- `/metrics`: the serve registry's collection and text exposition in process (no budgets),
  and scrapes of a real `agentwatch serve` over HTTP with the budgets configured (first
  scrape, repeated scrapes, two concurrent scrapes).

With `--compare-with PATH` every figure is measured for that checkout too (e.g. a
`git worktree` of the previous design), alternating rounds, and printed side by side with
the gain (>1 = this checkout is better).

Stores are cached in `~/.cache/agentwatch-bench/` (or `--cache-dir`, `$AGENTWATCH_BENCH_CACHE`)
under a key made of the parameters, the UTC date and a fingerprint of the schema the version
creates. Two versions with the same schema share one store; a version with another schema
builds its own from the same seeded data through its own writer (so a new design is measured
on what its writer stores, not on an upgraded copy). On PostgreSQL (`--store URL`) the cache is
a schema named by the same key in that database.

Usage:
    python benchmarks/history.py                         # 1M runs, SQLite
    python benchmarks/history.py --runs 20000 --repeat 2 # smoke run
    python benchmarks/history.py --runs 10000000         # 10M runs (builds ~10x longer)
    python benchmarks/history.py --store postgresql://postgres@127.0.0.1/test
    python benchmarks/history.py --compare-with /tmp/aw-before [--compare-python PY]
    python benchmarks/history.py --profile               # + cProfile top entries
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _compare as cmp
import _workload

#: Bump when the generated data changes, so cached stores are rebuilt.
DATA_VERSION = 1
GOALS = {
    "help": "≤ 80 ms",
    "startup": "≤ 80 ms",
    "stats": "≤ 300 ms at 1M, ≤ 1.5× that at 10M",
    "cost": "≤ 300 ms",
    "budget": "≤ 10 ms",
    "metrics": "≤ 50 ms",
    "metrics_cached": "≤ 50 ms; unchanged store answers from cache",
}


# =========================================================================== worker side
# Everything below up to the parent section runs inside a worker, under the agentwatch of
# the version being measured; it imports agentwatch lazily and only through stable names.


_stores: dict[str, Any] = {}
_servers: dict[str, Any] = {}


def _store(url: str) -> Any:
    from agentwatch.store import open_store

    store = _stores.get(url)
    if store is None:
        store = _stores[url] = open_store(url)
    return store


def w_hello() -> dict[str, Any]:
    import sqlite3

    import agentwatch

    return {
        "agentwatch": str(Path(agentwatch.__file__).parent),
        "version": agentwatch.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def w_fingerprint() -> str:
    """Hash of the schema this version creates and of the code that fills it.

    Two versions with the same fingerprint read one shared store. A change to the tables,
    the rollup builder or the batch write gives a new fingerprint, so a version whose writer
    stores something else never reads a store it did not write (`--separate-stores` forces
    one store per version anyway).
    """
    import sqlite3

    from agentwatch.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fingerprint.db"
        store = open_store(f"sqlite:///{path}")
        store.migrate()
        store.close()
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        conn.close()
    # What the writer puts in those tables: the rollup builder and the store's batch write.
    import inspect

    from agentwatch import rollups
    from agentwatch.store.sqlite import SQLiteStore

    writes = inspect.getsource(rollups) + inspect.getsource(SQLiteStore.write_batch)
    text = json.dumps([rows, versions, writes])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _id_factory() -> Any:
    try:
        from agentwatch.capture import new_execution_id

        return new_execution_id
    except ImportError:  # pragma: no cover - a version without it
        import uuid

        return lambda: f"exec_{uuid.uuid4().hex}"


def _team(i: int, teams: int) -> dict[str, str]:
    """Run `i`'s attribution with `--teams` (none without): a fixed spread, no random draw,
    so the rest of the seeded mix is the same with and without teams."""
    return {"team": f"team-{(i * 7919) % teams}"} if teams else {}


def history_items(
    runs: int,
    agents: int,
    models: int,
    days: int,
    seed: int,
    data_end: float,
    chunk: int,
    teams: int = 0,
) -> Iterator[list[Any]]:
    """The seeded history as `ExecutionFinished` items, oldest first, `chunk` at a time."""
    from agentwatch.model import Event, Execution, ExecutionFinished

    fleet = _workload.Fleet(agents, models, seed)
    new_id = _id_factory()
    span = days * 86400.0
    start = data_end - span
    step = span / runs
    rng = fleet.rng
    items: list[Any] = []
    for i in range(runs):
        run = fleet.next_run()
        began = start + (i + rng.random() * 0.9) * step
        t = began + 0.01
        events = []
        team = _team(i, teams)
        for call in run.calls:
            model = call.model
            events.append(
                Event(
                    kind="llm_call",
                    name=model.name,
                    started_at=t,
                    duration=call.duration,
                    status="failure" if call.failed else "success",
                    model=model.name,
                    provider=model.provider,
                    input_tokens=call.input_tokens,
                    output_tokens=call.output_tokens,
                    cached_tokens=call.cached_tokens,
                    reasoning_tokens=call.reasoning_tokens,
                    cost_usd=call.cost,
                    time_to_first_token=call.ttft,
                    error_type=run.error[0] if call.failed and run.error else None,
                    **({"attribution": team} if team else {}),
                )
            )
            t += call.duration + 0.005
        for tool in run.tools:
            events.append(
                Event(
                    kind="tool_call",
                    name=tool.name,
                    started_at=t,
                    duration=tool.duration,
                    status="failure" if tool.failed else "success",
                    **({"attribution": team} if team else {}),
                )
            )
            t += tool.duration + 0.002
        error_type, message = run.error if run.error else (None, None)
        execution = Execution(
            id=new_id(),
            agent=run.agent,
            started_at=began,
            ended_at=t + 0.02,
            status="failed" if run.error else "completed",
            error_type=error_type,
            error_message=message,
            **({"attribution": team} if team else {}),
        )
        execution.events.extend(events)
        items.append(ExecutionFinished(execution))
        if len(items) >= chunk:
            yield items
            items = []
    if items:
        yield items


def w_build(
    url: str,
    runs: int,
    agents: int,
    models: int,
    days: int,
    seed: int,
    data_end: float,
    batch_size: int,
    max_label_sets: int,
    teams: int = 0,
) -> dict[str, Any]:
    """Write the history through a `BatchWriter`; generate the next chunk while it writes."""
    from agentwatch.store import open_store
    from agentwatch.writer import BatchWriter

    def opener() -> Any:
        store = open_store(url)
        conn = getattr(store, "_conn", None)  # SQLite: a bigger page cache builds faster;
        if url.startswith("sqlite:///") and conn is not None:  # per connection, not stored
            conn.execute("PRAGMA cache_size = -262144")
        return store

    chunk = max(batch_size * 4, 10_000)
    writer = BatchWriter(
        opener,
        queue_size=chunk * 2,
        batch_size=batch_size,
        flush_interval=0.05,
        max_label_sets=max_label_sets,
        **({"attribution": (_dimension("team", teams),)} if teams else {}),
    )
    started = time.perf_counter()
    written = 0
    for items in history_items(runs, agents, models, days, seed, data_end, chunk, teams):
        if not writer.flush(timeout=None):
            raise RuntimeError(f"writer lost records: {writer.stats.dropped()}")
        for item in items:
            if not writer.submit(item):
                raise RuntimeError("writer refused a record (queue full)")
        written += len(items)
        if written % 200_000 < chunk:
            rate = written / (time.perf_counter() - started)
            print(f"built {written:,} runs ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    ok = writer.flush(timeout=None)
    writer.close()
    seconds = time.perf_counter() - started
    dropped = sum(writer.stats.dropped().values())
    if not ok or dropped:
        raise RuntimeError(f"writer did not store everything (dropped {dropped})")
    store = open_store(url)
    try:  # flushed without drops already says everything is stored; check where we can
        count = getattr(store, "count_executions", None)
        stored = runs if count is None else count()
    finally:
        store.close()
    if stored != runs:
        raise RuntimeError(f"expected {runs} runs in the store, found {stored}")
    cmp.settle(url)
    return {"runs": runs, "seconds": seconds, "rate": runs / seconds}


def _dimension(name: str, max_values: int) -> Any:
    from agentwatch.config import AttributionDimension

    return AttributionDimension(name, max_values)


def w_init_empty(path: str) -> None:
    """A migrated store without runs (what `agentwatch init` creates)."""
    from agentwatch.store import open_store

    store = open_store(f"sqlite:///{path}")
    store.migrate()
    store.close()


def _budget(spec: dict[str, Any]) -> Any:
    from agentwatch.config import Budget

    if "attributes" in spec:  # JSON turned its pairs into lists
        spec = {**spec, "attributes": tuple(tuple(pair) for pair in spec["attributes"])}
    return Budget(**spec)


def w_budget(url: str, spec: dict[str, Any], now: float) -> dict[str, float]:
    """One budget's evaluation (period bounds + exact spend), as every scrape does it."""
    from agentwatch.budgets import evaluate_budgets

    store = _store(url)
    budget = _budget(spec)
    started = time.perf_counter()
    (status,) = evaluate_budgets(store, [budget], now)
    return {
        "seconds": time.perf_counter() - started,
        "spend": status.spend_usd,
        "start": status.period_start,
        "end": status.period_end,
    }


def _exposition(url: str) -> Any:
    """A callable producing the /metrics body of `agentwatch serve` (no budgets)."""
    render = _servers.get(url)
    if render is None:
        from prometheus_client import generate_latest

        from agentwatch.config import Settings
        from agentwatch.server import make_server

        server = make_server(Settings(store_url=url), host="127.0.0.1", port=0)
        server.server_close()  # only its registry is used
        registry = server.registry
        cache = getattr(server, "exposition", None)  # the cached renderer, where it exists
        if cache is not None:
            render = _servers[url] = lambda: cache.render(False)
        else:
            render = _servers[url] = lambda: generate_latest(registry)
    return render


def w_metrics(url: str) -> dict[str, float]:
    """Collect and render /metrics once in process; the series count of the body."""
    render = _exposition(url)
    started = time.perf_counter()
    body = render()
    seconds = time.perf_counter() - started
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {"seconds": seconds, "series": series, "bytes": len(body)}


def _cli_in_process(args: list[str]) -> None:
    from agentwatch.cli import main

    saved = sys.argv
    sys.argv = ["agentwatch", *args]
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"agentwatch {' '.join(args)} exited {exc.code}") from None
    finally:
        sys.argv = saved


def w_profile(
    what: str, url: str, args: list[str], budgets: list[dict[str, Any]], now: float, top: int
) -> str:
    """cProfile of one measurement in this process (`_compare.profile_report`)."""
    import cProfile

    if what == "cli":
        action: Any = lambda: _cli_in_process(args)  # noqa: E731
    elif what == "budgets":
        from agentwatch.budgets import evaluate_budgets

        store = _store(url)
        specs = [_budget(b) for b in budgets]
        action = lambda: evaluate_budgets(store, specs, now)  # noqa: E731
    elif what == "metrics":
        action = _exposition(url)
    else:
        raise ValueError(f"nothing to profile called {what!r}")
    action()  # imports, the store opened, files in the page cache
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    action()
    profiler.disable()
    lines = [f"  wall {wall * 1e3:,.1f} ms without the profiler"]
    return "\n".join(lines + cmp.profile_report(profiler, top))


HANDLERS = {
    "hello": w_hello,
    "fingerprint": w_fingerprint,
    "build": w_build,
    "size": cmp.store_bytes,
    "pg_schema": cmp.pg_schema,
    "init_empty": w_init_empty,
    "budget": w_budget,
    "metrics": w_metrics,
    "profile": w_profile,
}


# =========================================================================== parent side


def _utc_day_end(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return end.timestamp()


class HistoryStores:
    """Finds or builds the history store of each version (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, cache: Path) -> None:
        self.args = args
        self.cache = cache
        self.data_end = _utc_day_end(time.time())
        self.day = dt.datetime.fromtimestamp(self.data_end - 1, dt.UTC).strftime("%Y%m%d")
        a = args
        self.params = (
            f"{a.runs}r-{a.agents}a-{a.models}m-{a.days}d-s{a.seed}-b{a.batch_size}-v{DATA_VERSION}"
        ) + (f"-t{a.teams}" if a.teams else "")  # the default key is unchanged

    def ensure(self, worker: cmp.Worker) -> dict[str, Any]:
        """URL and build facts of the store `worker`'s version reads; builds it if needed."""
        fingerprint = worker.call("fingerprint")
        if self.args.separate_stores:
            where = str(worker.version.exporter).encode()
            fingerprint += "-" + hashlib.sha256(where).hexdigest()[:6]
        key = f"{self.params}-{self.day}-{fingerprint}"
        lock_path = self.cache / f"history-{key}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same store: wait
            if self.args.store:
                return self._ensure_pg(worker, key, fingerprint)
            return self._ensure_sqlite(worker, key, fingerprint)

    def _build(self, worker: cmp.Worker, url: str) -> dict[str, Any]:
        a = self.args
        print(f"building {a.runs:,} runs for {worker.version.label} ...", file=sys.stderr)
        return dict(
            worker.call(
                "build",
                url=url,
                runs=a.runs,
                agents=a.agents,
                models=a.models,
                days=a.days,
                seed=a.seed,
                data_end=self.data_end,
                batch_size=a.batch_size,
                max_label_sets=a.max_label_sets,
                **({"teams": a.teams} if a.teams else {}),
            )
        )

    def _ensure_sqlite(self, worker: cmp.Worker, key: str, fingerprint: str) -> dict[str, Any]:
        path = self.cache / f"history-{key}.db"
        info_path = path.with_suffix(".json")
        if path.exists() and info_path.exists() and not self.args.rebuild:
            info = json.loads(info_path.read_text())
            info["cached"] = True
            return info
        for stale in self.cache.glob(f"history-{self.params}-*-{fingerprint}.*"):
            if not stale.name.startswith(f"history-{key}.") or stale.suffix != ".lock":
                stale.unlink(missing_ok=True)  # older days of this store, or a broken build
        building = path.with_name(path.name + ".building")
        for leftover in self.cache.glob(building.name + "*"):
            leftover.unlink()
        built = self._build(worker, f"sqlite:///{building}")
        for suffix in ("-wal", "-shm"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
        building.rename(path)
        info = {"url": f"sqlite:///{path}", "key": key, **built}
        info["bytes"] = worker.call("size", url=info["url"])
        info_path.write_text(json.dumps(info, indent=1))
        info["cached"] = False
        return info

    def _ensure_pg(self, worker: cmp.Worker, key: str, fingerprint: str) -> dict[str, Any]:
        base = self.args.store
        schema = "awbench_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        url = cmp.pg_url(base, schema)
        tag = hashlib.sha256(base.encode()).hexdigest()[:8]
        info_path = self.cache / f"history-pg{tag}-{key}.json"
        if (
            info_path.exists()
            and not self.args.rebuild
            and worker.call("pg_schema", base_url=base, schema=schema, action="exists")
        ):
            info = json.loads(info_path.read_text())
            info["cached"] = True
            return info
        for stale in self.cache.glob(f"history-pg{tag}-{self.params}-*-{fingerprint}.json"):
            old = json.loads(stale.read_text()).get("schema")
            if old and old != schema:
                worker.call("pg_schema", base_url=base, schema=old, action="drop")
            stale.unlink()
        worker.call("pg_schema", base_url=base, schema=schema, action="create")
        built = self._build(worker, url)
        info = {"url": url, "schema": schema, "key": key, **built}
        info["bytes"] = worker.call("size", url=url)
        info_path.write_text(json.dumps(info, indent=1))
        info["cached"] = False
        return info


@contextlib.contextmanager
def serving(version: cmp.Version, config: Path, home: Path) -> Iterator[str]:
    """A real `agentwatch serve` of `version` on a free port; yields its base URL."""
    proc = subprocess.Popen(
        cmp.cli_argv(version, "serve", "--config", str(config), "--port", "0"),
        env=cmp.version_env(version, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            match = re.search(r"(https?://\S+?)/metrics", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(60) or not found:
            raise cmp.BenchError(f"agentwatch serve of {version.label} did not start")
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _scrape(url: str) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=300) as response:
            response.read()
    except OSError as exc:
        raise cmp.BenchError(f"scrape failed: {exc}") from None
    return time.perf_counter() - started


def _concurrent_scrapes(url: str, n: int = 2) -> float:
    errors: list[BaseException] = []

    def one() -> None:
        try:
            _scrape(url)
        except cmp.BenchError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise cmp.BenchError(str(errors[0]))
    return time.perf_counter() - started


def clean(cache: Path, postgres: str | None) -> int:
    """Delete every cached SQLite store, and the cached schemas of `postgres` if given."""
    removed = 0
    for path in cache.glob("history-*"):
        if path.suffix == ".json" and path.name.startswith("history-pg"):
            if postgres is None:
                continue
            tag = hashlib.sha256(postgres.encode()).hexdigest()[:8]
            if not path.name.startswith(f"history-pg{tag}-"):
                continue
            cmp.pg_schema(postgres, json.loads(path.read_text())["schema"], "drop")
        path.unlink()
        removed += 1
    print(f"removed {removed} cached files from {cache}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.clean:
        return clean(cmp.cache_dir(args.cache_dir), args.store)
    versions = cmp.versions(args.compare_with, args.compare_python)
    labels = [v.label for v in versions]
    cache = cmp.cache_dir(args.cache_dir)
    script = Path(__file__).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="aw-history-"))
    workers: dict[str, cmp.Worker] = {}
    try:
        for v in versions:
            home = scratch / v.label
            home.mkdir()
            workers[v.label] = cmp.Worker(v, script, home)
        print(cmp.machine_line())
        for v in versions:
            hello = workers[v.label].call("hello")
            print(
                f"{v.label}: {v.describe} (agentwatch {hello['version']} from "
                f"{hello['agentwatch']}, SQLite {hello['sqlite']})"
            )
        stores = HistoryStores(args, cache)
        infos = {v.label: stores.ensure(workers[v.label]) for v in versions}
        for v in versions:
            info = infos[v.label]
            how = "cached" if info["cached"] else "built now"
            print(
                f"{v.label} store ({how}): {info['url']}; built at {info['rate']:,.0f} runs/s "
                f"({info['seconds']:.0f} s), {info['bytes'] / 2**20:,.0f} MiB"
            )
        if args.build_only:
            return 0
        fleet = _workload.Fleet(args.agents, args.models, args.seed)
        budgets = _workload.budgets(fleet)
        rows = measure_all(args, stores.data_end, versions, workers, infos, budgets, scratch)
        print()
        print(
            f"{args.runs:,} runs, {args.agents} agents x {args.models} models, {args.days} days "
            f"to {dt.datetime.fromtimestamp(stores.data_end, dt.UTC):%Y-%m-%d %H:%M} UTC, "
            f"{'PostgreSQL' if args.store else 'SQLite'}; median of {args.repeat}"
        )
        cmp.print_table(rows, labels)
        if args.profile:
            profile_all(args, versions, workers, infos, budgets)
    finally:
        for worker in workers.values():
            worker.close()
        if args.keep_scratch:
            print(f"scratch kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


#: Exact figures of `monitor stats --json` (percentiles may be approximate by design).
_EXACT = (
    "total_executions",
    "completed",
    "failed",
    "total_cost",
    "input_tokens",
    "output_tokens",
    "llm_calls",
    "tool_calls",
)


def _stats_totals(version: cmp.Version, env: dict[str, str], url: str) -> dict[str, float]:
    """The exact totals `monitor stats --json` of `version` prints (those it has)."""
    done = subprocess.run(
        cmp.cli_argv(version, "monitor", "stats", "--json", "--store", url),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        printed = json.loads(done.stdout)
    except ValueError:
        return {}
    found = printed.get("stats", printed) if isinstance(printed, dict) else {}
    return {k: float(found[k]) for k in _EXACT if isinstance(found.get(k), int | float)}


_PERIODS = {"day": "daily", "week": "weekly", "month": "monthly"}


def measure_attributed(
    args: argparse.Namespace,
    versions: list[cmp.Version],
    workers: dict[str, cmp.Worker],
    url: Any,
    env: Any,
    rows: list[cmp.Row],
    now: float,
) -> None:
    """With `--teams`: budgets and CLI queries scoped by one team (`team-0`)."""
    n = args.repeat
    scope = [["team", "team-0"]]
    for period, limit in (("day", 50.0), ("month", 1000.0)):
        spec = {"name": f"team-{period}", "period": period, "limit_usd": limit,
                "attributes": scope}  # fmt: skip
        cmp.measure(
            rows,
            f"budget, {_PERIODS[period]}, team team-0 (1 of {args.teams} teams)",
            "s",
            GOALS["budget"],
            versions,
            n,
            lambda v, spec=spec: float(
                workers[v.label].call("budget", url=url(v), spec=spec, now=now)["seconds"]
            ),
            warmup=True,
        )
    for what, cli_args in (
        ("`monitor stats --attr team=team-0`", ("monitor", "stats")),
        ("`monitor stats --since 7d --attr team=team-0`", ("monitor", "stats", "--since", "7d")),
        ("`monitor cost --attr team=team-0` (by agent, 7d)", ("monitor", "cost")),
    ):
        cmp.measure(
            rows,
            what,
            "s",
            GOALS["stats"],
            versions,
            n,
            lambda v, a=cli_args: cmp.time_command(
                cmp.cli_argv(v, *a, "--attr", "team=team-0", "--store", url(v)), env(v)
            ),
            warmup=True,
        )


def measure_all(
    args: argparse.Namespace,
    data_end: float,
    versions: list[cmp.Version],
    workers: dict[str, cmp.Worker],
    infos: dict[str, dict[str, Any]],
    budgets: list[dict[str, Any]],
    scratch: Path,
) -> list[cmp.Row]:
    rows: list[cmp.Row] = []
    n = args.repeat
    runs = f"{args.runs / 1e6:g}M" if args.runs >= 1_000_000 else f"{args.runs:,}"

    def env(v: cmp.Version) -> dict[str, str]:
        return cmp.version_env(v, scratch / v.label)

    def url(v: cmp.Version) -> str:
        return str(infos[v.label]["url"])

    empty: dict[str, str] = {}
    for v in versions:
        path = scratch / v.label / "empty.db"
        workers[v.label].call("init_empty", path=str(path))
        empty[v.label] = f"sqlite:///{path}"

    def cli(*cli_args: str) -> Any:
        return lambda v: cmp.time_command(cmp.cli_argv(v, *cli_args), env(v))

    cmp.measure(
        rows,
        "`agentwatch --help` (start-up)",
        "s",
        GOALS["help"],
        versions,
        n,
        cli("--help"),
        warmup=True,
    )
    cmp.measure(
        rows,
        "`monitor stats`, empty store (start-up)",
        "s",
        GOALS["startup"],
        versions,
        n,
        lambda v: cmp.time_command(
            cmp.cli_argv(v, "monitor", "stats", "--store", empty[v.label]), env(v)
        ),
        warmup=True,
    )
    queries = [
        (f"`monitor stats` ({runs} runs)", ("monitor", "stats"), GOALS["stats"]),
        ("`monitor stats --since 7d`", ("monitor", "stats", "--since", "7d"), GOALS["stats"]),
        ("`monitor cost` (by agent, 7d)", ("monitor", "cost"), GOALS["cost"]),
        (
            "`monitor cost --group-by date --since 30d`",
            ("monitor", "cost", "--group-by", "date", "--since", "30d"),
            GOALS["cost"],
        ),
    ]
    for what, cli_args, goal in queries:
        cmp.measure(
            rows,
            what,
            "s",
            goal,
            versions,
            n,
            lambda v, a=cli_args: cmp.time_command(cmp.cli_argv(v, *a, "--store", url(v)), env(v)),
            warmup=True,
        )

    now = time.time()
    spends: dict[str, dict[str, float]] = {v.label: {} for v in versions}
    for spec in budgets:
        scope = ", ".join(f"{k} {spec[k]}" for k in ("agent", "model", "provider") if k in spec)

        period: list[float] = []

        def once(
            v: cmp.Version, spec: dict[str, Any] = spec, period: list[float] = period
        ) -> float:
            got = workers[v.label].call("budget", url=url(v), spec=spec, now=now)
            spends[v.label][spec["name"]] = got["spend"]
            period[:] = [got["start"], got["end"]]
            return float(got["seconds"])

        row = cmp.measure(
            rows,
            f"budget, {_PERIODS[spec['period']]}, {scope or 'everything'}",
            "s",
            GOALS["budget"],
            versions,
            n,
            once,
            warmup=True,  # the first evaluation opens the store: not what a scrape pays
        )
        if period:
            first = data_end - args.days * 86400
            days = (min(period[1], data_end) - max(period[0], first)) / 86400
            row.what += f" ({max(0.0, days):.1f} days of data)"

    if args.teams:
        measure_attributed(args, versions, workers, url, env, rows, now)

    series: dict[str, float] = {}

    def metrics(v: cmp.Version) -> float:
        got = workers[v.label].call("metrics", url=url(v))
        series[v.label] = got["series"]
        return float(got["seconds"])

    cmp.measure(
        rows, "/metrics in process, first (no budgets)", "s", GOALS["metrics"], versions, 1, metrics
    )
    cmp.measure(
        rows, "/metrics in process, repeated", "s", GOALS["metrics_cached"], versions, n, metrics
    )
    series_row = cmp.Row("series on /metrics (no budgets)", "count", "~10k at 200 × 10")
    series_row.cells.update(series)
    rows.append(series_row)

    configs: dict[str, Path] = {}
    for v in versions:
        config = scratch / v.label / "serve.yaml"
        config.write_text(json.dumps({"store_url": url(v), "budgets": budgets}))
        configs[v.label] = config
    with contextlib.ExitStack() as stack:
        bases: dict[str, str] = {}
        for v in versions:
            try:
                bases[v.label] = stack.enter_context(
                    serving(v, configs[v.label], scratch / v.label)
                )
            except cmp.BenchError as exc:
                print(f"  {exc}", file=sys.stderr)

        def scrape(v: cmp.Version) -> float:
            if v.label not in bases:
                raise cmp.BenchError("serve did not start")
            return _scrape(bases[v.label])

        def concurrent(v: cmp.Version) -> float:
            if v.label not in bases:
                raise cmp.BenchError("serve did not start")
            return _concurrent_scrapes(bases[v.label])

        cmp.measure(
            rows,
            f"/metrics over HTTP, first scrape ({len(budgets)} budgets)",
            "s",
            GOALS["metrics"],
            versions,
            1,
            scrape,
        )
        cmp.measure(
            rows,
            "/metrics over HTTP, repeated scrapes",
            "s",
            GOALS["metrics_cached"],
            versions,
            n,
            scrape,
        )
        cmp.measure(
            rows,
            "/metrics over HTTP, 2 concurrent scrapes (wall)",
            "s",
            "share one render",
            versions,
            max(1, n // 2),
            concurrent,
        )

    size = cmp.Row(
        f"store size / run ({'PostgreSQL' if args.store else 'SQLite'})",
        "B",
        "≤ 450 B" if args.store else "≤ 300 B",
    )
    build = cmp.Row("history build through BatchWriter", "/s", "(set-up, not a goal)")
    for v in versions:
        size.cells[v.label] = infos[v.label]["bytes"] / args.runs
        build.cells[v.label] = infos[v.label]["rate"]
    rows += [size, build]
    if len(versions) == 2:
        a, b = (spends[v.label] for v in versions)
        differ = [k for k in a if k in b and abs(a[k] - b[k]) > 1e-6 * max(1.0, abs(a[k]))]
        agree = cmp.Row("budget spends agree between versions", "text")
        agree.cells[versions[1].label] = "yes" if not differ else "NO: " + ", ".join(differ)
        rows.append(agree)
        totals = {v.label: _stats_totals(v, env(v), url(v)) for v in versions}
        a_totals, b_totals = totals[versions[0].label], totals[versions[1].label]
        shared = sorted(set(a_totals) & set(b_totals))
        wrong = [
            k for k in shared if abs(a_totals[k] - b_totals[k]) > 1e-6 * max(1.0, abs(a_totals[k]))
        ]
        same = cmp.Row("`monitor stats --json` totals agree between versions", "text")
        same.cells[versions[1].label] = (
            "n/a" if not shared else "yes" if not wrong else "NO: " + ", ".join(wrong)
        )
        rows.append(same)
    return rows


def profile_all(
    args: argparse.Namespace,
    versions: list[cmp.Version],
    workers: dict[str, cmp.Worker],
    infos: dict[str, dict[str, Any]],
    budgets: list[dict[str, Any]],
) -> None:
    targets: list[tuple[str, str, list[str]]] = [
        ("monitor stats", "cli", ["monitor", "stats"]),
        ("monitor cost", "cli", ["monitor", "cost"]),
        (
            "monitor cost --group-by date --since 30d",
            "cli",
            ["monitor", "cost", "--group-by", "date", "--since", "30d"],
        ),
        (f"all {len(budgets)} budgets", "budgets", []),
        ("/metrics collection and rendering (no budgets)", "metrics", []),
    ]
    for v in versions:
        url = str(infos[v.label]["url"])
        for title, what, cli_args in targets:
            full = [*cli_args, "--store", url] if cli_args else []
            print(f"\n## profile, {v.label}: {title}")
            try:
                text = workers[v.label].call(
                    "profile",
                    what=what,
                    url=url,
                    args=full,
                    budgets=budgets,
                    now=time.time(),
                    top=args.top,
                )
            except cmp.BenchError as exc:
                text = f"error: {exc}"
            print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in the store (1M)")
    parser.add_argument("--agents", type=int, default=200, help="distinct agents (200)")
    parser.add_argument("--models", type=int, default=10, help="distinct models (10)")
    parser.add_argument("--days", type=int, default=30, help="days the runs span (30)")
    parser.add_argument("--seed", type=int, default=10, help="seed of the generated mix (10)")
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="writer batch size of the build (5000)"
    )
    parser.add_argument(
        "--max-label-sets",
        type=int,
        default=2000,
        help="writer label-set cap of the build (2000, the default)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="PostgreSQL database (the store is a schema in it); "
        "default: a SQLite file in the cache",
    )
    parser.add_argument(
        "--teams",
        type=int,
        default=0,
        help="spread runs and calls over this many `team` attribution values and also time "
        "queries scoped by one team (0: no attribution, the default mix)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure (5)")
    cmp.add_compare_arguments(parser)
    parser.add_argument("--cache-dir", default=None, help="where built stores are kept")
    parser.add_argument("--rebuild", action="store_true", help="ignore cached stores")
    parser.add_argument(
        "--separate-stores",
        action="store_true",
        help="one store per version even when their schema and writer agree",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build (or find) the stores, measure nothing"
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="delete the cached stores (with --store: that database's cached schemas too)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print cProfile top entries per query"
    )
    parser.add_argument("--top", type=int, default=12, help="profile entries shown (12)")
    parser.add_argument("--keep-scratch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return cmp.serve_worker(HANDLERS)
    if args.runs < 1 or args.repeat < 1:
        parser.error("--runs and --repeat must be >= 1")
    try:
        return run(args)
    except cmp.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
