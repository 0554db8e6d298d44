"""`agentwatch config show` tells where each effective setting came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _cli_runs import clean_environment
from agentwatch.cli import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    clean_environment(monkeypatch, home)
    return home


def _show(*args: str) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(cli, ["config", "show", "--json", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return report["settings"]  # type: ignore[no-any-return]


def test_each_source_in_the_precedence_order_is_named(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.yaml"
    config.write_text("port: 9999\nhost: 0.0.0.0\nstore_url: sqlite:////from/file.db\n")
    monkeypatch.setenv("AGENTWATCH_HOST", "10.0.0.1")
    settings = _show("--config", str(config), "--store", "sqlite:////from/flag.db")
    assert settings["queue_size"] == {"value": 10000, "source": "default"}
    assert settings["port"] == {"value": 9999, "source": str(config)}
    assert settings["host"] == {"value": "10.0.0.1", "source": "AGENTWATCH_HOST"}
    assert settings["store_url"] == {"value": "sqlite:////from/flag.db", "source": "--store"}


def test_passwords_in_the_store_url_are_hidden(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_STORE_URL", "postgresql://app:hunter2@db:5432/agents")
    result = CliRunner().invoke(cli, ["config", "show"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "postgresql://app:***@db:5432/agents" in result.output
    assert "AGENTWATCH_STORE_URL" in result.output


def test_budgets_and_prices_are_shown_in_full_as_json(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(
        "budgets:\n  - {name: monthly, limit_usd: 50, timezone: Europe/Paris}\n"
        "prices:\n  tiny: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
    )
    settings = _show()
    [budget] = settings["budgets"]["value"]  # type: ignore[misc]
    assert budget["name"] == "monthly" and budget["timezone"] == "Europe/Paris"
    assert settings["prices"]["value"]["tiny"]["output_cost_per_token"] == 0.000002  # type: ignore[index]
    assert settings["budgets"]["source"] == str(home / "config.yaml")


def test_an_unknown_key_is_one_line_naming_the_file_and_exit_2(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "agentwatch.yaml"
    config.write_text("prot: 9000\n")
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {config}: unknown key 'prot'"
