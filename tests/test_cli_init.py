"""`agentwatch init` writes the config, creates the store, and fails on one clear line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from _cli_runs import clean_environment
from agentwatch.cli import cli
from agentwatch.config import load_settings
from agentwatch.store import open_store
from agentwatch.store.schema import latest_version


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    clean_environment(monkeypatch, home)
    return home


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_init_writes_the_config_and_a_migrated_store_in_agentwatch_home(home: Path) -> None:
    result = _run("init")
    assert result.exit_code == 0, result.output
    config = home / "config.yaml"
    database = home / "telemetry.db"
    assert f"Wrote {config}" in result.output
    settings = load_settings(config)
    assert settings.store_url == f"sqlite:///{database}"
    assert settings.source == str(config)
    store = open_store(settings.store_url)
    try:
        assert store.schema_versions()[-1] == latest_version()
    finally:
        store.close()


def test_init_says_what_to_do_next(home: Path) -> None:
    result = _run("init")
    assert result.exit_code == 0, result.output
    for step in ("agentwatch.observe", "agentwatch serve", "job_name: agentwatch", "9747"):
        assert step in result.output


def test_the_config_file_is_private_to_its_owner(home: Path) -> None:
    assert _run("init").exit_code == 0
    mode = stat.S_IMODE(os.stat(home / "config.yaml").st_mode)
    assert mode == 0o600


def test_init_records_the_given_store_and_makes_relative_paths_absolute(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run("init", "--store", "sqlite:///data/runs.db")
    assert result.exit_code == 0, result.output
    expected = f"sqlite:///{tmp_path / 'data' / 'runs.db'}"
    assert load_settings(home / "config.yaml").store_url == expected
    assert (tmp_path / "data" / "runs.db").exists()


def test_init_follows_agentwatch_config_and_the_config_flag(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_env = tmp_path / "env.yaml"
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(by_env))
    assert _run("init").exit_code == 0
    assert by_env.exists()
    by_flag = tmp_path / "flag" / "agentwatch.yaml"
    assert _run("init", "--config", str(by_flag)).exit_code == 0
    assert by_flag.exists()


def test_a_second_init_keeps_the_config_and_changes_nothing(home: Path) -> None:
    assert _run("init").exit_code == 0
    config = home / "config.yaml"
    config.write_text(config.read_text() + "budgets:\n  - {name: d, period: day, limit_usd: 5}\n")
    before = config.read_text()
    again = _run("init")
    assert again.exit_code == 0, again.output
    assert f"Kept {config}" in again.output and "--force" in again.output
    assert config.read_text() == before
    assert f"Store ready: sqlite:///{home / 'telemetry.db'}" in again.output
    same_store = _run("init", "--store", f"sqlite:///{home / 'telemetry.db'}")
    assert same_store.exit_code == 0, same_store.output
    assert config.read_text() == before


def test_a_second_init_creates_the_store_the_kept_config_names(home: Path, tmp_path: Path) -> None:
    home.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere" / "runs.db"
    (home / "config.yaml").write_text(f"store_url: sqlite:///{elsewhere}\n")
    result = _run("init")
    assert result.exit_code == 0, result.output
    assert elsewhere.exists()
    assert not (home / "telemetry.db").exists()


def test_init_refuses_another_store_than_the_kept_config_records(home: Path) -> None:
    assert _run("init").exit_code == 0
    config = home / "config.yaml"
    config.write_text("store_url: sqlite:////somewhere/else.db\n")
    result = _run("init", "--store", "sqlite:////other/runs.db")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert str(config) in line and "--force" in line and "/somewhere/else.db" in line
    assert config.read_text() == "store_url: sqlite:////somewhere/else.db\n"
    assert not Path("/other/runs.db").exists()


def test_a_broken_kept_config_is_one_line_naming_force(home: Path) -> None:
    home.mkdir(parents=True)
    config = home / "config.yaml"
    config.write_text("store_url: [unclosed\n")
    result = _run("init")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert str(config) in line and "--force" in line
    assert config.read_text() == "store_url: [unclosed\n"


def test_init_force_overwrites_even_a_broken_config(home: Path) -> None:
    home.mkdir(parents=True)
    config = home / "config.yaml"
    config.write_text("store_url: [unclosed\n")
    result = _run("init", "--force")
    assert result.exit_code == 0, result.output
    assert load_settings(config).store_url == f"sqlite:///{home / 'telemetry.db'}"


@pytest.mark.parametrize(
    ("url", "words"),
    [("mysql://db/x", "unsupported store URL"), ("sqlite://relative.db", "sqlite:///")],
)
def test_a_bad_store_url_is_one_line_and_exit_2(home: Path, url: str, words: str) -> None:
    result = _run("init", "--store", url)
    assert result.exit_code == 2
    assert words in _one_error_line(result)
    assert not (home / "config.yaml").exists()


def test_an_unreachable_store_is_one_line_and_writes_no_config(home: Path) -> None:
    result = _run("init", "--store", "postgresql://postgres@127.0.0.1:1/test")
    assert result.exit_code == 1
    assert "127.0.0.1" in _one_error_line(result)
    assert not (home / "config.yaml").exists()


@pytest.mark.postgres
def test_init_migrates_a_postgresql_store(home: Path, postgres_url: str) -> None:
    result = _run("init", "--store", postgres_url)
    assert result.exit_code == 0, result.output
    assert load_settings(home / "config.yaml").store_url == postgres_url
    store = open_store(postgres_url)
    try:
        assert store.schema_versions()[-1] == latest_version()
    finally:
        store.close()
