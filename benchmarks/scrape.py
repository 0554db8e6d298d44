"""`/metrics` of `agentwatch serve` at ~10k series: first scrape, unchanged store, after a write.

The rollup table of a history store (built and cached by `history.py`, same parameters) is
copied into a scratch SQLite store per version (or a throw-away schema of `--postgres`); a
scrape without budgets reads nothing else. Then, in process and through the server's own
exposition (`make_server(...).exposition`, or `generate_latest` of its registry for a
version without one), each `--repeat` times, alternating between the versions (medians,
wall time and CPU time of the scraping thread):

- first scrape: the first body of a new server (store opened, rollups read, all rendered);
- unchanged store: the same server again (served from the cache where there is one);
- after a write: one batch of `--touch` runs of the history's mix written through the
  store's own write path (`RollupBuilder` + `Store.write_batch`, untimed), then one body.
  Both versions get the same writes; the lines that changed are counted (2 runs change
  about 1% of the ~10k lines of the 200 x 10 history).

Usage:
    python benchmarks/scrape.py                           # the 1M-run, 200 x 10 store
    python benchmarks/scrape.py --runs 200000 --repeat 9  # same label sets, builds faster
    python benchmarks/scrape.py --compare-with PATH       # another checkout, same run
    python benchmarks/scrape.py --profile                 # + cProfile of a scrape after a write
    python benchmarks/scrape.py --postgres postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _compare as cmp
import history

GOAL = "≤ 50 ms"

# =========================================================================== worker side

_state: dict[str, Any] = {}


_COLUMNS = "sample, labels, value, exemplar_execution_id, exemplar_value, exemplar_timestamp"


def w_setup(source_url: str, target_url: str) -> dict[str, int]:
    """A fresh store at `target_url` holding the rollups (and last write) of `source_url`."""
    from agentwatch.store import open_store

    store = open_store(target_url)
    store.migrate()
    store.close()
    source = sqlite3.connect(source_url[len("sqlite:///") :])
    try:
        rows = source.execute(f"SELECT {_COLUMNS} FROM rollups").fetchall()
        meta = source.execute("SELECT key, value FROM meta").fetchall()
    finally:
        source.close()
    mark = "?"
    if target_url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(target_url[len("sqlite:///") :])
    else:
        import psycopg

        conn, mark = psycopg.connect(target_url), "%s"
    try:
        cur = conn.cursor()
        marks = ", ".join([mark] * 6)
        cur.executemany(f"INSERT INTO rollups ({_COLUMNS}) VALUES ({marks})", rows)
        cur.execute("DELETE FROM meta")
        cur.executemany(f"INSERT INTO meta (key, value) VALUES ({mark}, {mark})", meta)
        conn.commit()
    finally:
        conn.close()
    cmp.settle(target_url)
    _state["url"] = target_url
    return {"rows": len(rows)}


def _new_render() -> Any:
    from prometheus_client import generate_latest

    from agentwatch.config import Settings
    from agentwatch.server import make_server

    server = make_server(Settings(store_url=_state["url"]), host="127.0.0.1", port=0)
    server.server_close()  # only its exposition is used
    old = _state.pop("server", None)
    if old is not None:
        old.lanes.metrics.close()
    _state["server"] = server
    cache = getattr(server, "exposition", None)
    if cache is not None:
        return lambda: cache.render(False)
    return lambda: generate_latest(server.registry)


def _timed(render: Any) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.thread_time()
    body = render()
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    old = _state.get("body", b"")
    known = set(old.splitlines())
    lines = [line for line in body.splitlines() if line and not line.startswith(b"#")]
    _state["body"] = body
    return {
        "seconds": seconds,
        "cpu": cpu,
        "series": len(lines),
        "changed": sum(1 for line in lines if line not in known),
    }


def w_first() -> dict[str, float]:
    """A new server's first body."""
    _state["render"] = render = _new_render()
    return _timed(render)


def w_again() -> dict[str, float]:
    """The same server's body again (nothing written since)."""
    return _timed(_state["render"])


def _write(runs: int, seed: int, agents: int, models: int) -> None:
    from agentwatch.cardinality import CardinalityGuard
    from agentwatch.rollups import RollupBuilder
    from agentwatch.store import open_store

    (items,) = history.history_items(runs, agents, models, 1, seed, time.time(), runs)
    store = open_store(_state["url"])
    try:
        store.write_batch(RollupBuilder(CardinalityGuard(2000)).build(items))
    finally:
        store.close()


def w_after_write(runs: int, seed: int, agents: int, models: int) -> dict[str, float]:
    """Write `runs` runs (untimed), then the body."""
    _write(runs, seed, agents, models)
    return _timed(_state["render"])


def w_profile(runs: int, seed: int, agents: int, models: int, top: int) -> str:
    """cProfile of one body after a write (`_compare.profile_report`)."""
    import cProfile

    render = _state["render"]
    _write(runs, seed, agents, models)
    started = time.perf_counter()
    render()
    wall = time.perf_counter() - started
    _write(runs, seed + 1, agents, models)
    profiler = cProfile.Profile()
    profiler.enable()
    render()
    profiler.disable()
    lines = [f"  wall {wall * 1e3:,.1f} ms without the profiler"]
    return "\n".join(lines + cmp.profile_report(profiler, top))


HANDLERS = {
    **history.HANDLERS,  # what `history.HistoryStores` asks to find or build a store
    "setup": w_setup,
    "first": w_first,
    "again": w_again,
    "after_write": w_after_write,
    "profile": w_profile,
}


# =========================================================================== parent side


