"""Durable stores: SQLite (default, one file) and PostgreSQL (shared by many hosts).

    store = open_store("sqlite:////home/me/.agentwatch/telemetry.db")
    store.migrate()
    store.get_summary_stats(agent_name="translator")

Only `agentwatch init` and the host program's writer create a store (`create=True`, the
default); every reader (serve, monitor, export, prune, stats) opens with `create=False`, so
a mistyped path or URL is reported (`StoreNotFound`) instead of answering from a new, empty
store, and a foreign or newer database is refused (`IncompatibleStore`).

SQLite URLs follow SQLAlchemy's convention: `sqlite:///relative.db`, `sqlite:////abs.db`
(what `config.default_store_url()` produces). PostgreSQL URLs are libpq URLs
(`postgresql://user@host:5432/db`, `postgres://...`), opened with psycopg 3, an optional
extra (`pip install '.[postgres]'` in the checkout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentwatch.errors import IncompatibleStore, StoreNotFound, UnsupportedStoreURL

if TYPE_CHECKING:
    from agentwatch.store.base import RollupRow, Store, StoreUnavailable

__all__ = [
    "IncompatibleStore",
    "RollupRow",
    "Store",
    "StoreNotFound",
    "StoreUnavailable",
    "backend_for_url",
    "open_store",
]

_SQLITE_PREFIX = "sqlite:///"
#: Imported on first use: `agentwatch.store.rows` (the CLI's row types) must not pull in the
#: writer's modules, which a command like `agentwatch --help` never needs.
_LAZY = ("RollupRow", "Store", "StoreUnavailable")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from agentwatch.store import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_for_url(url: str) -> str:
    """Return the backend name ("sqlite" | "postgresql") a store URL selects.

    Raises:
        UnsupportedStoreURL: the scheme is not one agentwatch handles.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite" and url.startswith(_SQLITE_PREFIX):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise UnsupportedStoreURL(
        f"unsupported store URL {url!r} (expected sqlite:///path/to/file.db or "
        "postgresql://user@host:port/db)"
    )


def open_store(url: str, *, create: bool = True) -> Store:
    """Open (connect to) the store at `url` and check it is one this release can use.

    With `create=True` (init, the host program's writer) a missing SQLite file and its
    directory are created, and an empty database is accepted; call `migrate()` to create
    or upgrade the tables. With `create=False` (every reader: `serve`, `monitor`, export,
    prune) nothing is created: a missing file or an empty database is `StoreNotFound`.
    Either way a database with foreign tables or a newer schema is refused. A store of an
    older schema opens; `migrate()` upgrades it.

    Raises:
        UnsupportedStoreURL: unknown scheme.
        StoreNotFound: `create` is False and there is no agentwatch store at `url`.
        IncompatibleStore: not an agentwatch store, or a schema newer than this release.
        StoreError: the store cannot be opened (`StoreUnavailable` when retrying later may
            help: server down, directory not writable, ...).
    """
    backend = backend_for_url(url)
    store: Store
    if backend == "sqlite":
        from agentwatch.store.sqlite import SQLiteStore

        path = url[len(_SQLITE_PREFIX) :].split("?", 1)[0]
        if not path:
            raise UnsupportedStoreURL(f"SQLite URL {url!r} names no file")
        store = SQLiteStore(path, create=create)
    else:
        from agentwatch.store.postgres import PostgresStore

        store = PostgresStore(url)
    try:
        store.check(create=create)
    except BaseException:
        store.close()
        raise
    return store
