"""Harness of the benchmarks that measure two code versions side by side in one run.

A benchmark script runs in two roles:

- the *parent* (what you start) never imports agentwatch. It starts one *worker* per code
  version, `python <script> --worker` with `PYTHONPATH` pointing at that version's
  `exporter/` directory, and runs command-line timings as subprocesses with the same
  environment. Rounds alternate between the versions, so both see the same machine load.
- the *worker* imports the agentwatch it was given and answers JSON requests, one per line,
  on a private copy of its stdout (fd 1 itself is pointed at stderr, so whatever the code
  under test prints cannot corrupt the protocol).

Compare with an older design by checking it out next to this one:

    git worktree add /tmp/aw-before <commit>
    python benchmarks/history.py --compare-with /tmp/aw-before

The other checkout runs on this interpreter and its installed dependencies unless
`--compare-python` names another one (a venv of that checkout).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]

#: Environment variables that would make a run depend on the user's own setup.
_PRIVATE_ENV_PREFIXES = ("AGENTWATCH_", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


class BenchError(Exception):
    """A benchmark cannot run (bad arguments, a worker failed); printed as one line."""


@dataclass(frozen=True)
class Version:
    """One code version under measurement.

    Attributes:
        label: short name for table headers (`this` or `other`).
        describe: commit and dirty flag, for the record.
        exporter: directory put first on `PYTHONPATH` (it holds the `agentwatch` package).
        python: interpreter that runs this version.
    """

    label: str
    describe: str
    exporter: Path
    python: str


def _git_describe(path: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return str(path)
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "exporter")
    subject = git("log", "-1", "--format=%s")[:60]
    return f"{commit}{'+dirty' if dirty else ''} {subject}".strip()


def _exporter_dir(path: Path) -> Path:
    for candidate in (path / "exporter", path):
        if (candidate / "agentwatch" / "__init__.py").is_file():
            return candidate.resolve()
    raise BenchError(f"{path}: no agentwatch package here (expected exporter/agentwatch/)")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--compare-with` / `--compare-python` options every benchmark takes (`versions`)."""
    parser.add_argument(
        "--compare-with",
        metavar="PATH",
        default=None,
        help="another checkout (or its exporter/) to measure too",
    )
    parser.add_argument(
        "--compare-python",
        metavar="PY",
        default=None,
        help="interpreter for --compare-with (default: this one)",
    )


def versions(compare_with: str | None, compare_python: str | None) -> list[Version]:
    """The versions to measure: the other checkout first (the "before"), then this one."""
    this = Version("this", _git_describe(ROOT), _exporter_dir(ROOT), sys.executable)
    if not compare_with:
        return [this]
    other_path = Path(compare_with).expanduser().resolve()
    other = Version(
        "other",
        _git_describe(other_path),
        _exporter_dir(other_path),
        compare_python or sys.executable,
    )
    if other.exporter == this.exporter:
        raise BenchError("--compare-with names this checkout; give another one")
    return [other, this]


def version_env(
    version: Version, home: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for a worker or CLI subprocess of `version`.

    The user's `AGENTWATCH_*` settings and `PYTHONPATH` are removed, `AGENTWATCH_HOME`
    points at a scratch directory (no config file, no default store), and litellm uses its
    bundled price map (no network at import).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(version.exporter)
    env["AGENTWATCH_HOME"] = str(home)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["COLUMNS"] = "120"
    env.update(extra or {})
    return env


def cli_argv(version: Version, *args: str) -> list[str]:
    """Run the `agentwatch` command of `version` (what its console script runs)."""
    code = "import sys; from agentwatch.cli import main; sys.argv[0] = 'agentwatch'; main()"
    return [version.python, "-c", code, *args]


def time_command(argv: Sequence[str], env: dict[str, str], timeout: float = 600) -> float:
    """Wall seconds of one subprocess run, start-up included; raise BenchError on failure."""
    started = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"exit {done.returncode}: {tail[0]}")
    return elapsed


# -- the worker side -----------------------------------------------------------------------


