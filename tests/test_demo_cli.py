"""`agentwatch demo` as a newcomer meets it: the README's command in a terminal, and in a pipe.

The terminal test runs the README's `agentwatch demo` (from this venv, with a temporary home
and a free port given through the environment, as a user would set them) in a real
pseudo-terminal: progress must show within 2 s, `/metrics` and the JSON API must answer in
under half a second while the workload writes, the next steps must be printed, and Ctrl-C
must end it cleanly. The bounds are generous on purpose (a scrape takes milliseconds); they
catch a scrape waiting behind the workload, which used to take seconds.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support.binaries import agentwatch_command, free_port
from support.terminal import PtyProcess

ROOT = Path(__file__).resolve().parents[1]

#: What litellm (or asyncio) prints when a task is left behind at exit.
_STRAY = ("Task was destroyed but it is pending", "Traceback", "Exception ignored")


def readme_demo_argv() -> list[str]:
    """The README's demo command, minus the install: `agentwatch demo ...` from this venv."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- demo-command -->\n```\n(.+?)\n```", readme, re.S)
    assert block, "README.md has a demo-command block"
    last = block.group(1).strip().split("&&")[-1]
    words = shlex.split(last)
    assert Path(words[0]).name == "agentwatch" and words[1] == "demo", last
    return [*agentwatch_command(), *words[1:]]


