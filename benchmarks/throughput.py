"""Ingest throughput at two label shapes: end to end in one process, the writer alone, bytes.

- **end to end**: `with agentwatch.track(agent): agentwatch.record_llm_call(model, ...)`,
  the background writer in the same process, timed from the first run until
  `agentwatch.flush()` returns (everything committed). Capture, in-process metrics, pricing,
  the queue, the writer's rows and rollups all share the one process, as in an agent.
  Measured at 8 agents x 3 models and at 200 agents x 10 models (`_workload.py`: every
  agent uses three of the models, Zipf-distributed agents), on SQLite and, with
  `--postgres URL`, on PostgreSQL (in a throw-away schema).
- **writer only**: the same runs built as records beforehand, submitted to a `BatchWriter`
  (default batch size) and flushed: what the writer sustains, at 200 x 10 labels. Also its
  CPU per run (least of the repeats): this process's, and, for a PostgreSQL server on this
  host, that of the server process serving the writer (steadier than runs/s under load).
- **bytes per run**: the store after the end-to-end run at 200 x 10 (SQLite file size, or the
  `pg_total_relation_size` of every table of the schema) divided by the runs in it.

Each figure is the best of `--repeat` runs on fresh stores (a busy machine only ever makes
a run slower). With `--compare-with PATH` every figure is also measured for that checkout,
alternating, as in `history.py` (see `_compare.py`).

Usage:
    python benchmarks/throughput.py [--runs 50000] [--repeat 3] [--postgres URL]
    python benchmarks/throughput.py --compare-with /tmp/aw-before
    python benchmarks/throughput.py --profile    # + cProfile of capture and writer threads
    python benchmarks/throughput.py --only writer --backend postgresql --postgres URL
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _compare as cmp
import _workload

SHAPES = ((8, 3), (200, 10))
GOALS = {
    (8, 3): "≥ 30k runs/s",
    (200, 10): "≥ 15k runs/s",
    "writer_pg": "≥ 20k runs/s",
    "bytes_sqlite": "≤ 300 B",
    "bytes_pg": "≤ 450 B",
}


# =========================================================================== worker side


def _plan(agents: int, models: int, runs: int, seed: int) -> list[tuple[Any, ...]]:
    """(agent, model, provider, input, output, duration, failed) of each run's one call."""
    fleet = _workload.Fleet(agents, models, seed)
    plan = []
    for _ in range(runs):
        run = fleet.next_run()
        call = run.calls[0]
        plan.append(
            (
                run.agent,
                call.model.name,
                call.model.provider,
                call.input_tokens,
                call.output_tokens,
                call.duration,
                call.failed,
            )
        )
    return plan


def _drive(plan: list[tuple[Any, ...]]) -> None:
    import agentwatch

    track, record = agentwatch.track, agentwatch.record_llm_call
    for agent, model, provider, tin, tout, duration, failed in plan:
        with track(agent):
            record(
                model,
                provider=provider,
                input_tokens=tin,
                output_tokens=tout,
                duration=duration,
                status="failure" if failed else "success",
            )


def _configure(url: str, capacity: int) -> Any:
    from prometheus_client import CollectorRegistry

    import agentwatch

    return agentwatch.configure(store_url=url, registry=CollectorRegistry(), queue_size=capacity)


def w_end_to_end(
    url: str, agents: int, models: int, runs: int, warmup: int, seed: int
) -> dict[str, Any]:
    """Runs/s of track + one record_llm_call with the writer in this process, until flushed."""
    import agentwatch

    plan = _plan(agents, models, runs + warmup, seed)
    runtime = _configure(url, runs + warmup + 1)
    _drive(plan[:warmup])  # opens the store, starts the writer, loads the price map
    if not agentwatch.flush(timeout=120):
        raise RuntimeError("warm-up did not flush")
    started = time.perf_counter()
    _drive(plan[warmup:])
    flushed = agentwatch.flush(timeout=None)
    seconds = time.perf_counter() - started
    dropped = sum(runtime.writer.stats.dropped().values()) if runtime.writer else -1
    agentwatch.close()
    if not flushed or dropped:
        raise RuntimeError(f"not everything was stored (dropped {dropped})")
    cmp.settle(url)
    return {"rate": runs / seconds, "bytes_per_run": cmp.store_bytes(url) / (runs + warmup)}


