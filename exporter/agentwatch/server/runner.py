"""Binding a socket and running an ASGI app on uvicorn with the guarded protocol.

`HTTPServer` is shared by `agentwatch serve` (foreground, signals) and
`agentwatch.start_http_server` (a daemon thread in the host program). The socket is bound
before anything else, so a taken port or an unresolvable host fails at once with one line
(`ServeError`), and port 0 picks a free port that `url` then reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

from agentwatch.errors import ServeError
from agentwatch.server.protocol import ConnectionGuard, ConnectionLimits, protocol_factory
from agentwatch.server.webconfig import WebConfigWatcher

logger = logging.getLogger("agentwatch")


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on `host:port`.

    Raises:
        ServeError: the port is taken, the address is not local, or the name does not resolve.
    """
    if not host.strip():
        raise ServeError(
            "an empty host would listen on every interface; give 127.0.0.1 (local only) or "
            "0.0.0.0 (every interface) explicitly"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:  # gaierror included
        reason = exc.strerror or str(exc)
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling (ours decides), closing idle sockets."""

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.close_idle()
        await super().shutdown(sockets)


class HTTPServer:
    """One listening socket served by uvicorn, in the foreground or on a daemon thread.

    Args:
        app: the ASGI application (already wrapped in its web-config guard).
        sock: a bound, listening socket (see `bind`).
        watcher: the web configuration (TLS mode is fixed for the server's lifetime).
        limits: connection timeouts and caps.
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        watcher: WebConfigWatcher,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.sock = sock
        self.watcher = watcher
        self.limits = limits or ConnectionLimits()
        self.guard = ConnectionGuard(self.limits.connections())
        config = uvicorn.Config(
            app,
            http=protocol_factory(self.guard, self.limits, watcher),  # type: ignore[arg-type]
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=self.limits.keep_alive_timeout,
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=self.limits.max_header_bytes,
        )
        self._server = _Server(config, self.guard)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self.watcher.tls_enabled else "http"

    @property
    def url(self) -> str:
        host = self.host
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self.sock])

    def serve_forever(self) -> None:
        """Serve in this thread until `shutdown()` or, in the main thread, SIGINT/SIGTERM.

        In the main thread SIGHUP re-reads the web configuration file.
        """
        if threading.current_thread() is not threading.main_thread():
            asyncio.run(self._serve())
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_signal)
        try:
            asyncio.run(self._serve())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if hasattr(signal, "SIGHUP") and signum == signal.SIGHUP:
            self.reload_web_config()
            return
        if self._server.should_exit and signum == signal.SIGINT:
            self._server.force_exit = True
        self._server.should_exit = True

    def reload_web_config(self) -> None:
        """Re-read the web config file now (SIGHUP); errors are logged, the old one stays."""
        if self.watcher.path is None:
            return
        self.watcher.request_reload()
        with contextlib.suppress(Exception):  # logged by the watcher; fails closed
            self.watcher.current()

    def start(self, timeout: float = 10.0) -> threading.Thread:
        """Serve on a daemon thread; return once the server accepts connections."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve())
            except BaseException as exc:  # pragma: no cover - reported to the caller
                errors.append(exc)

        self._thread = threading.Thread(target=run, name="agentwatch-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if errors or not self._thread.is_alive():
                raise ServeError(f"the HTTP server did not start: {errors[:1]}")
            if time.monotonic() > deadline:
                raise ServeError("the HTTP server did not start in time")
            time.sleep(0.01)
        return self._thread

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop serving (finishing requests in flight) and close the socket. Idempotent."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        """Close the listening socket (when the server never ran)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self.sock.close()
