"""The CLI at 80 columns and in pipes: columns chosen by width, ids that paste, nothing cut.

At 80 columns (a real pseudo-terminal) `monitor list` drops its least useful columns and
shows each id as a unique prefix that `monitor trace` resolves; agent names stay whole. In a
pipe every column and every full value is printed, and `config show` prints the whole store
URL (password masked) however narrow the terminal.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console

from _cli_runs import Workload, clean_environment, record_workload
from agentwatch.cardinality import CardinalityGuard
from agentwatch.cli import cli
from agentwatch.cli._render import MIN_ID_PREFIX, executions_table
from agentwatch.ids import short_id
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import open_store
from conftest import Records
from support.binaries import agentwatch_command
from support.terminal import PtyProcess

#: Two ids that share their first 16 characters, and a long agent name.
TWINS = ("exec_5ca1ab1e00a10000000000000000000", "exec_5ca1ab1e00a20000000000000000000")
LONG_AGENT = "quarterly-report-summarizer"


@pytest.fixture
def workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workload]:
    clean_environment(monkeypatch, tmp_path / "home")
    monkeypatch.delenv("COLUMNS")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    workload = record_workload(url)
    records = Records()
    store = open_store(url)
    try:
        items = [
            ExecutionFinished(records.execution(id=TWINS[0], agent="twin", started_at=9e9)),
            ExecutionFinished(records.execution(id=TWINS[1], agent="twin", started_at=9e9 + 1)),
            ExecutionFinished(records.execution(agent=LONG_AGENT, started_at=9e9 + 2)),
        ]
        store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
    finally:
        store.close()
    yield workload


def _rows(screen: str) -> list[list[str]]:
    """The body rows of a rich table on screen, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in screen.splitlines()
        if line.startswith("│")
    ]


def _trace_id(url: str, prefix: str) -> str:
    result = CliRunner().invoke(cli, ["monitor", "trace", prefix, "--store", url, "--json"])
    assert result.exit_code == 0, (prefix, result.output)
    match = re.search(r'"id": "([^"]+)"', result.output)
    assert match, result.output
    return match.group(1)


@pytest.mark.slow
def test_monitor_list_at_80_columns_fits_and_its_ids_resolve_with_trace(
    workload: Workload, tmp_path: Path
) -> None:
    argv = [*agentwatch_command(), "monitor", "list", "--store", workload.url]
    env = {"AGENTWATCH_HOME": str(tmp_path / "home")}
    with PtyProcess(argv, columns=80, env=env) as term:
        assert term.wait(30) == 0, term.text
        screen = term.text
    assert all(cell_len(line) <= 80 for line in screen.splitlines()), screen
    header = next(line for line in screen.splitlines() if line.startswith("┃"))
    columns = [h.strip() for h in header.strip().strip("┃").split("┃")]
    assert columns.index("ID") < columns.index("Agent") < columns.index("Status"), columns
    assert "Tokens" not in columns, "the least useful column goes first"
    rows = _rows(screen)
    assert len(rows) == Workload.executions + 3, screen
    agents = {row[columns.index("Agent")] for row in rows}
    assert {"researcher", "summariser", "translator", "twin", LONG_AGENT} == agents, screen
    assert "monitor trace` takes any unique prefix" in " ".join(screen.split())
    with_store = open_store(workload.url)
    try:
        every_id = {e.id for e in with_store.executions(limit=None, flt=None)}
    finally:
        with_store.close()
    shown = [row[columns.index("ID")] for row in rows]
    assert all(len(p) >= MIN_ID_PREFIX or p in every_id for p in shown), shown
    assert {p for p in shown if p.startswith("exec_5ca1ab1e")} == {t[:17] for t in TWINS}
    for prefix in shown:
        resolved = _trace_id(workload.url, prefix)
        assert resolved.startswith(prefix) and resolved in every_id


