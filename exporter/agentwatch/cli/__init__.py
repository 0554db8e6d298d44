"""The `agentwatch` command line. Each sub-module holds one command (or group of commands).

A command's module is imported only when that command runs or shows its own help, so
`agentwatch --help` and `agentwatch monitor stats` do not pay for the server, the demo or
the audit trail (click's "lazily loading subcommands" pattern, `_Group.get_command`).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

import click

from agentwatch._version import __version__
from agentwatch.errors import AgentwatchError


class LazyCommand(NamedTuple):
    """Where a command lives (`module:attribute`) and the first paragraph of its help.

    The summary is what `agentwatch --help` lists (click shortens the first paragraph to fit
    the terminal), so the listing needs no import; tests/test_import.py checks that it
    matches the command's own help.
    """

    target: str
    summary: str

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class _Group(click.Group):
    """Every error is one line on stderr and a non-zero exit status, never a traceback.

    agentwatch's typed errors exit 2 (configuration) or 1; click's usage errors keep their
    status 2 but drop the usage block, so a script's stderr holds exactly one line. Anything
    unexpected (a bug) is reported on one line too, with the way to see the traceback
    (`AGENTWATCH_DEBUG=1`).

    Subcommands given as `lazy` are imported the first time they are asked for, by name.
    """

    def __init__(
        self, *args: Any, lazy: Mapping[str, LazyCommand] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, LazyCommand] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            command = self.lazy[cmd_name].load()
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from the summaries of the commands not imported yet."""
        listed = click.Group(
            commands={
                name: self.commands.get(name) or click.Command(name, help=self.lazy[name].summary)
                for name in self.list_commands(ctx)
            }
        )
        listed.format_commands(ctx, formatter)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        for arg in args:
            if "\x00" in arg or not _is_utf8(arg):
                raise _UsageLine(f"argument {arg[:40]!r} is not valid UTF-8 text")
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> object:
        from agentwatch.errors import ConfigError

        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConfigError as exc:
            _fail(_one_line(exc), 2)
        except AgentwatchError as exc:
            _fail(_one_line(exc), 1)
        except OSError as exc:
            if exc.errno == errno.EPIPE or os.environ.get("AGENTWATCH_DEBUG"):
                raise  # click quiets a closed pipe (`... | head`)
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or _one_line(exc)}", 1)
        except Exception as exc:
            if os.environ.get("AGENTWATCH_DEBUG"):
                raise
            _fail(
                f"unexpected {type(exc).__name__}: {_one_line(exc)} "
                "(a bug: please report it; AGENTWATCH_DEBUG=1 shows the traceback)",
                1,
            )


def _is_utf8(arg: str) -> bool:
    """False for bytes the terminal sent that are not UTF-8 (decoded as lone surrogates):
    no store, SQL parameter or output stream can carry them."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(status)


_HELP_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def _one_line_usage(exc: click.UsageError) -> click.ClickException:
    """A usage error as `Error: <message> (see '<command> --help')`, keeping its status."""
    if isinstance(exc, _HELP_ERRORS):
        return exc  # `agentwatch config` with no subcommand: the help is the answer
    command = exc.ctx.command_path if exc.ctx is not None else "agentwatch"
    return _UsageLine(f"{_one_line(exc.format_message())} (see '{command} --help')")


class _UsageLine(click.ClickException):
    """A usage error shown as one line; exit status 2 like click's own."""

    exit_code = 2


def _one_line(exc: BaseException | str) -> str:
    """Driver errors (psycopg's, for one) span several lines; a CLI error is one line."""
    return " ".join(str(exc).split())


#: Every top-level command: where it lives and the first paragraph of its help.
COMMANDS: dict[str, LazyCommand] = {
    "audit": LazyCommand(
        "agentwatch.cli.audit:audit",
        "Verify, export and anchor the audit trail (enable it with `audit: true`).",
    ),
    "config": LazyCommand(
        "agentwatch.cli.config_show:config_group", "Inspect agentwatch's configuration."
    ),
    "demo": LazyCommand(
        "agentwatch.cli.demo:demo",
        "Simulate agents calling LLMs (real litellm, mocked network) and record everything.",
    ),
    "init": LazyCommand(
        "agentwatch.cli.init:init",
        "Write ~/.agentwatch/config.yaml, create and migrate the store, and print next steps.",
    ),
    "monitor": LazyCommand(
        "agentwatch.cli.monitor:monitor",
        "Live view of agent runs: totals, success rate, spend and recent activity.",
    ),
    "serve": LazyCommand(
        "agentwatch.cli.serve:serve",
        "Expose /metrics (durable rollups and budgets), /healthz, /readyz, a JSON API and the "
        "on-call console (/ui/).",
    ),
    "web": LazyCommand(
        "agentwatch.cli.web:web",
        "Helpers for the web configuration file (TLS, basic auth) of `agentwatch serve`.",
    ),
}


@click.group(cls=_Group, lazy=COMMANDS)
@click.version_option(__version__, prog_name="agentwatch")
def cli() -> None:
    """agentwatch: Prometheus metrics, durable telemetry and alerts for LLM agents."""


def main() -> None:
    """Console-script entry point."""
    cli()
