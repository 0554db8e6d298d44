"""CLI start-up: wall and CPU time of short `agentwatch` commands, next to another checkout.

Each command runs in a fresh interpreter the way the console script runs it, with no config
file and with bytecode caches (an installed package has its `.pyc` files, so
`PYTHONDONTWRITEBYTECODE` is dropped for the runs and each command runs once untimed first).
Two floors are measured in the same rounds: `python -c pass` (the interpreter) and
`python -c "import click"` (what any click program pays). CPU is the child's user + system
time (`wait4`): on a shared machine other processes distort it less than wall time.

The empty store is created by each version itself (an older version refuses a store of a
newer schema). `--store URL` adds `monitor stats` over an existing store (start-up share on a
big history); the history benchmark's cached stores (`~/.cache/agentwatch-bench/`) will do.

Usage:
    nice python benchmarks/startup.py [--repeat 21] [--compare-with PATH] [--store URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _compare as cmp

GOAL = "≤ 80 ms"


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run; BenchError when it fails."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            text = errors.read().decode(errors="replace")
            tail = text.strip().splitlines()[-1:] or ["(no output)"]
            raise cmp.BenchError(f"exit {child.returncode}: {tail[0]}")
    return wall, usage.ru_utime + usage.ru_stime


def _create_empty_store(version: cmp.Version, env: dict[str, str], url: str) -> None:
    code = (
        "import sys\nfrom agentwatch.store import open_store\n"
        "store = open_store(sys.argv[1])\nstore.migrate()\nstore.close()\n"
    )
    _run([version.python, "-c", code, url], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="timings per figure (21)")
    cmp.add_compare_arguments(parser)
    parser.add_argument(
        "--store", metavar="URL", default=None, help="also time `monitor stats` over this store"
    )
    args = parser.parse_args(argv)
    try:
        versions = cmp.versions(args.compare_with, args.compare_python)
    except cmp.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="aw-startup-") as scratch:
        root = Path(scratch)
        envs: dict[str, dict[str, str]] = {}
        config_envs: dict[str, dict[str, str]] = {}
        empty: dict[str, str] = {}
        for version in versions:
            home = root / version.label / "home"
            home.mkdir(parents=True)
            env = cmp.version_env(version, home)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            envs[version.label] = env
            empty[version.label] = f"sqlite:///{root / version.label / 'empty.db'}"
            _create_empty_store(version, env, empty[version.label])
            config_home = root / version.label / "config-home"
            config_home.mkdir()
            (config_home / "config.yaml").write_text(
                f"store_url: {empty[version.label]}\n", encoding="utf-8"
            )
            config_envs[version.label] = {**env, "AGENTWATCH_HOME": str(config_home)}

        def python(*code: str) -> Callable[[cmp.Version], list[str]]:
            return lambda v: [v.python, *code]

        def cli(*cli_args: str) -> Callable[[cmp.Version], list[str]]:
            return lambda v: cmp.cli_argv(v, *cli_args)

        def on_empty(*cli_args: str) -> Callable[[cmp.Version], list[str]]:
            return lambda v: cmp.cli_argv(v, *cli_args, "--store", empty[v.label])

        cases: list[tuple[str, Callable[[cmp.Version], list[str]], dict[str, dict[str, str]]]] = [
            ("`python -c pass` (the interpreter's floor)", python("-c", "pass"), envs),
            ('`python -c "import click"` (click\'s floor)', python("-c", "import click"), envs),
            ("`agentwatch --help`", cli("--help"), envs),
            ("`agentwatch monitor --help`", cli("monitor", "--help"), envs),
            ("`monitor stats`, empty store", on_empty("monitor", "stats"), envs),
            ("`monitor stats --json`, empty store", on_empty("monitor", "stats", "--json"), envs),
            ("`monitor list`, empty store", on_empty("monitor", "list"), envs),
            (
                "`monitor stats --json`, store named by a config file",
                cli("monitor", "stats", "--json"),
                config_envs,
            ),
        ]
        if args.store:
            for extra in ((), ("--json",)):
                what = f"`monitor stats{' --json' if extra else ''}`, --store {args.store}"
                argv_of = cli("monitor", "stats", *extra, "--store", args.store)
                cases.append((what, argv_of, envs))

        print(cmp.machine_line(), file=sys.stderr)
        for version in versions:
            print(f"  {version.label}: {version.describe}", file=sys.stderr)
        rows: list[cmp.Row] = []
        for what, argv_of, env_of in cases:
            cpu: dict[str, list[float]] = {v.label: [] for v in versions}

            def once(
                version: cmp.Version,
                argv_of: Callable[[cmp.Version], list[str]] = argv_of,
                env_of: dict[str, dict[str, str]] = env_of,
                cpu: dict[str, list[float]] = cpu,
            ) -> float:
                wall, used = _run(argv_of(version), env_of[version.label])
                cpu[version.label].append(used)
                return wall

            goal = "" if what.startswith("`python") else GOAL
            cmp.measure(rows, f"{what}, wall", "s", goal, versions, args.repeat, once, warmup=True)
            cpu_row = cmp.Row(f"{what}, CPU", "s")
            for label, samples in cpu.items():
                timed = samples[1:]  # the first was the untimed warm-up
                if timed:
                    cpu_row.cells[label], cpu_row.detail[label] = cmp.summarise(timed)
            rows.append(cpu_row)
    print(f"\nmedian of {args.repeat}, alternating versions; {cmp.machine_line()}\n")
    cmp.print_table(rows, [v.label for v in versions])
    return 0


if __name__ == "__main__":
    sys.exit(main())