def w_writer(url: str, agents: int, models: int, runs: int, seed: int) -> dict[str, Any]:
    """Runs/s of a BatchWriter alone (records built beforehand), default batch size."""
    from agentwatch.model import Event, Execution, ExecutionFinished
    from agentwatch.store import open_store
    from agentwatch.writer import BatchWriter

    try:
        from agentwatch.capture import new_execution_id
    except ImportError:  # pragma: no cover - a version without it

        def new_execution_id() -> str:
            return f"exec_{uuid.uuid4().hex}"

    fleet = _workload.Fleet(agents, models, seed)
    prices = {m.name: m for m in fleet.models}
    items = []
    now = time.time() - runs * 0.001
    for i, (agent, model, provider, tin, tout, duration, failed) in enumerate(
        _plan(agents, models, runs, seed)
    ):
        t = now + i * 0.001
        execution = Execution(
            id=new_execution_id(),
            agent=agent,
            started_at=t,
            ended_at=t + duration + 0.01,
            status="completed",
        )
        execution.events.append(
            Event(
                kind="llm_call",
                name=model,
                started_at=t + 0.005,
                duration=duration,
                status="failure" if failed else "success",
                model=model,
                provider=provider,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=prices[model].cost(tin, tout),
            )
        )
        items.append(ExecutionFinished(execution))
    store = open_store(url)  # creating the schema is a one-time cost, not ingest
    store.migrate()
    store.close()
    server = _Backend(url)
    writer = BatchWriter(lambda: open_store(server.url), queue_size=runs + 1)
    submit = writer.submit
    cpu, server_cpu = time.process_time(), server.cpu()
    started = time.perf_counter()
    for item in items:
        submit(item)
    flushed = writer.flush(timeout=None)
    seconds = time.perf_counter() - started
    cpu, server_cpu = time.process_time() - cpu, server.cpu() - server_cpu
    writer.close()
    server.close()
    dropped = sum(writer.stats.dropped().values())
    if not flushed or dropped:
        raise RuntimeError(f"not everything was stored (dropped {dropped})")
    cmp.settle(url)
    return {
        "rate": runs / seconds,
        "bytes_per_run": cmp.store_bytes(url) / runs,
        "cpu_per_run": cpu / runs,
        "server_cpu_per_run": server_cpu / runs if server.local else None,
    }


class _Backend:
    """CPU seconds of the PostgreSQL server processes serving one store URL (found by a
    unique `application_name`; read from /proc, so only for a server on this host).

    Under load, CPU per run moves far less than runs per second: it counts the work done,
    not the time spent waiting for a core.
    """

    def __init__(self, url: str) -> None:
        self.url, self.local, self._admin = url, False, None
        if not url.startswith("postgresql"):
            return
        import psycopg

        self._name = f"awbench_{uuid.uuid4().hex[:12]}"
        self.url = f"{url}{'&' if '?' in url else '?'}application_name={self._name}"
        self._admin = psycopg.connect(url, autocommit=True)
        self.local = Path("/proc/self/stat").exists()

    def cpu(self) -> float:
        if self._admin is None or not self.local:
            return 0.0
        total = 0.0
        pids = self._admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self._name,)
        ).fetchall()
        for (pid,) in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # not on this host, or gone
                self.local = False
                return 0.0
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