def readme_sample_lines() -> list[str]:
    """The /metrics lines the README shows after the demo (its demo-output block)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- demo-output -->\n```console\n(.+?)\n```", readme, re.S)
    assert block, "README.md has a demo-output block"
    return [line for line in block.group(1).splitlines() if line.startswith("agentwatch_")]


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "AGENTWATCH_HOME": str(tmp_path / "home"),
        "AGENTWATCH_PORT": str(port),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


def _timed_get(url: str) -> float:
    started = time.monotonic()
    response = requests.get(url, timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return elapsed


@pytest.mark.slow
def test_readme_demo_shows_progress_at_once_and_answers_scrapes_while_it_writes(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with PtyProcess(readme_demo_argv(), columns=100, env=_env(tmp_path, port)) as term:
        progress_at = term.wait_for("Loading litellm", timeout=30)
        assert progress_at < 2.0, f"first progress after {progress_at:.2f}s:\n{term.text}"

        term.wait_for("Agent runs", timeout=60)
        scrapes: list[float] = []
        api_reads: list[float] = []
        deadline = time.monotonic() + 120
        while not re.search(r"demo: \d+ runs \(", term.text):
            assert time.monotonic() < deadline, term.text[-2000:]
            scrapes.append(_timed_get(f"{base}/metrics"))
            api_reads.append(_timed_get(f"{base}/api/v1/executions?limit=5"))
            time.sleep(0.05)
        assert len(scrapes) >= 3, f"only {len(scrapes)} scrapes while the workload ran"
        assert max(scrapes) < 0.5, f"/metrics took {max(scrapes):.2f}s during the workload"
        assert max(api_reads) < 0.5, f"the API took {max(api_reads):.2f}s during the workload"

        term.wait_for("until Ctrl-C", timeout=60)
        metrics = requests.get(f"{base}/metrics", timeout=10).text.splitlines()
        claimed = readme_sample_lines()
        assert claimed, "the README shows sample /metrics lines"
        for line in claimed:  # the default seed on a fresh store gives exactly these
            assert line in metrics, f"README claims {line!r}; /metrics has:\n" + "\n".join(
                m for m in metrics if m.startswith(line.split("{")[0])
            )
        screen = term.text
        assert f"curl -s {base}/metrics" in screen
        assert "agentwatch monitor list" in screen and "agentwatch monitor stats" in screen

        term.type("\x03")
        assert term.wait(30) == 0, term.text[-2000:]
        screen = term.text
    assert "demo: stopped." in screen
    for stray in _STRAY:
        assert stray not in screen, screen[-3000:]


@pytest.mark.slow
def test_piped_demo_prints_one_plain_line_per_phase_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, **_env(tmp_path, port)}
    process = subprocess.Popen(
        [*agentwatch_command(), "demo", "--runs", "6", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Scrape it with Prometheus"):
                break
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines += rest.splitlines()
    output = "\n".join(lines)
    assert process.returncode == 0, output + errors
    assert "\x1b" not in output, "no escape sequences in a pipe"
    phases = [line for line in lines if line.startswith("demo:")]
    assert phases[0] == f"demo: serving http://127.0.0.1:{port}/metrics while the workload runs"
    assert phases[1] == "demo: loading litellm (network mocked) for 6 runs, seed 3"
    assert phases[2] == "demo: running 6 agent runs"
    assert phases[3] == "demo: runs finished; writing the last records to the store"
    assert re.fullmatch(
        r"demo: \d+ runs \(6 top-level, \d+ nested; \d+ failed\), .* -> sqlite:///.*", phases[4]
    )
    assert phases[5] == "demo: stopped."
    assert len(phases) == 6, phases
    for stray in _STRAY:
        assert stray not in output + errors


def test_a_failing_workload_is_one_error_line_with_its_own_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from click.testing import CliRunner

    from agentwatch.cli import cli
    from agentwatch.cli import demo as demo_command

    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    crash = 'import sys; print(\'{"phase":"loaded","total":4}\', flush=True); '
    crash += "sys.stderr.write('ImportError: no litellm here\\n'); sys.exit(3)"
    monkeypatch.setattr(
        demo_command, "_workload_command", lambda runs, seed: [sys.executable, "-c", crash]
    )
    result = CliRunner().invoke(cli, ["demo", "--no-serve", "--runs", "4"])
    assert result.exit_code == 1
    assert "ImportError: no litellm here" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: the workload process exited with status 3 after 0 of 4 runs")
    assert "Traceback" not in result.output


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_the_workload_stops_when_the_demo_is_killed(tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find the workload process")
    env = {**os.environ, **_env(tmp_path, free_port())}
    demo = subprocess.Popen(
        [*agentwatch_command(), "demo", "--no-serve", "--runs", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert demo.stdout is not None
    try:
        for line in demo.stdout:
            if line.startswith("demo: running"):
                break
        (workload,) = _children(demo.pid)
        demo.kill()
        demo.wait(10)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{workload}").exists() and time.monotonic() < deadline:
            state = Path(f"/proc/{workload}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.1)
        assert time.monotonic() < deadline, "the orphaned workload kept running"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_next_steps_repeat_the_flags_given_quoted_for_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's side of the protocol, with a stand-in workload that reports at once."""
    import json
    import sys

    from click.testing import CliRunner

    from agentwatch.cli import cli
    from agentwatch.cli import demo as demo_command

    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path / "home"))
    report = {"top_level_runs": 2, "nested_runs": 1, "failed_runs": 1, "llm_calls": 3,
              "llm_failures": 0, "tool_calls": 1}  # fmt: skip
    lines = [
        {"phase": "loaded", "total": 2},
        {"phase": "run", "done": 1, "total": 2, "report": report},
        "not a message: skipped",
        {"phase": "writing", "done": 2, "total": 2, "report": report},
        {"phase": "done", "done": 2, "total": 2, "report": report, "flushed": False},
    ]
    script = "".join(
        f"print({json.dumps(line if isinstance(line, str) else json.dumps(line))})\n"
        for line in lines
    )
    monkeypatch.setattr(
        demo_command, "_workload_command", lambda runs, seed: [sys.executable, "-c", script]
    )
    store = tmp_path / "my runs" / "store.db"
    result = CliRunner().invoke(
        cli, ["demo", "--no-serve", "--runs", "2", "--store", f"sqlite:///{store}"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "demo: 3 runs (2 top-level, 1 nested; 1 failed), 3 LLM calls (0 failed), 1 tool calls"
        in result.output
    )
    assert "(some records not yet written!)" in result.output
    assert f"agentwatch monitor list --store 'sqlite:///{store}'" in result.output
    assert store.exists(), "the store is created before the workload starts"
