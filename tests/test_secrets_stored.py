"""A secret in an exception never reaches the store, the JSON API or the CLI.

Argument capture is off (the default), yet the exception's text is kept: it is the first thing
an on-call engineer reads. It is redacted at capture, so the real SQLite file, `serve`'s JSON
API and `agentwatch monitor` all show the masked text, and the password is in no byte of the
database files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

import agentwatch
from _cli_runs import clean_environment
from agentwatch.cli import cli
from agentwatch.config import Settings
from agentwatch.server import make_server, serve_in_thread

SECRET = "hunter2"
MESSAGE = (
    f"cannot connect: dsn=postgresql://admin:{SECRET}@localhost/app (token sk-proj-{SECRET}xyz)"
)
STORED = "cannot connect: dsn=[REDACTED] (token [REDACTED:api_key])"


class ConnectionFailed(Exception):
    pass


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    clean_environment(monkeypatch, tmp_path / "home")
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    runtime = agentwatch.configure(store_url=url)
    assert runtime.settings.capture_arguments is False  # the default

    @agentwatch.observe(name="loader")
    def loader(dsn: str) -> None:
        raise ConnectionFailed(MESSAGE)

    with pytest.raises(ConnectionFailed):
        loader(f"postgresql://admin:{SECRET}@localhost/app")
    assert agentwatch.flush(timeout=10)
    agentwatch.close()
    yield url


def test_the_error_message_is_stored_redacted(store_url: str, tmp_path: Path) -> None:
    for path in tmp_path.glob("telemetry.db*"):
        assert SECRET.encode() not in path.read_bytes(), path
    result = CliRunner().invoke(cli, ["monitor", "list", "--store", store_url, "--json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["error_message"] == STORED and record["arguments"] is None


def test_the_json_api_serves_the_redacted_message(store_url: str) -> None:
    server = make_server(Settings(store_url=store_url), port=0)
    serve_in_thread(server)
    try:
        listing = requests.get(server.url + "/api/executions", timeout=5)
        assert SECRET not in listing.text
        (execution,) = listing.json()["executions"]
        detail = requests.get(server.url + f"/api/executions/{execution['id']}", timeout=5)
        assert SECRET not in detail.text
        assert detail.json()["error_message"] == STORED
    finally:
        server.shutdown()
        server.server_close()
        server.access.close()


def test_the_cli_trace_shows_the_redacted_message(store_url: str) -> None:
    listing = CliRunner().invoke(cli, ["monitor", "list", "--store", store_url, "--json"])
    run_id = json.loads(listing.stdout)[0]["id"]
    result = CliRunner().invoke(cli, ["monitor", "trace", run_id, "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "dsn=[REDACTED]" in result.output and SECRET not in result.output
