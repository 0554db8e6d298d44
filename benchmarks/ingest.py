"""Ingest throughput: agentwatch's batch writer vs. one transaction per execution.

Both measured in one run, on the same machine and disk, into fresh SQLite files:

- agentwatch: N `ExecutionFinished` records (each with one `llm_call` event) submitted to a
  `BatchWriter`, then `flush()`; timed from the first submit until flush returns (everything
  committed: rows, late totals, rollups). Records are built before the clock starts: that is
  capture's cost, measured elsewhere.
- per-execution (the seeds' style): for each execution open a connection, insert one row
  (events and metrics as JSON), commit, close; SQLite defaults (rollback journal, full sync).

Usage:
    python benchmarks/ingest.py [--n 100000] [--baseline-n 2000] [--batch-size 500] [--repeat 3]

Each measurement runs `--repeat` times on fresh files; the best and the median are printed
(other processes on a shared machine only ever make a run slower).

Target: >= 50,000 executions/s through the writer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentwatch.model import Event, Execution, ExecutionFinished
from agentwatch.store import open_store
from agentwatch.writer import BatchWriter

TARGET = 50_000.0


def make_records(n: int, start: float) -> list[ExecutionFinished]:
    """N finished executions over 8 agents, 3 models, 10% failures, one LLM call each."""
    agents = [f"agent-{i}" for i in range(8)]
    models = [("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic"), ("llama3", "ollama")]
    items = []
    for i in range(n):
        t = start + i * 0.001
        model, provider = models[i % 3]
        failed = i % 10 == 0
        execution = Execution(
            id=f"exec_{i:08d}",
            agent=agents[i % 8],
            started_at=t,
            ended_at=t + 0.2 + (i % 50) * 0.05,
            status="failed" if failed else "completed",
            error_type="TimeoutError" if failed else None,
        )
        execution.events.append(
            Event(
                kind="llm_call",
                name="chat",
                started_at=t + 0.01,
                duration=0.15 + (i % 40) * 0.03,
                model=model,
                provider=provider,
                input_tokens=100 + i % 300,
                output_tokens=20 + i % 200,
                cost_usd=0.0001 * (i % 7),
            )
        )
        items.append(ExecutionFinished(execution))
    return items


def bench_writer(url: str, items: list[ExecutionFinished], batch_size: int) -> float:
    """Executions per second through BatchWriter into the store at `url` (flush included)."""
    warm = open_store(url)  # schema creation is a one-time cost, not ingest
    warm.migrate()
    warm.close()
    writer = BatchWriter(
        lambda: open_store(url),
        queue_size=len(items),
        batch_size=batch_size,
        flush_interval=0.05,
    )
    submit = writer.submit
    started = time.perf_counter()
    for item in items:
        submit(item)
    ok = writer.flush(timeout=600)
    elapsed = time.perf_counter() - started
    writer.close()
    dropped = sum(writer.stats.dropped().values())
    if not ok or dropped:
        raise SystemExit(f"writer did not store everything (flush={ok}, dropped={dropped})")
    with open_store(url) as store:
        stored = store.count_executions()
    if stored != len(items):
        raise SystemExit(f"expected {len(items)} executions, found {stored}")
    return len(items) / elapsed


def stream_peak(url: str) -> tuple[int, float, float]:
    """Stream every execution back with `iter_executions`: (rows, rows/s, peak MiB)."""
    import tracemalloc

    with open_store(url) as store:
        tracemalloc.start()
        started = time.perf_counter()
        rows = sum(1 for _ in store.iter_executions(chunk_size=1000))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return rows, rows / elapsed, peak / 2**20


def bench_postgres(url: str, items: list[ExecutionFinished], batch_size: int) -> float:
    """Like `bench_writer`, into a fresh schema of the PostgreSQL database at `url`."""
    import uuid

    import psycopg

    schema = f"aw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in url else "?"
            return bench_writer(f"{url}{separator}options=-csearch_path%3D{schema}", items,
                                batch_size)  # fmt: skip
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench_per_execution(path: Path, items: list[ExecutionFinished]) -> float:
    """Executions per second, one connection + insert + commit + close each."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE executions (id TEXT PRIMARY KEY, agent_name TEXT, started_at REAL, "
            "ended_at REAL, status TEXT, error TEXT, events TEXT, metrics TEXT)"
        )
        conn.execute("CREATE INDEX ix_agent ON executions (agent_name, started_at)")
    started = time.perf_counter()
    for item in items:
        ex = item.execution
        events = [
            {"type": e.kind, "name": e.name, "timestamp": e.started_at, "duration": e.duration,
             "model": e.model, "prompt_tokens": e.input_tokens,
             "completion_tokens": e.output_tokens, "cost": e.cost_usd}
            for e in ex.events
        ]  # fmt: skip
        metrics = {
            "total_cost": sum(e.cost_usd or 0.0 for e in ex.events),
            "total_tokens": sum(e.input_tokens + e.output_tokens for e in ex.events),
            "llm_calls": len(ex.events),
        }
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ex.id, ex.agent, ex.started_at, ex.ended_at, ex.status, ex.error_message,
             json.dumps(events), json.dumps(metrics)),
        )  # fmt: skip
        conn.commit()
        conn.close()
    return len(items) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="executions through the writer")
    parser.add_argument(
        "--baseline-n",
        type=int,
        default=2_000,
        help="executions for the per-execution baseline (slow: one fsync'd commit each)",
    )
    parser.add_argument("--batch-size", type=int, default=500, help="writer batch size")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also measure the writer into this PostgreSQL database (in a throw-away schema)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--dir", type=Path, default=None, help="directory for the databases")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    items = make_records(args.n, time.time() - args.n)
    baseline_items = items[: max(1, min(args.baseline_n, args.n))]
    writer_rates: list[float] = []
    baseline_rates: list[float] = []
    for run in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            base = Path(tmp)
            url = f"sqlite:///{base / 'writer.db'}"
            writer_rates.append(bench_writer(url, items, args.batch_size))
            if run == 0:
                streamed = stream_peak(url)
            baseline_rates.append(bench_per_execution(base / "baseline.db", baseline_items))
        print(
            f"run {run + 1}: writer {writer_rates[-1]:,.0f}/s, "
            f"per-execution {baseline_rates[-1]:,.0f}/s",
            file=sys.stderr,
        )
    writer_rate = max(writer_rates)
    baseline_rate = max(baseline_rates)
    cpus = os.cpu_count()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {cpus} CPUs")
    print(
        f"agentwatch BatchWriter (batch {args.batch_size}): {args.n:>9,} executions  "
        f"best {writer_rate:>9,.0f}/s  median {statistics.median(writer_rates):>9,.0f}/s"
    )
    print(
        f"per-execution connect+insert+commit:  {len(baseline_items):>9,} executions  "
        f"best {baseline_rate:>9,.0f}/s  median {statistics.median(baseline_rates):>9,.0f}/s"
    )
    print(f"ratio (best/best): {writer_rate / baseline_rate:,.1f}x")
    rows, rate, peak = streamed
    print(
        f"iter_executions streamed {rows:,} rows back at {rate:,.0f} rows/s, "
        f"peak Python memory {peak:.1f} MiB"
    )
    if args.postgres:
        pg_rates = [bench_postgres(args.postgres, items, args.batch_size) for _ in baseline_rates]
        print(
            f"agentwatch BatchWriter into PostgreSQL: {args.n:>9,} executions  "
            f"best {max(pg_rates):>9,.0f}/s  median {statistics.median(pg_rates):>9,.0f}/s"
        )
    verdict = "meets" if writer_rate >= TARGET else "MISSES"
    print(f"target >= {TARGET:,.0f} executions/s through the writer: {verdict}")
    return 0 if writer_rate >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