def serve_worker(handlers: dict[str, Callable[..., Any]]) -> int:
    """Answer `{"op": name, "args": {...}}` lines with `{"ok": result}` or `{"error": ...}`."""
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything the code under test prints goes to stderr
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        try:
            handler = handlers[op]
            answer = {"ok": handler(**request.get("args", {}))}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{op}: {type(exc).__name__}: {' '.join(str(exc).split())}"}
        channel.write(json.dumps(answer) + "\n")
    return 0


class Worker:
    """A worker process of one version; `call()` sends one request and waits for the answer."""

    def __init__(self, version: Version, script: Path, home: Path) -> None:
        self.version = version
        self._proc = subprocess.Popen(  # its stderr (progress, tracebacks) is ours
            [version.python, str(script), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=version_env(version, home),
            text=True,
            bufsize=1,
        )

    def call(self, op: str, **args: Any) -> Any:
        """Run `op` in the worker; raise BenchError with its one-line reason on failure."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"{self.version.label} worker died") from None
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"{self.version.label} worker died")
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError(answer["error"])
        return answer["ok"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- measurements and the table ------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table.

    Attributes:
        what: what was measured.
        unit: `s` (lower is better), `/s` (higher is better), `B` (lower is better),
            `count` or `text` (no gain computed).
        cells: measured values per version label (floats, or text for errors / notes).
        goal: the target from the issue, as text.
        detail: extra text per version (e.g. min..max), shown after the value.
    """

    what: str
    unit: str
    goal: str = ""
    cells: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, str] = field(default_factory=dict)


def summarise(samples: Sequence[float], best: str = "") -> tuple[float, str]:
    """Median (or the `min` / `max` when `best` says so) and `min–max (n)` for the record."""
    if len(samples) == 1:
        return samples[0], ""
    value = {"min": min, "max": max}.get(best, statistics.median)(samples)
    return value, f"{min(samples):.4g}–{max(samples):.4g}, n={len(samples)}"


def format_value(value: Any, unit: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1:
            return f"{value * 1e3:.1f} ms" if value < 0.1 else f"{value * 1e3:.0f} ms"
        return f"{value:.2f} s"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "count":
        return f"{value:,.0f}"
    return str(value)


def gain(row: Row, before: str, after: str) -> str:
    """How many times better `after` is than `before` (>1 = better), for numeric rows."""
    a, b = row.cells.get(before), row.cells.get(after)
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not a or not b:
        return ""
    if row.unit in ("s", "B"):
        return f"{a / b:.2f}×"
    if row.unit == "/s":
        return f"{b / a:.2f}×"
    return ""


def print_table(rows: Sequence[Row], labels: Sequence[str], out: TextIO = sys.stdout) -> None:
    """A Markdown table: what, one column per version, the gain (when two), the goal."""
    header = ["What", *labels]
    if len(labels) == 2:
        header.append(f"{labels[1]} vs {labels[0]}")
    header.append("Goal (issue 10)")
    lines = [header]
    for row in rows:
        cells = [row.what]
        for label in labels:
            text = format_value(row.cells.get(label), row.unit)
            cells.append(text)
        if len(labels) == 2:
            cells.append(gain(row, labels[0], labels[1]))
        cells.append(row.goal)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print(
            "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |",
            file=out,
        )
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)


def alternate(versions: Sequence[Version], repeat: int) -> Iterator[Version]:
    """Each version `repeat` times, alternating and reversing the order every round."""
    for n in range(repeat):
        yield from (versions if n % 2 == 0 else list(reversed(versions)))


