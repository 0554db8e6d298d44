"""How `agentwatch serve` reaches the store: lazily, one connection per lane, never revealing it.

A store that is down (or refused) when the server starts must not stop the server: /metrics
then reports `agentwatch_store_up 0` and /readyz answers 503 until the store comes back.

Lanes: the scrape (`/metrics`, `/readyz`) and the JSON API each get their own `StoreAccess`,
hence their own connection and lock, so a slow API page never holds the lock a scrape waits
on. Every call is blocking: the HTTP layer runs it in a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from agentwatch.redaction import mask_url, redactor_for
from agentwatch.store import open_store, schema
from agentwatch.store.base import Store

logger = logging.getLogger("agentwatch")

T = TypeVar("T")


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's password masked wherever it appears,
    and every other secret shape the redaction table knows."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    masked = redactor_for(()).redact_text(text.replace(url, mask_url(url)), 2000)
    if password:
        for secret in {password, unquote(password)}:
            if secret:
                masked = masked.replace(secret, "***")
    return masked


def _open_reader(url: str) -> Store:
    """Open an existing store for reading; never create one.

    A missing store or a foreign / newer database is refused (`StoreNotFound`,
    `IncompatibleStore`: /readyz answers 503 and the reason is logged once). A store of an
    older schema is upgraded first, as every reading command does.
    """
    store = open_store(url, create=False)
    try:
        if set(store.schema_versions()) != {m.version for m in schema.MIGRATIONS}:
            store.migrate()
    except BaseException:
        store.close()
        raise
    return store


class _OutageLog:
    """Logs a store outage once, and its end once, however many lanes see it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down = False

    def failed(self, masked_url: str, detail: str) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        logger.warning("agentwatch serve: store %s unavailable: %s", masked_url, detail)

    def succeeded(self, masked_url: str) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        logger.info("agentwatch serve: store %s reachable again", masked_url)


class StoreAccess:
    """Opens the store on first use, serialises access, and reopens after a failure.

    Args:
        url: the store URL (may carry a password: it is masked in every log line).
        opener: how to open it (tests inject failures); by default an existing store only.
        lane: a name for log lines (`metrics`, `api`).
        outages: shared by the lanes of one server so an outage is logged once.
    """

    def __init__(
        self,
        url: str,
        opener: Callable[[str], Store] = _open_reader,
        lane: str = "store",
        outages: _OutageLog | None = None,
    ) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.lane = lane
        self._opener = opener
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._outages = outages or _OutageLog()

    def run(self, action: Callable[[Store], T]) -> T:
        """Run `action` against the store under this lane's lock; raise on failure.

        A failure closes the connection (the next call reopens it) and is logged once until
        the store answers again, with the password masked.
        """
        with self._lock:
            try:
                if self._store is None:
                    self._store = self._opener(self.url)
                result = action(self._store)
            except Exception as exc:
                self._reset()
                detail = scrub(f"{type(exc).__name__}: {exc}", self.url)
                self._outages.failed(self.masked_url, " ".join(detail.split()))
                raise
            self._outages.succeeded(self.masked_url)
            return result

    def _reset(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                store.close()

    def close(self) -> None:
        """Close the connection (a later `run` reopens it)."""
        with self._lock:
            self._reset()


class StoreLanes:
    """The two lanes of one server: `metrics` (scrapes, readiness) and `api` (JSON pages)."""

    def __init__(self, url: str, opener: Callable[[str], Store] = _open_reader) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        outages = _OutageLog()
        self.metrics = StoreAccess(url, opener, lane="metrics", outages=outages)
        self.api = StoreAccess(url, opener, lane="api", outages=outages)

    def close(self) -> None:
        self.metrics.close()
        self.api.close()


def probe(access: StoreAccess) -> Any:
    """A cheap read that proves the store answers (readiness)."""
    return access.run(lambda store: store.last_write_time())