@pytest.mark.slow
def test_config_show_at_80_columns_shows_the_whole_masked_store_url(tmp_path: Path) -> None:
    url = "postgresql://agentwatch:s3cret-pass@db.internal.example.com:5432/agentwatch_prod?sslmode=require"
    env = {"AGENTWATCH_HOME": str(tmp_path), "AGENTWATCH_STORE_URL": url}
    with PtyProcess([*agentwatch_command(), "config", "show"], columns=80, env=env) as term:
        assert term.wait(30) == 0, term.text
        screen = term.text
    assert "s3cret-pass" not in screen
    value = ""
    collecting = False
    for row in _rows(screen):
        if row[0] == "store_url":
            collecting = True
        elif row[0]:
            collecting = False
        if collecting:
            value += row[1]
    assert value == url.replace("s3cret-pass", "***"), screen


def test_piped_listing_keeps_every_column_full_ids_and_whole_names(workload: Workload) -> None:
    result = CliRunner().invoke(cli, ["monitor", "list", "--store", workload.url])
    assert result.exit_code == 0, result.output
    for column in ("Time", "ID", "Agent", "Status", "Duration", "Tokens", "Cost"):
        assert column in result.output
    assert LONG_AGENT in result.output and "…" not in result.output
    assert TWINS[0] in result.output and TWINS[1] in result.output
    assert "IDs shortened" not in result.output


def test_piped_config_show_prints_the_whole_masked_store_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("COLUMNS", "40")  # a pipe ignores a narrow COLUMNS: nothing is cut
    url = "postgresql://agentwatch:s3cret-pass@db.internal.example.com:5432/agentwatch_prod"
    result = CliRunner().invoke(cli, ["config", "show", "--store", url])
    assert result.exit_code == 0, result.output
    assert url.replace("s3cret-pass", "***") in result.output
    assert "s3cret-pass" not in result.output


def _render(table: object, width: int) -> str:
    out = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    out.print(table)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("width", [80, 64, 50])
def test_narrow_tables_drop_columns_in_order_and_never_cut_ids(
    workload: Workload, width: int
) -> None:
    store = open_store(workload.url)
    try:
        runs = store.executions(limit=None)
        table = executions_table(
            runs,
            title="Runs",
            width=width,
            shorten_ids=lambda ids: store.unique_id_prefixes(ids, minimum=MIN_ID_PREFIX),
        )
        text = _render(table, width)
        kept = [str(c.header) for c in table.columns]
        shown = [row[kept.index("ID")] for row in _rows(text) if row[kept.index("ID")]]
        for prefix, run in zip(shown, runs, strict=True):
            assert store.resolve_execution_id(prefix) == run.id
    finally:
        store.close()
    assert kept.index("ID") < kept.index("Agent") < kept.index("Status"), kept
    dropped_order = ["Tokens", "Duration", "Cost", "Time"]
    gone = [h for h in dropped_order if h not in kept]
    assert gone == dropped_order[: len(gone)], f"dropped {gone} out of order"
    assert all(cell_len(line) <= width for line in text.splitlines()), text
    assert "…" not in text


def test_a_wide_terminal_shows_everything(workload: Workload) -> None:
    store = open_store(workload.url)
    try:
        runs = store.executions(limit=None)
    finally:
        store.close()
    table = executions_table(runs, title="Runs", width=250, shorten_ids=lambda ids: {})
    assert [str(c.header) for c in table.columns] == [
        "Time", "ID", "Agent", "Status", "Duration", "Tokens", "Cost",
    ]  # fmt: skip
    assert TWINS[0] in _render(table, 250)


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("exec_5ca1ab1e", ["matches several runs", TWINS[0], TWINS[1], "more characters"]),
        ("exec_nothing", ["no run has the ID or ID prefix 'exec_nothing'", "monitor list"]),
        ("exec%", ["no run has the ID or ID prefix"]),
        ("EXEC_", ["no run has the ID or ID prefix"]),
    ],
)
def test_trace_explains_an_ambiguous_or_unknown_prefix_in_one_line(
    workload: Workload, prefix: str, words: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["monitor", "trace", prefix, "--store", workload.url])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0]


def test_trace_takes_a_unique_prefix_of_a_captured_run(workload: Workload) -> None:
    # Ids begin with their time: runs of the same minutes share the first digits, and the
    # short form (time + random digits) is what tells one apart.
    prefix = short_id(workload.failed_id)
    assert _trace_id(workload.url, prefix) == workload.failed_id