def measure(
    rows: list[Row],
    what: str,
    unit: str,
    goal: str,
    versions: Sequence[Version],
    repeat: int,
    once: Callable[[Version], float],
    best: bool = False,
    warmup: bool = False,
) -> Row:
    """Time `once(version)` `repeat` times per version, alternating; record the medians.

    With `best`, record the best value instead (the smallest time, the largest rate): on a
    busy machine load only ever makes a run slower. With `warmup`, each version runs once
    untimed first (bytecode compiled, files in the page cache: what a repeated command meets).
    A version that fails gets its one-line error in its cell; the others still run.
    """
    row = Row(what, unit, goal)
    rows.append(row)
    samples: dict[str, list[float]] = {v.label: [] for v in versions}
    failed: dict[str, str] = {}
    if warmup:
        for version in versions:
            try:
                once(version)
            except BenchError as exc:
                failed[version.label] = f"error: {exc}"[:80]
    for version in alternate(versions, repeat):
        if version.label in failed:
            continue
        try:
            samples[version.label].append(once(version))
        except BenchError as exc:
            failed[version.label] = f"error: {exc}"[:80]
    for version in versions:
        label = version.label
        if label in failed:
            row.cells[label] = failed[label]
        elif samples[label]:
            row.cells[label], row.detail[label] = summarise(
                samples[label], ("max" if unit == "/s" else "min") if best else ""
            )
    print(
        f"  {what}: "
        + ", ".join(f"{v.label} {format_value(row.cells.get(v.label), unit)}" for v in versions),
        file=sys.stderr,
        flush=True,
    )
    return row


def cache_dir(explicit: str | None = None) -> Path:
    """Where built stores are kept between runs: `--cache-dir`, `$AGENTWATCH_BENCH_CACHE`,
    or `~/.cache/agentwatch-bench`."""
    chosen = explicit or os.environ.get("AGENTWATCH_BENCH_CACHE")
    if chosen:
        path = Path(chosen).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
        path = base / "agentwatch-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_line() -> str:
    """Python, CPU count and load, for the record printed above the table."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )


# -- stores (used by workers; no agentwatch import) ------------------------------------------


def pg_url(base: str, schema: str) -> str:
    """`base` with its search path set to `schema` (how agentwatch is pointed at a schema)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def settle(url: str) -> None:
    """Fold the SQLite WAL into the file; VACUUM ANALYZE PostgreSQL (what autovacuum does)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


def store_bytes(url: str) -> int:
    """Bytes the store takes: SQLite file (+ WAL), or PostgreSQL relations of its schema."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'm')"
        ).fetchone()
    return int(row[0]) if row else 0


def pg_schema(base_url: str, schema: str, action: str) -> bool:
    """`exists` (with a finished build), `create` (drop first) or `drop` a cache schema."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        if action == "exists":
            row = conn.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_version'",
                (schema,),
            ).fetchone()
            return row is not None
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if action == "create":
            conn.execute(f'CREATE SCHEMA "{schema}"')
    return True


# -- profiles ------------------------------------------------------------------------------


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":  # a builtin: the name says it all ("<method 'execute' of ...>")
        return name
    marker = "agentwatch/"
    short = path[path.rindex(marker) + len(marker) :] if marker in path else Path(path).name
    return f"{short}:{line} {name}"


def profile_report(profile: Any, top: int, per: int = 1, unit: str = "ms") -> list[str]:
    """Top entries of a cProfile: by own time, then agentwatch's own functions by cumulative
    time (which query or step a cost belongs to). Times are divided by `per` (e.g. runs)."""
    import pstats

    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    scale = {"ms": 1e3, "µs": 1e6}[unit] / per
    total = sum(entry[2] for entry in stats.values())
    lines = [f"  own time {total * scale:,.1f} {unit} in all (cProfile; its overhead included)"]
    lines.append(f"  {'own':>9} {'cumul.':>9} {'calls':>9}  function (by own time)")
    by_own = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for key, (_, calls, own, cumulative, _) in by_own:
        lines.append(
            f"  {own * scale:9.2f} {cumulative * scale:9.2f} {calls / per:9.4g}  {_where(key)}"
        )
    ours = [kv for kv in stats.items() if "agentwatch/" in kv[0][0]]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    lines.append(f"  {'own':>9} {'cumul.':>9} {'calls':>9}  agentwatch function (by cumulative)")
    for key, (_, calls, own, cumulative, _) in ours[:top]:
        lines.append(
            f"  {own * scale:9.2f} {cumulative * scale:9.2f} {calls / per:9.4g}  {_where(key)}"
        )
    return lines
