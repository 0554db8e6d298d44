"""Options shared by every command that reads settings, so names and help stay consistent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from agentwatch.errors import ServeError

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(func: F) -> F:
    """Add --store and --config (flags override env, which overrides the config file)."""
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Config file. Default: $AGENTWATCH_CONFIG or ~/.agentwatch/config.yaml.",
    )(func)
    func = click.option(
        "--store",
        "store_url",
        default=None,
        metavar="URL",
        help="Store URL (sqlite:////abs/path.db, sqlite:///relative.db or "
        "postgresql://user@host/db). "
        "Default: $AGENTWATCH_STORE_URL, the config file, or ~/.agentwatch/telemetry.db.",
    )(func)
    return func


def with_listen_hint(error: ServeError) -> ServeError:
    """A `cannot listen on ...` error that also says how to choose another address."""
    return ServeError(
        f"{error}; choose another port with --port N or AGENTWATCH_PORT=N (--port 0 picks a "
        "free one), another address with --host"
    )
