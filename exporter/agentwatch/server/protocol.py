"""Connection handling hardened against idle, slow and abusive clients (uvicorn's h11 protocol).

uvicorn's keep-alive timeout only starts after a first response, so a client that connects
and never sends a byte (or sends its headers one byte a minute: a slowloris) is held forever.
`GuardedH11Protocol` adds what the exporter-toolkit gets from Go's `ReadHeaderTimeout`:

- the request line and headers must arrive within `header_timeout` of the connection (or of
  the first byte after a keep-alive pause), and a request body within the same deadline;
- a client that stops reading its response for `write_timeout` is dropped;
- `ConnectionGuard` caps open connections below the process' file-descriptor limit and, when
  full, closes the connection idle for longest, so idle sockets can never lock out a scrape;
- TLS is done per connection with the web config's *current* context (a rotated certificate
  or a new client CA applies to the next connection), with a handshake deadline, and the
  client certificate's SANs are checked when `client_allowed_sans` is set.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from agentwatch.server.webconfig import WebConfigUnavailable, WebConfigWatcher, san_allowed

logger = logging.getLogger("agentwatch")


def default_max_connections() -> int:
    """Open connections allowed: the fd limit less room for the store, logs and threads."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no such limit on this platform
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, min(10_000, soft - 128))


@dataclass(frozen=True)
class ConnectionLimits:
    """Time and size limits of every connection (seconds, bytes).

    Attributes:
        header_timeout: time for a request line and headers (and a body) to arrive.
        keep_alive_timeout: an idle keep-alive connection is closed after this.
        write_timeout: a client that reads none of its response for this long is dropped.
        handshake_timeout: time for a TLS handshake.
        max_header_bytes: request line plus headers; larger requests get 400.
        max_connections: open connections; when full, the longest-idle one is closed.
    """

    header_timeout: float = 10.0
    keep_alive_timeout: int = 60
    write_timeout: float = 30.0
    handshake_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 0

    def connections(self) -> int:
        return self.max_connections or default_max_connections()


class ConnectionGuard:
    """Open connections in the order they last did something; evicts idle ones when full.

    Runs on the event loop only (no locking).
    """

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._open: dict[GuardedH11Protocol, None] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Register `conn`; make room by closing the longest-idle connection. False if full."""
        if conn in self._open:
            return True
        while len(self._open) >= self.max_connections:
            victim = next((c for c in self._open if c.is_idle()), None)
            if victim is None:
                return False
            self.release(victim)
            victim.evict()
            self.evicted += 1
        self._open[conn] = None
        return True

    def touch(self, conn: GuardedH11Protocol) -> None:
        """Mark `conn` as the most recently active."""
        if conn in self._open:
            del self._open[conn]
            self._open[conn] = None

    def release(self, conn: GuardedH11Protocol) -> None:
        self._open.pop(conn, None)

    def close_idle(self) -> None:
        """Close every idle connection (shutdown: do not wait for their timeouts)."""
        for conn in [c for c in self._open if c.is_idle()]:
            self.release(conn)
            conn.evict()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus header/body/write deadlines and the connection guard."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        guard: ConnectionGuard,
        limits: ConnectionLimits,
        allowed_sans: tuple[str, ...] = (),
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guard = guard
        self._limits = limits
        self._allowed_sans = allowed_sans
        self._raw_transport: asyncio.Transport | None = None
        self._connected = False
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    # -- the guard's view ------------------------------------------------------------------
    def attach_raw(self, transport: asyncio.Transport) -> None:
        """The TCP transport (before TLS), so eviction can close a handshaking connection."""
        self._raw_transport = transport

    def is_idle(self) -> bool:
        """Not in the middle of a request: still handshaking, or waiting for one."""
        if not self._connected:
            return True
        if self.cycle is not None and not self.cycle.response_complete:
            return False
        return self.conn.their_state is h11.IDLE

    def evict(self) -> None:
        """Close now (the guard needs the slot, or the server is stopping)."""
        self._disarm()
        if self._connected and not self.transport.is_closing():
            self.transport.close()
        if self._raw_transport is not None and not self._raw_transport.is_closing():
            self._raw_transport.abort()

    # -- deadlines -------------------------------------------------------------------------
    def arm(self) -> None:
        """Start the header/body deadline unless it is already running."""
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._limits.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self._connected:  # pragma: no cover - armed only once connected
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self._guard.release(self)
            self.transport.close()

    # -- protocol interface ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._raw_transport is None:  # plain HTTP: this is the TCP transport
            self._raw_transport = transport
            if not self._guard.admit(self):
                transport.abort()
                return
        elif self._allowed_sans and not san_allowed(
            transport.get_extra_info("peercert"), self._allowed_sans
        ):
            logger.debug("agentwatch: client certificate names none of client_allowed_sans")
            transport.abort()
            return
        self._connected = True
        self.arm()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._connected:  # pragma: no cover - refused in connection_made
            return
        self._guard.touch(self)
        if self.conn.their_state is h11.IDLE:
            self.arm()
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY) and self._deadline:
            self._deadline.cancel()
            self._deadline = None

    def on_response_complete(self) -> None:
        self._guard.touch(self)
        super().on_response_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self._limits.write_timeout, self._write_expired
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_expired(self) -> None:
        self._write_deadline = None
        if self._connected and not self.transport.is_closing():
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard.release(self)
        if not self._connected:  # never got past the TLS handshake or the guard
            return
        super().connection_lost(exc)


class _GuardedTLSProtocol(sslproto.SSLProtocol):
    """asyncio's own TLS layer (what `create_server(ssl=...)` uses), admitted by the guard."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app: GuardedH11Protocol,
        context: ssl.SSLContext,
        guard: ConnectionGuard,
        handshake_timeout: float,
    ) -> None:
        super().__init__(
            loop,
            app,
            context,
            None,  # type: ignore[arg-type]  # no waiter: nobody awaits a server connection
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # float is fine
        )
        self._guarded_app = app
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._guarded_app.attach_raw(transport)
        if not self._guard.admit(self._guarded_app):
            transport.abort()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.release(self._guarded_app)
        super().connection_lost(exc)


def protocol_factory(
    guard: ConnectionGuard, limits: ConnectionLimits, watcher: WebConfigWatcher
) -> Callable[..., asyncio.BaseProtocol]:
    """What uvicorn calls per accepted connection (passed as `Config(http=...)`)."""

    def create(
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.BaseProtocol:
        context: ssl.SSLContext | None = None
        sans: tuple[str, ...] = ()
        if watcher.tls_enabled:
            try:
                web = watcher.current()
            except WebConfigUnavailable:  # protected routes answer 500; health still works
                web = watcher.last_good
            if web.tls is not None:
                context = web.ssl_context
                sans = web.tls.client_allowed_sans
        app = GuardedH11Protocol(
            config, server_state, app_state, _loop, guard=guard, limits=limits, allowed_sans=sans
        )
        if not watcher.tls_enabled:
            return app
        loop = _loop or asyncio.get_running_loop()
        if context is None:  # pragma: no cover - a TLS config always has a context
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        return _GuardedTLSProtocol(loop, app, context, guard, limits.handshake_timeout)

    return create
