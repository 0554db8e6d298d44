"""The `agentwatch` command line. Each sub-module registers one group of commands."""

from __future__ import annotations

import sys

import click

from agentwatch._version import __version__
from agentwatch.errors import AgentwatchError


class _Group(click.Group):
    """Turns agentwatch's typed errors into one clear line and exit status 2 (or 1)."""

    def invoke(self, ctx: click.Context) -> object:
        from agentwatch.errors import ConfigError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"Error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except AgentwatchError as exc:
            click.echo(f"Error: {_one_line(exc)}", err=True)
            sys.exit(1)


def _one_line(exc: BaseException) -> str:
    """Driver errors (psycopg's, for one) span several lines; a CLI error is one line."""
    return " ".join(str(exc).split())


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="agentwatch")
def cli() -> None:
    """agentwatch: Prometheus metrics, durable telemetry and alerts for LLM agents."""


def _register() -> None:
    from agentwatch.cli import config_show, demo, init, monitor, serve

    cli.add_command(init.init)
    cli.add_command(monitor.monitor)
    cli.add_command(serve.serve)
    cli.add_command(demo.demo)
    cli.add_command(config_show.config_group, name="config")


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
