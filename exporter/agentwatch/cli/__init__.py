"""The `agentwatch` command line. Each sub-module registers one group of commands."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, NoReturn

import click

from agentwatch._version import __version__
from agentwatch.errors import AgentwatchError


class _Group(click.Group):
    """Every error is one line on stderr and a non-zero exit status, never a traceback.

    agentwatch's typed errors exit 2 (configuration) or 1; click's usage errors keep their
    status 2 but drop the usage block, so a script's stderr holds exactly one line. Anything
    unexpected (a bug) is reported on one line too, with the way to see the traceback
    (`AGENTWATCH_DEBUG=1`).
    """

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


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="agentwatch")
def cli() -> None:
    """agentwatch: Prometheus metrics, durable telemetry and alerts for LLM agents."""


def _register() -> None:
    from agentwatch.cli import audit, config_show, demo, init, monitor, serve, web

    cli.add_command(init.init)
    cli.add_command(monitor.monitor)
    cli.add_command(serve.serve)
    cli.add_command(demo.demo)
    cli.add_command(config_show.config_group, name="config")
    cli.add_command(web.web)
    cli.add_command(audit.audit)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
