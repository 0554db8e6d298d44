"""docs/cli.md and docs/configuration.md stay in step with the commands and settings.

Every command must have help text and a section headed `` `agentwatch <command>` `` in
docs/cli.md; every option must have help text and be named in its command's section (the
habit of sqlite-utils' tests/test_docs.py). Every setting and environment variable must be
documented in docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest

from agentwatch import config
from agentwatch.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_DOC = (DOCS / "cli.md").read_text(encoding="utf-8")
CONFIG_DOC = (DOCS / "configuration.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "agentwatch") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # loads the lazily registered commands
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(cli)
IDS = [path for path, _ in COMMANDS]


def _section(path: str) -> str:
    """Text under the heading `` `path` `` up to the next heading of any level."""
    heading = re.compile(rf"^#+ `{re.escape(path)}`\s*$", re.MULTILINE)
    match = heading.search(CLI_DOC)
    if match is None:
        return ""
    rest = CLI_DOC[match.end() :]
    following = re.search(r"^#+ ", rest, re.MULTILINE)
    return rest if following is None else rest[: following.start()]


def test_every_expected_command_is_registered() -> None:
    expected = {
        "agentwatch init",
        "agentwatch monitor",
        "agentwatch monitor list",
        "agentwatch monitor stats",
        "agentwatch monitor trace",
        "agentwatch monitor cost",
        "agentwatch monitor export",
        "agentwatch monitor prune",
    }
    assert expected <= set(IDS)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_has_help_and_a_docs_section(path: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"{path} has no help text"
    assert _section(path).strip(), f"docs/cli.md has no section headed `{path}`"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_option_has_help_and_is_documented(path: str, command: click.Command) -> None:
    section = _section(path)
    for param in command.params:
        if isinstance(param, click.Argument):
            assert (param.metavar or param.name or "").upper() in section, (
                f"argument {param.name} of {path} missing from docs/cli.md"
            )
            continue
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert (param.help or "").strip(), f"{path} {param.opts[0]} has no help text"
        for name in [*param.opts, *param.secondary_opts]:
            # Named in the first cell of a row of the section's options table.
            row = rf"^\|[^|\n]*`[^`\n]*{re.escape(name)}(?![\w-])"
            assert re.search(row, section, re.MULTILINE), (
                f"{path} option {name} is not in its docs/cli.md options table"
            )


@pytest.mark.parametrize(
    "key", sorted(f.name for f in fields(config.Settings) if f.name != "source")
)
def test_every_setting_is_documented(key: str) -> None:
    assert f"| `{key}` |" in CONFIG_DOC, f"setting {key} missing from docs/configuration.md"


@pytest.mark.parametrize(
    "variable", sorted([*config.ENV_VARS, "AGENTWATCH_HOME", "AGENTWATCH_CONFIG"])
)
def test_every_environment_variable_is_documented(variable: str) -> None:
    assert f"`{variable}`" in CONFIG_DOC, f"{variable} missing from docs/configuration.md"
    assert f"`{variable}`" in CLI_DOC, f"{variable} missing from docs/cli.md"