def w_profile(url: str, agents: int, models: int, runs: int, seed: int, top: int) -> str:
    """cProfile of the end-to-end path: the caller's thread and the writer thread apart."""
    import cProfile
    import threading

    import agentwatch

    plan = _plan(agents, models, runs, seed)
    threads: list[cProfile.Profile] = []

    def hook(*_: Any) -> None:
        profile = cProfile.Profile()
        threads.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    _configure(url, runs + 1)
    threading.setprofile(hook)
    caller = cProfile.Profile()
    caller.enable()
    _drive(plan)
    agentwatch.flush(timeout=None)
    caller.disable()
    threading.setprofile(None)  # type: ignore[arg-type]
    agentwatch.close()

    lines = [f"caller thread (capture, metrics, enqueue), per run of {runs:,}:"]
    lines += cmp.profile_report(caller, top, per=runs, unit="µs")
    for n, profile in enumerate(threads):
        lines += ["", f"thread {n + 1} (the writer), per run:"]
        lines += cmp.profile_report(profile, top, per=runs, unit="µs")
    return "\n".join(lines)


HANDLERS = {
    "hello": lambda: {"version": __import__("agentwatch").__version__},
    "end_to_end": w_end_to_end,
    "writer": w_writer,
    "profile": w_profile,
    "pg_schema": cmp.pg_schema,
}


# =========================================================================== parent side


class Fresh:
    """A fresh store URL per measurement: a new SQLite file or a new PostgreSQL schema."""

    def __init__(self, scratch: Path, postgres: str | None) -> None:
        self.scratch = scratch
        self.postgres = postgres

    def url(self, backend: str, worker: cmp.Worker) -> tuple[str, Any]:
        """(url, cleanup) for one measurement."""
        name = uuid.uuid4().hex[:12]
        if backend == "sqlite":
            folder = self.scratch / name
            folder.mkdir()
            return f"sqlite:///{folder / 'store.db'}", lambda: shutil.rmtree(folder, True)
        assert self.postgres is not None
        schema = f"awbench_t_{name}"
        worker.call("pg_schema", base_url=self.postgres, schema=schema, action="create")
        return cmp.pg_url(self.postgres, schema), lambda: worker.call(
            "pg_schema", base_url=self.postgres, schema=schema, action="drop"
        )


