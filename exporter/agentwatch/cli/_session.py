"""Open the store a command reads, through the one settings path, and close it afterwards.

Every store-backed command resolves `--store` / `--config` with `config.load_settings`, so
the precedence (defaults < config file < `AGENTWATCH_*` < flags) has one implementation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from agentwatch.config import Settings
    from agentwatch.store.base import Store


def resolve_settings(config_path: Path | None, store_url: str | None) -> Settings:
    """Settings from defaults, the config file, the environment and these flags."""
    from agentwatch.config import load_settings

    return load_settings(config_path, store_url=store_url)


def sqlite_path(url: str) -> Path | None:
    """The file behind a `sqlite:///...` URL, or None for other backends."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///") :].split("?", 1)[0]).expanduser()


@contextmanager
def open_for_reading(settings: Settings) -> Iterator[Store]:
    """The store named by `settings`, closed on exit; never creates one.

    Readers open with `create=False`: a missing SQLite file or an empty database is an
    error whose one-line message says how to create the store (reading must not create an
    empty store in the wrong place), and a foreign or newer database is refused. A store of
    an older schema is upgraded first, as the writer would.

    Raises:
        agentwatch.errors.StoreNotFound: no agentwatch store at that URL.
        agentwatch.errors.IncompatibleStore: a foreign database, or a newer schema.
        agentwatch.errors.StoreError: the store cannot be opened or queried.
    """
    from agentwatch.store import schema

    store = connect(settings.store_url, create=False)
    try:
        if set(store.schema_versions()) != {m.version for m in schema.MIGRATIONS}:
            store.migrate()
        yield store
    finally:
        store.close()


def connect(url: str, *, create: bool = True) -> Store:
    """`open_store(url, create=...)`, with a multi-line driver error folded into one line.

    `init` creates (`create=True`); every reading command passes `create=False`.

    Raises:
        agentwatch.errors.StoreError: the store cannot be opened (same class as raised).
    """
    from agentwatch.errors import StoreError
    from agentwatch.store import open_store

    try:
        return open_store(url, create=create)
    except StoreError as exc:
        folded = " ".join(str(exc).split())
        if folded == str(exc):
            raise
        raise type(exc)(folded) from exc


def describe_store(settings: Settings) -> str:
    """The store URL with any password hidden, for headers and messages."""
    from agentwatch.cli._render import redact_url

    return redact_url(settings.store_url)


#: Width of a console that is not a terminal: wider than anything the CLI prints, so a
#: pipe or a file gets every value whole (rich pads nothing to it: tables keep their size).
PIPE_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    """A rich console on click's current stdout/stderr (so CliRunner captures it).

    On a terminal, its width (tables choose their columns to fit, long values wrap); in a
    pipe or a file, no width limit, so nothing is ever cut or wrapped for `grep` and `cut`.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def terminal_width(out: Console) -> int | None:
    """The width tables must fit in, or None when `out` is not a terminal."""
    return out.width if out.is_terminal else None


def echo_json(value: Any) -> None:
    """Pretty, stable JSON on stdout (keys in insertion order, UTF-8 kept)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