def run(args: argparse.Namespace) -> int:
    versions = cmp.versions(args.compare_with, args.compare_python)
    labels = [v.label for v in versions]
    cache = cmp.cache_dir(args.cache_dir)
    scratch = Path(tempfile.mkdtemp(prefix="aw-scrape-"))
    workers: dict[str, cmp.Worker] = {}
    schemas: list[str] = []
    try:
        for v in versions:
            home = scratch / v.label
            home.mkdir()
            workers[v.label] = cmp.Worker(v, Path(__file__).resolve(), home)
        print(cmp.machine_line())
        stores = history.HistoryStores(args, cache)
        rows_in: dict[str, int] = {}
        for v in versions:
            hello = workers[v.label].call("hello")
            info = stores.ensure(workers[v.label])
            target = f"sqlite:///{scratch / v.label / 'scrape.db'}"
            if args.postgres:
                schema = f"i10_scrape_bench_{v.label}_{os.getpid()}"
                cmp.pg_schema(args.postgres, schema, "create")
                schemas.append(schema)
                target = cmp.pg_url(args.postgres, schema)
            copied = workers[v.label].call("setup", source_url=info["url"], target_url=target)
            rows_in[v.label] = copied["rows"]
            print(
                f"{v.label}: {v.describe} (agentwatch from {hello['agentwatch']}); "
                f"{copied['rows']:,} rollup rows from {info['url']}"
            )
        rows: list[cmp.Row] = []
        facts: dict[str, dict[str, list[float]]] = {
            v.label: {"series": [], "changed": []} for v in versions
        }
        cpu: dict[str, dict[str, list[float]]] = {}

        def note(what: str, v: cmp.Version, got: dict[str, float]) -> float:
            cpu.setdefault(what, {}).setdefault(v.label, []).append(got["cpu"])
            facts[v.label]["series"].append(got["series"])
            return float(got["seconds"])

        shape = {"agents": args.agents, "models": args.models}

        def timed(op: str) -> Any:
            return lambda v: note(op, v, workers[v.label].call(op))

        # Each version gets the same sequence of writes (seeded per round), so both stores
        # stay equal; rounds alternate the order of the versions.
        seeds: dict[str, int] = {v.label: 1000 for v in versions}

        def after_write(v: cmp.Version) -> float:
            seeds[v.label] += 1
            got = workers[v.label].call(
                "after_write", runs=args.touch, seed=seeds[v.label], **shape
            )
            facts[v.label]["changed"].append(got["changed"])
            return note("after_write", v, got)

        cmp.measure(
            rows, "first scrape (new server)", "s", "", versions, args.repeat, timed("first")
        )
        cmp.measure(rows, "unchanged store", "s", GOAL, versions, args.repeat, timed("again"))
        cmp.measure(
            rows,
            f"after a write of {args.touch} runs",
            "s",
            GOAL,
            versions,
            args.repeat,
            after_write,
        )
        for op, what in (
            ("first", "… first scrape, CPU of the scraping thread"),
            ("again", "… unchanged store, CPU"),
            ("after_write", "… after a write, CPU"),
        ):
            row = cmp.Row(what, "s", "")
            for label, samples in cpu.get(op, {}).items():
                row.cells[label], row.detail[label] = cmp.summarise(samples)
            rows.append(row)
        for what, key in (("series on /metrics", "series"), ("lines changed per write", "changed")):
            row = cmp.Row(what, "count", "")
            for label in labels:
                values = sorted(facts[label][key])
                if values:
                    row.cells[label] = values[len(values) // 2]
                    row.detail[label] = f"{values[0]:.0f}–{values[-1]:.0f}"
            rows.append(row)
        print()
        print(
            f"history store of {args.runs:,} runs, {args.agents} agents x {args.models} models "
            f"({', '.join(f'{k} {n:,} rows' for k, n in rows_in.items())}), "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}, in process, "
            f"no budgets; median of {args.repeat}"
        )
        cmp.print_table(rows, labels)
        if args.profile:
            for v in versions:
                print(f"\nprofile of a scrape after a write, {v.label}:")
                print(
                    workers[v.label].call(
                        "profile", runs=args.touch, seed=10**6, top=args.top, **shape
                    )
                )
    finally:
        for worker in workers.values():
            worker.close()
        for schema in schemas:
            cmp.pg_schema(args.postgres, schema, "drop")
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs of the history store")
    parser.add_argument("--agents", type=int, default=200, help="distinct agents (200)")
    parser.add_argument("--models", type=int, default=10, help="distinct models (10)")
    parser.add_argument("--days", type=int, default=30, help="days the runs span (30)")
    parser.add_argument("--seed", type=int, default=10, help="seed of the history (10)")
    parser.add_argument("--batch-size", type=int, default=5000, help=argparse.SUPPRESS)
    parser.add_argument("--max-label-sets", type=int, default=2000, help=argparse.SUPPRESS)
    # `history.HistoryStores` reads it (history.py's own option); no teams here.
    parser.add_argument("--teams", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--touch", type=int, default=2, help="runs per write (2: ~1%% of lines)")
    parser.add_argument("--repeat", type=int, default=9, help="timings per figure (9)")
    cmp.add_compare_arguments(parser)
    parser.add_argument("--cache-dir", default=None, help="where history stores are kept")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="scrape a PostgreSQL copy of the rollups (a throw-away schema in that database)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile of one scrape")
    parser.add_argument("--top", type=int, default=15, help="profile entries shown (15)")
    args = parser.parse_args(argv)
    args.store, args.rebuild, args.separate_stores = None, False, False
    if args.worker:
        return cmp.serve_worker(HANDLERS)
    if args.runs < 1 or args.repeat < 1 or args.touch < 1:
        parser.error("--runs, --repeat and --touch must be >= 1")
    try:
        return run(args)
    except cmp.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
