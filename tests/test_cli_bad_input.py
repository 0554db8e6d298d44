"""Bad input to any command: one line on stderr, a non-zero exit, never a traceback.

Every case once gave a traceback (or silently did the wrong thing); each runs the real CLI on
a real SQLite store, through CliRunner and, for a few, as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import agentwatch
from _cli_runs import clean_environment
from agentwatch.cli import cli

DIGITS_400 = "9" * 400
NOT_UTF8 = b"r-\xff".decode("utf-8", "surrogateescape")  # what a shell passes for byte 0xff


@dataclass
class Env:
    tmp: Path
    store: str


Case = Callable[[Env], list[str]]


def _config(env: Env, name: str, data: bytes) -> str:
    path = env.tmp / name
    path.write_bytes(data)
    return str(path)


def _file_parent(env: Env) -> str:
    (env.tmp / "a-file").write_text("x")
    return str(env.tmp / "a-file" / "sub" / "config.yaml")


def _fifo(env: Env) -> str:
    path = env.tmp / "pipe.jsonl"
    os.mkfifo(path)
    return str(path)


CASES: dict[str, Case] = {
    "init --config under a file": lambda e: [
        "init", "--config", _file_parent(e), "--store", f"sqlite:///{e.tmp / 'new.db'}"
    ],
    "init --config into /proc": lambda e: [
        "init", "--config", "/proc/agentwatch-missing/config.yaml",
        "--store", f"sqlite:///{e.tmp / 'new.db'}",
    ],
    "--since 400 digits of days": lambda e: [
        "monitor", "list", "--store", e.store, "--since", DIGITS_400 + "d"
    ],
    "--since 400 digits": lambda e: ["monitor", "list", "--store", e.store, "--since", DIGITS_400],
    "--until 400 digits of seconds": lambda e: [
        "monitor", "stats", "--store", e.store, "--until", DIGITS_400 + "s"
    ],
    "--older-than 400 digits of weeks": lambda e: [
        "monitor", "prune", "--store", e.store, "--older-than", DIGITS_400 + "w"
    ],
    "--since before year 1": lambda e: [
        "monitor", "list", "--store", e.store, "--since", "0001-01-01T00:00:00+14:00"
    ],
    "export -o a directory": lambda e: ["monitor", "export", "--store", e.store, "-o", str(e.tmp)],
    "export -o /proc/version": lambda e: [
        "monitor", "export", "--store", e.store, "-o", "/proc/version"
    ],
    "export -o a missing path": lambda e: [
        "monitor", "export", "--store", e.store, "-o", str(e.tmp / "no" / "such" / "x.csv")
    ],
    "export -o a fifo": lambda e: ["monitor", "export", "--store", e.store, "-o", _fifo(e)],
    "config not utf-8": lambda e: [
        "monitor", "list", "--config", _config(e, "latin1.yaml", b"store_url: '\xe9'\n")
    ],
    "config utf-16": lambda e: [
        "monitor", "list", "--config",
        _config(e, "utf16.yaml", "enabled: true\n".encode("utf-16")),
    ],
    "config 5000 levels deep": lambda e: [
        "monitor", "list", "--config",
        _config(e, "deep.yaml", b"budgets: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ],
    "config show of a deep config": lambda e: [
        "config", "show", "--config",
        _config(e, "deep.yaml", b"prices: " + b"{a: " * 5000 + b"\n"),
    ],
    "--refresh nan": lambda e: ["monitor", "--store", e.store, "--refresh", "nan", "--once"],
    "--refresh inf": lambda e: ["monitor", "--store", e.store, "--refresh", "inf", "--once"],
    "--refresh negative": lambda e: ["monitor", "--store", e.store, "--refresh", "-1", "--once"],
    "--refresh 0": lambda e: ["monitor", "--store", e.store, "--refresh", "0", "--once"],
    "list --since after --until": lambda e: [
        "monitor", "list", "--store", e.store, "--since", "1h", "--until", "2h"
    ],
    "stats --until before --since": lambda e: [
        "monitor", "stats", "--store", e.store, "--until", "2026-01-01", "--since", "2026-02-01"
    ],
    "export empty window": lambda e: [
        "monitor", "export", "--store", e.store, "--since", "2026-01-01", "--until", "2026-01-01"
    ],
    "cost --until before the default --since": lambda e: [
        "monitor", "cost", "--store", e.store, "--until", "8d"
    ],
    "cost --group-by nothing": lambda e: ["monitor", "cost", "--store", e.store, "--group-by", ","],
    "an argument that is not utf-8": lambda e: [
        "monitor", "list", "--store", e.store, "--agent", NOT_UTF8
    ],
    "an unknown option": lambda e: ["monitor", "list", "--bogus"],
}  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    clean_environment(monkeypatch, tmp_path / "home")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    agentwatch.configure(store_url=store)
    agentwatch.observe(name="one")(lambda: None)()
    assert agentwatch.flush(timeout=10)
    agentwatch.close()
    work = tmp_path / "work"
    work.mkdir()
    yield Env(work, store)


def _assert_one_line(code: int, stdout: str, stderr: str) -> str:
    assert code != 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and "unexpected" not in lines[0], lines[0]
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_a_non_zero_exit(env: Env, name: str) -> None:
    result = CliRunner().invoke(cli, CASES[name](env))
    _assert_one_line(result.exit_code, result.stdout, result.stderr)
    assert not (env.tmp / "new.db").exists()  # a refused init creates no store


@pytest.mark.parametrize(
    "name",
    [
        "config 5000 levels deep",
        "--refresh nan",
        "export -o a directory",
        "--since 400 digits of days",
        "init --config under a file",
    ],
)
@pytest.mark.slow
def test_bad_input_in_a_real_process(env: Env, name: str) -> None:
    executable = Path(sys.executable).with_name("agentwatch")
    done = subprocess.run(
        [str(executable), *CASES[name](env)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    _assert_one_line(done.returncode, done.stdout, done.stderr)


def test_usage_errors_keep_status_2_and_name_the_help(env: Env) -> None:
    result = CliRunner().invoke(cli, CASES["--refresh nan"](env), prog_name="agentwatch")
    line = _assert_one_line(result.exit_code, result.stdout, result.stderr)
    assert result.exit_code == 2
    assert "--refresh" in line and "'agentwatch monitor --help'" in line


def test_a_group_without_a_subcommand_still_shows_its_help() -> None:
    result = CliRunner().invoke(cli, ["config"])
    assert "show" in result.output and "Traceback" not in result.output


def test_an_unexpected_error_is_one_line_that_says_how_to_see_the_traceback(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentwatch.cli import _session

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(_session, "connect", broken)
    result = CliRunner().invoke(cli, ["monitor", "stats", "--store", env.store])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        "Error: unexpected RuntimeError: boom second line (a bug: please report it; "
        "AGENTWATCH_DEBUG=1 shows the traceback)"
    )
    monkeypatch.setenv("AGENTWATCH_DEBUG", "1")
    result = CliRunner().invoke(cli, ["monitor", "stats", "--store", env.store])
    assert isinstance(result.exception, RuntimeError)
