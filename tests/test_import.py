"""`import agentwatch` stays cheap: litellm (seconds to import) loads only when asked for.

The command line starts cheap too: `agentwatch --help` imports no command, and a query
(`monitor stats`) imports neither the writer's modules nor the server's, nor rich for
`--json`. These tests check which modules load, not how long it takes (the figures are in
docs/performance.md).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from _cli_runs import Workload, clean_environment, record_workload
from agentwatch.cli import COMMANDS, cli
from agentwatch.store import open_store


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(out.stdout.split())


def test_import_agentwatch_does_not_import_litellm() -> None:
    modules = _modules_after("import agentwatch")
    assert "agentwatch" in modules
    assert "litellm" not in modules
    assert "agentwatch.capture" not in modules  # submodules load on first use


def test_using_the_decorator_and_manual_api_does_not_import_litellm() -> None:
    modules = _modules_after(
        "import tempfile, agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "@agentwatch.observe\n"
        "def f():\n"
        "    agentwatch.record_llm_call('gpt-4o-mini', input_tokens=1)\n"
        "f()\n"
    )
    assert "agentwatch.capture" in modules
    assert "agentwatch.writer" in modules  # it really recorded (and priced) the call
    assert "litellm" not in modules


@pytest.mark.slow
def test_instrument_litellm_imports_it_offline() -> None:
    modules = _modules_after(
        "import os\n"
        "os.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP', None)\n"
        "import agentwatch\n"
        "agentwatch.instrument_litellm()\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
    )
    assert "litellm" in modules


def test_tracing_and_json_logs_load_nothing_until_turned_on() -> None:
    modules = _modules_after(
        "import tempfile, agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "with agentwatch.track('job'):\n"
        "    agentwatch.record_llm_call('gpt-4o-mini', input_tokens=1)\n"
    )
    assert "agentwatch.writer" in modules
    assert not {m for m in modules if m.startswith(("opentelemetry", "pythonjsonlogger"))}
    assert not {"agentwatch.tracing", "agentwatch.logs", "agentwatch.genai_semconv"} & modules


def test_tracing_loads_opentelemetry_when_turned_on() -> None:
    modules = _modules_after(
        "import os, tempfile\n"
        "os.environ['AGENTWATCH_OTEL'] = '1'\n"
        "os.environ['OTEL_TRACES_EXPORTER'] = 'none'\n"
        "import agentwatch\n"
        "agentwatch.configure(store_url='sqlite:///' + tempfile.mkdtemp() + '/t.db')\n"
        "with agentwatch.track('job'):\n"
        "    pass\n"
    )
    assert {"agentwatch.tracing", "opentelemetry.trace"} <= modules
    assert "litellm" not in modules


#: Modules no query command needs: the server and its web stack, the in-process metrics,
#: litellm, PostgreSQL's driver, and the writer's side of the store.
_NEVER_FOR_A_QUERY = (
    "prometheus_client",
    "litellm",
    "starlette",
    "uvicorn",
    "jinja2",
    "psycopg",
    "agentwatch.writer",
    "agentwatch.rollups",
    "agentwatch.validation",
    "agentwatch.metrics",
    "agentwatch.audit",
    "agentwatch.store.audit",
    "agentwatch.store.postgres",
    "agentwatch.cli.serve",
    "agentwatch.cli.demo",
    "agentwatch.cli.init",
    "agentwatch.cli.audit",
    "agentwatch.cli.config_show",
    "agentwatch.cli.web",
)


def _run_cli(
    home: Path, *args: str, config: str | None = None, status: int = 0
) -> tuple[str, set[str]]:
    """Run `agentwatch <args>` in a fresh interpreter (no config file, no AGENTWATCH_*
    variable unless `config` is given); return its stdout (stderr when `status` is not 0)
    and the modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["AGENTWATCH_HOME"] = str(home)
    if config is not None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.yaml").write_text(config, encoding="utf-8")
    listing = home.parent / "modules.txt"
    probe = (
        "import sys\n"
        "from agentwatch.cli import main\n"
        "sys.argv[0] = 'agentwatch'\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        f"    with open({str(listing)!r}, 'w') as f:\n"
        "        f.write('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == status, out.stderr
    return out.stdout if status == 0 else out.stderr, set(
        listing.read_text(encoding="utf-8").split()
    )


def _loaded(modules: set[str], names: Sequence[str]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    """`agentwatch --help` lists every command from its summary, importing none of them."""
    out, modules = _run_cli(tmp_path / "home", "--help")
    for name in COMMANDS:
        assert f"  {name} " in out, name
    assert not {m for m in modules if m.startswith("agentwatch.cli.")}
    assert not _loaded(modules, ("rich", "yaml", "agentwatch.config", "agentwatch.store"))
    assert not _loaded(modules, _NEVER_FOR_A_QUERY)


def test_an_unknown_command_is_one_line_and_imports_no_command(tmp_path: Path) -> None:
    err, modules = _run_cli(tmp_path / "home", "stast", status=2)
    (line,) = err.strip().splitlines()
    assert line.startswith("Error: No such command 'stast'"), line
    assert not {m for m in modules if m.startswith("agentwatch.cli.")}


def test_monitor_help_loads_only_the_monitor_commands(tmp_path: Path) -> None:
    out, modules = _run_cli(tmp_path / "home", "monitor", "--help")
    assert "stats" in out and "export" in out
    assert "agentwatch.cli.monitor" in modules
    assert not _loaded(modules, ("rich", "yaml", "agentwatch.config", "agentwatch.store"))
    assert not _loaded(modules, _NEVER_FOR_A_QUERY)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """A SQLite store holding the CLI tests' workload, written by the real writer (once:
    the commands below only read it)."""
    root = tmp_path_factory.mktemp("filled")
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_environment(monkeypatch, root / "writer-home")
        yield record_workload(f"sqlite:///{root / 'runs.db'}")


def test_stats_as_json_reads_the_store_without_the_writer_or_rich(
    tmp_path: Path, filled_store: Workload
) -> None:
    out, modules = _run_cli(
        tmp_path / "home", "monitor", "stats", "--json", "--store", filled_store.url
    )
    assert json.loads(out)["runs"] == filled_store.executions
    assert {"agentwatch.cli.monitor", "agentwatch.store.sqlite"} <= modules
    assert not _loaded(modules, ("rich", "yaml", "agentwatch.cli._render"))
    assert not _loaded(modules, _NEVER_FOR_A_QUERY)


def test_stats_table_loads_rich_but_not_the_writer(tmp_path: Path, filled_store: Workload) -> None:
    out, modules = _run_cli(tmp_path / "home", "monitor", "stats", "--store", filled_store.url)
    assert "Summary Statistics" in out
    runs = next(line for line in out.splitlines() if line.startswith("Runs"))
    assert runs.split()[-1] == str(filled_store.executions)
    assert "rich.table" in modules
    assert not _loaded(modules, _NEVER_FOR_A_QUERY)


def test_a_config_file_is_still_read(tmp_path: Path, filled_store: Workload) -> None:
    """PyYAML loads when there is a config file to read, and its settings apply."""
    out, modules = _run_cli(
        tmp_path / "home", "monitor", "stats", "--json", config=f"store_url: {filled_store.url}\n"
    )
    assert json.loads(out)["runs"] == filled_store.executions
    assert "yaml" in modules
    assert not _loaded(modules, _NEVER_FOR_A_QUERY)


def test_a_store_opened_to_query_loads_the_writer_modules_when_used(sqlite_url: str) -> None:
    """Querying needs neither rollups nor the audit chain; reading the rollups and pruning
    load them on first use (writes are covered by every writer test)."""
    created = open_store(sqlite_url)
    created.migrate()
    created.close()
    modules = _modules_after(
        "import sys\n"
        "from agentwatch.store import open_store\n"
        f"store = open_store({sqlite_url!r}, create=False)\n"
        "assert store.summary().runs == 0\n"
        "assert not {'agentwatch.rollups', 'agentwatch.store.audit'} & set(sys.modules)\n"
        "assert store.read_rollups() == []\n"
        "assert store.delete_old_executions(1e12) == 0\n"
        "store.close()\n"
    )
    assert {"agentwatch.rollups", "agentwatch.store.audit"} <= modules


def test_help_summaries_match_the_commands_help() -> None:
    """The summaries `agentwatch --help` lists without importing are each command's own."""
    ctx = click.Context(cli)
    for name, lazy in COMMANDS.items():
        command = lazy.load()
        first = (command.help or "").split("\n\n", 1)[0]
        assert " ".join(first.split()) == " ".join(lazy.summary.split()), name
    assert cli.list_commands(ctx) == sorted(COMMANDS)


@pytest.mark.parametrize("width", [40, 80, 200])
def test_help_listing_is_the_one_click_draws_from_the_commands(width: int) -> None:
    """Same text as when every command is imported, however wide the terminal."""
    lazy = CliRunner().invoke(_fresh_cli(), ["--help"], terminal_width=width)
    loaded = _fresh_cli()
    ctx = click.Context(loaded)
    for name in loaded.list_commands(ctx):
        loaded.get_command(ctx, name)
    assert set(loaded.commands) == set(COMMANDS)
    eager = CliRunner().invoke(loaded, ["--help"], terminal_width=width)
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.output == eager.output
    assert lazy.output.count("\n  ") >= len(COMMANDS)


def _fresh_cli() -> click.Group:
    """A copy of `cli` with no command loaded yet."""
    group = copy.copy(cli)
    group.commands = {}
    return group