def run(args: argparse.Namespace) -> int:
    versions = cmp.versions(args.compare_with, args.compare_python)
    labels = [v.label for v in versions]
    script = Path(__file__).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="aw-throughput-"))
    workers: dict[str, cmp.Worker] = {}
    rows: list[cmp.Row] = []
    try:
        for v in versions:
            home = scratch / f"home-{v.label}"
            home.mkdir()
            workers[v.label] = cmp.Worker(v, script, home)
        print(cmp.machine_line())
        for v in versions:
            hello = workers[v.label].call("hello")
            print(f"{v.label}: {v.describe} (agentwatch {hello['version']})")
        fresh = Fresh(scratch, args.postgres)
        backends = ["sqlite", *(["postgresql"] if args.postgres else [])]
        if args.backend:
            backends = [b for b in backends if b == args.backend]
            if not backends:
                raise cmp.BenchError(f"--backend {args.backend} needs --postgres URL")
        sizes: dict[str, dict[str, float]] = {b: {} for b in backends}
        #: Least CPU per run (µs) of each writer-only measurement: this process, the server.
        cpus: dict[tuple[str, str], dict[str, float]] = {}

        def measured(op: str, backend: str, shape: tuple[int, int], keep_size: bool) -> Any:
            def once(v: cmp.Version) -> float:
                worker = workers[v.label]
                url, cleanup = fresh.url(backend, worker)
                try:
                    extra = {"warmup": args.warmup} if op == "end_to_end" else {}
                    got = worker.call(
                        op,
                        url=url,
                        agents=shape[0],
                        models=shape[1],
                        runs=args.runs,
                        seed=args.seed,
                        **extra,
                    )
                finally:
                    cleanup()
                if keep_size:
                    sizes[backend][v.label] = got["bytes_per_run"]
                for part in ("cpu_per_run", "server_cpu_per_run"):
                    if got.get(part) is not None:
                        seen = cpus.setdefault((backend, part), {})
                        seen[v.label] = min(seen.get(v.label, math.inf), got[part])
                return float(got["rate"])

            return once

        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        for backend in backends if args.only != "writer" else ():
            for shape in SHAPES if args.shape is None else (SHAPES[args.shape],):
                what = f"end to end, {shape[0]} agents × {shape[1]} models, {name[backend]}"
                goal = GOALS[shape] if backend == "sqlite" else ""
                keep = shape == SHAPES[-1]
                cmp.measure(
                    rows,
                    what,
                    "/s",
                    goal,
                    versions,
                    args.repeat,
                    measured("end_to_end", backend, shape, keep),
                    best=True,
                )
        for backend in backends if args.only != "end-to-end" else ():
            what = f"writer only, 200 agents × 10 models, {name[backend]}"
            goal = GOALS["writer_pg"] if backend == "postgresql" else ""
            cmp.measure(
                rows,
                what,
                "/s",
                goal,
                versions,
                args.repeat,
                measured("writer", backend, (200, 10), False),
                best=True,
            )
        for (backend, part), cells in cpus.items():
            whose = "the writer's process" if part == "cpu_per_run" else "its server process"
            row = cmp.Row(f"CPU per run of {whose} (writer only), {name[backend]}", "s")
            row.cells.update(cells)
            rows.append(row)
        for backend in [b for b in backends if sizes[b]]:  # measured at 200 x 10 end to end
            goal = GOALS["bytes_sqlite" if backend == "sqlite" else "bytes_pg"]
            size = cmp.Row(
                f"bytes per run, {name[backend]} (end to end, 200 × 10, "
                f"{args.runs + args.warmup:,} runs)",
                "B",
                goal,
            )
            size.cells.update(sizes[backend])
            rows.append(size)
        print()
        print(
            f"{args.runs:,} runs per measurement after {args.warmup:,} warm-up runs, "
            f"best of {args.repeat}"
        )
        cmp.print_table(rows, labels)
        if args.profile:
            for v in versions:
                url, cleanup = fresh.url("sqlite", workers[v.label])
                print(f"\n## profile, {v.label}: end to end, 200 × 10, SQLite")
                try:
                    print(
                        workers[v.label].call(
                            "profile",
                            url=url,
                            agents=200,
                            models=10,
                            runs=args.runs,
                            seed=args.seed,
                            top=args.top,
                        )
                    )
                except cmp.BenchError as exc:
                    print(f"error: {exc}")
                finally:
                    cleanup()
    finally:
        for worker in workers.values():
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=50_000, help="runs per measurement (50000)")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed runs first (2000)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure (3)")
    parser.add_argument("--seed", type=int, default=10, help="seed of the generated mix (10)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also measure PostgreSQL (throw-away schemas in this database)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default=None,
        help="measure this backend only (default: SQLite, and PostgreSQL with --postgres)",
    )
    parser.add_argument(
        "--only",
        choices=("writer", "end-to-end"),
        default=None,
        help="measure these figures alone (no bytes per run without end to end)",
    )
    parser.add_argument(
        "--shape",
        type=int,
        choices=range(len(SHAPES)),
        default=None,
        help="end to end at this shape only: 0 = 8 x 3, 1 = 200 x 10",
    )
    cmp.add_compare_arguments(parser)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print cProfile top entries of the end-to-end path",
    )
    parser.add_argument("--top", type=int, default=15, help="profile entries shown (15)")
    args = parser.parse_args(argv)
    if args.worker:
        return cmp.serve_worker(HANDLERS)
    if args.runs < 1 or args.repeat < 1 or args.warmup < 1:
        parser.error("--runs, --warmup and --repeat must be >= 1")
    try:
        return run(args)
    except cmp.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
