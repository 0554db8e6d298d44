"""`agentwatch serve` and `agentwatch demo` reject bad input with one line, not a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentwatch.cli import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--store", "mysql://x/y"], "unsupported store URL"),
        (["serve", "--port", "70000"], "70000"),
        (["demo", "--runs", "0", "--no-serve"], "--runs"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_file_names_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    config = tmp_path / "config.yaml"
    config.write_text("budgets:\n  - name: daily\n    period: fortnight\n    limit_usd: 5\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert str(config) in lines[0] and "period" in lines[0] and "fortnight" in lines[0]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_taken_port_is_one_line_not_a_traceback(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, [command, "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    if command == "demo":
        assert not (tmp_path / "telemetry.db").exists(), "no workload ran before the bind"


def test_an_address_that_does_not_resolve_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--host", "no-such-host.invalid", "--port", "0"])
    assert result.exit_code == 1
    assert "cannot listen on no-such-host.invalid:0" in result.output
