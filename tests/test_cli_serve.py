"""`agentwatch serve` and `agentwatch demo` reject bad input with one line, not a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import bcrypt
import pytest
import requests
from click.testing import CliRunner

from agentwatch.cli import cli
from agentwatch.server.webconfig import load_web_config
from support.binaries import agentwatch_command, free_port, wait_until


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
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "--port" in lines[0] and "AGENTWATCH_PORT" in lines[0], "it says how to move"
    if command == "demo":
        assert not (tmp_path / "telemetry.db").exists(), "no workload ran before the bind"


def test_an_address_that_does_not_resolve_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--host", "no-such-host.invalid", "--port", "0"])
    assert result.exit_code == 1
    assert "cannot listen on no-such-host.invalid:0" in result.output


def test_a_bad_web_config_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: a.crt, key_file: a.key, bogus: 1}\n")
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--web.config.file", str(web)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "bogus" in lines[0] and str(web) in lines[0]


def test_web_config_file_comes_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {alice: plain-text-password}\n")
    monkeypatch.setenv("AGENTWATCH_WEB_CONFIG_FILE", str(web))
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "not a bcrypt hash" in result.output


def test_an_empty_host_is_refused_not_every_interface(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--host", "", "--port", "0"])
    assert result.exit_code == 2
    assert "every interface" in result.output
    config = tmp_path / "config.yaml"
    config.write_text('host: ""\n')
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", "0"])
    assert result.exit_code == 2
    assert "every interface" in result.output


def test_hash_password_reads_stdin_and_prints_a_bcrypt_hash(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["web", "hash-password", "--cost", "4"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip()
    assert bcrypt.checkpw(b"s3cret", hashed.encode())
    assert "s3cret" not in result.output
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    assert load_web_config(web).users["prometheus"] == hashed


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["web", "hash-password"], "\n", "empty password"),
        (["web", "hash-password"], "x" * 100 + "\n", "72 bytes"),
        (["web", "hash-password", "s3cret"], "", "unexpected extra argument"),
        (["web", "hash-password", "--cost", "3"], "s3cret\n", "--cost"),
    ],
)
def test_hash_password_refuses_bad_input_with_one_line(
    args: list[str], stdin: str, message: str
) -> None:
    result = CliRunner().invoke(cli, args, input=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_serve_never_prints_the_store_password(tmp_path: Path) -> None:
    port = free_port()
    url = "postgresql://agentwatch:hunter2-secret@127.0.0.1:1/none?connect_timeout=2"
    argv = [*agentwatch_command(), "serve", "--store", url, "--port", str(port)]
    env = {**os.environ, "AGENTWATCH_HOME": str(tmp_path)}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok,
            timeout=30,
            what="agentwatch serve",
        )
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    text = output.decode()
    assert "agentwatch serving http://127.0.0.1" in text
    assert "unavailable" in text, text
    assert "hunter2" not in text
    assert "agentwatch:***@" in text
    assert process.returncode == 0


@pytest.mark.slow
def test_sighup_makes_serve_reread_its_web_config(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    stamp = web.stat()
    port = free_port()
    store = f"sqlite:///{tmp_path / 'telemetry.db'}"
    subprocess.run(
        [*agentwatch_command(), "init", "--store", store, "--config", str(tmp_path / "c.yaml")],
        check=True, capture_output=True, env={**os.environ, "AGENTWATCH_HOME": str(tmp_path)},
    )  # fmt: skip
    argv = [*agentwatch_command(), "serve", "--store", store, "--port", str(port),
            "--web.config.file", str(web)]  # fmt: skip
    env = {**os.environ, "AGENTWATCH_HOME": str(tmp_path)}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(
            lambda: requests.get(url, auth=("alice", "pw"), timeout=2).ok,
            timeout=30,
            what="agentwatch serve",
        )
        # Same size, same modification time: only SIGHUP can tell serve to look again.
        web.write_text(f"basic_auth_users:\n  carol: '{hashed}'\n")
        os.utime(web, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert requests.get(url, auth=("carol", "pw"), timeout=10).status_code == 401
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: requests.get(url, auth=("carol", "pw"), timeout=2).ok,
            timeout=10,
            what="the reloaded web config",
        )
        assert requests.get(url, auth=("alice", "pw"), timeout=10).status_code == 401
        assert process.poll() is None, "SIGHUP does not stop serve"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "reloaded" in output.decode()
