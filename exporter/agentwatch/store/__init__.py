"""Durable stores: SQLite (default, one file) and PostgreSQL (shared by many hosts).

    store = open_store("sqlite:////home/me/.agentwatch/telemetry.db")
    store.migrate()
    store.get_summary_stats(agent_name="translator")

SQLite URLs follow SQLAlchemy's convention: `sqlite:///relative.db`, `sqlite:////abs.db`
(what `config.default_store_url()` produces). PostgreSQL URLs are libpq URLs
(`postgresql://user@host:5432/db`, `postgres://...`), opened with psycopg 3, an optional
extra (`pip install 'agentwatch[postgres]'`).
"""

from __future__ import annotations

from agentwatch.errors import UnsupportedStoreURL
from agentwatch.store.base import RollupRow, Store, StoreUnavailable

__all__ = ["RollupRow", "Store", "StoreUnavailable", "backend_for_url", "open_store"]

_SQLITE_PREFIX = "sqlite:///"


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


def open_store(url: str) -> Store:
    """Open (connect to) the store at `url`; call `migrate()` before first use.

    Raises:
        UnsupportedStoreURL: unknown scheme.
        StoreError: the store cannot be opened (`StoreUnavailable` when retrying later may
            help: server down, directory not writable, ...).
    """
    backend = backend_for_url(url)
    if backend == "sqlite":
        from agentwatch.store.sqlite import SQLiteStore

        path = url[len(_SQLITE_PREFIX) :].split("?", 1)[0]
        if not path:
            raise UnsupportedStoreURL(f"SQLite URL {url!r} names no file")
        return SQLiteStore(path)
    from agentwatch.store.postgres import PostgresStore

    return PostgresStore(url)
