"""`agentwatch monitor` in a real terminal: tmux runs it, another process writes, Ctrl-C ends it.

The screen is read with `tmux capture-pane`, so this checks what a person sees: the totals and
recent runs, their update when a separate process records new runs into the same store,
and a clean exit (status 0, no traceback, the last frame left on screen) on Ctrl-C.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _cli_runs import Workload, clean_environment, record_workload

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
AGENTWATCH = Path(sys.executable).with_name("agentwatch")

# A second program, instrumented like any user code, writing while the monitor watches.
OTHER_WRITER = """
import sys
import agentwatch

agentwatch.configure(store_url=sys.argv[1])

@agentwatch.observe(name="latecomer")
def latecomer() -> None:
    agentwatch.record_llm_call("gpt-4o", provider="openai", input_tokens=1000,
                               output_tokens=500, cost_usd=1.25, duration=0.3)

for _ in range(2):
    latecomer()
assert agentwatch.flush(timeout=10)
"""


class Terminal:
    """One tmux server of our own (its own socket), holding one pane."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"agentwatch-test-{uuid.uuid4().hex[:12]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def start(self, command: list[str], status_file: Path) -> None:
        """Run `command` in the pane; bash writes its exit status to `status_file`.

        bash waits for a foreground child that handles Ctrl-C and goes on with the script,
        so the file appears only if the command exited by itself; a command killed by the
        signal takes bash down with it and leaves no file.
        """
        script = f"{shlex.join(command)}; echo $? > {shlex.quote(str(status_file))}"
        self.tmux(
            "new-session", "-d", "-s", "live", "-x", "150", "-y", "45",
            f"bash -c {shlex.quote(script)}", ";", "set-option", "-g", "remain-on-exit", "on",
        )  # fmt: skip

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "live")

    def status(self) -> tuple[bool, str]:
        dead, _, code = (
            self.tmux("display-message", "-p", "-t", "live", "#{pane_dead}:#{pane_dead_status}")
            .strip()
            .partition(":")
        )
        return dead == "1", code

    def wait_for(self, what: str, done: Callable[[], bool], deadline: float = 20.0) -> None:
        """Poll until `done()`; past the deadline (not a timing check) fail showing the screen."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if done():
                return
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(
            [TMUX, "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=10
        )


@pytest.fixture
def terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Terminal]:
    if not os.path.exists(TMUX):
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required in CI")
        pytest.skip("tmux is not installed")
    clean_environment(monkeypatch, tmp_path / "home")
    monkeypatch.delenv("COLUMNS")
    env = {**os.environ, "TERM": "xterm-256color", "TZ": "UTC"}
    env.pop("TMUX", None)
    term = Terminal(env)
    yield term
    term.close()


@pytest.mark.slow
def test_live_view_follows_another_writer_and_exits_cleanly_on_ctrl_c(
    terminal: Terminal, tmp_path: Path
) -> None:
    workload = record_workload(f"sqlite:///{tmp_path / 'runs.db'}")
    status = tmp_path / "exit-status"
    terminal.start(
        [str(AGENTWATCH), "monitor", "--store", workload.url, "--refresh", "0.2"], status
    )
    terminal.wait_for(
        "the first frame", lambda: f"Runs: {Workload.executions} " in terminal.screen()
    )
    first = terminal.screen()
    assert "Failed: 1" in first and "Recent Activity" in first and "UTC" in first
    assert "researcher" in first and "✗ FAILED" in first

    subprocess.run(
        [sys.executable, "-c", OTHER_WRITER, workload.url],
        env=terminal.env,
        check=True,
        timeout=60,
    )
    terminal.wait_for(
        "the other process' runs", lambda: f"Runs: {Workload.executions + 2} " in terminal.screen()
    )
    updated = terminal.screen()
    assert "latecomer" in updated
    assert "Spend: $2.51" in updated  # $0.0056 (with the call outside runs) + 2 x $1.25

    terminal.tmux("send-keys", "-t", "live", "C-c")
    terminal.wait_for("the monitor to exit", lambda: status.exists() and status.read_text() != "")
    assert status.read_text().strip() == "0"
    final = terminal.screen()
    assert "Stopped." in final
    assert "Traceback" not in final and "KeyboardInterrupt" not in final
    assert "latecomer" in final  # the last frame stays on screen
