"""The HTTP application: routes, and the web-config guard in front of every one of them.

`WebGuard` applies the exporter-toolkit web configuration to each request: configured
response headers everywhere; then, except on `/healthz` and `/readyz` (which answer without
credentials and reveal nothing but "ok"/"ready"), the rate limit and HTTP Basic auth. It also
refuses request bodies (no route takes one) and bounds the requests in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentwatch._version import __version__
from agentwatch.server.auth import BasicAuthCache, TokenBucket, parse_basic
from agentwatch.server.exposition_cache import ExpositionCache, encoder_format
from agentwatch.server.render import Lane, accepts_gzip, encode_body
from agentwatch.server.store_access import probe
from agentwatch.server.webconfig import WebConfig, WebConfigUnavailable, WebConfigWatcher

logger = logging.getLogger("agentwatch")

#: Routes that answer without credentials (and say nothing about the store or the data).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: The largest request body accepted (no route takes one; this only bounds what is read).
MAX_BODY_BYTES = 64 * 1024
#: Uncached password checks allowed to wait for bcrypt; more are answered 503 at once.
MAX_AUTH_WAITING = 16
#: The request line plus headers. h11 refuses larger *incomplete* heads (400); a complete
#: one that arrived in a single read is refused here (431).
MAX_HEADER_BYTES = 16 * 1024


@dataclass
class GuardStats:
    """Counters the tests (and a curious operator) can read."""

    unauthorized: int = 0
    rate_limited: int = 0
    rejected_busy: int = 0


class WebGuard:
    """ASGI middleware applying the web configuration (see the module docstring).

    Args:
        app: the application behind the guard.
        watcher: the current web configuration.
        max_in_flight: protected requests handled at once; more get 503 immediately.
    """

    def __init__(self, app: ASGIApp, watcher: WebConfigWatcher, max_in_flight: int = 64) -> None:
        self.app = app
        self.watcher = watcher
        self.cache = BasicAuthCache()
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.stats = GuardStats()
        self._bucket: TokenBucket | None = None
        self._auth_limiter = anyio.CapacityLimiter(1)
        self._auth_waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        open_route = scope["path"] in OPEN_PATHS
        try:
            config = self.watcher.current()
        except WebConfigUnavailable:  # logged by the watcher; health keeps answering
            if not open_route:
                await _plain(send, 500, b"Internal Server Error\n")
                return
            config = self.watcher.last_good
        send = _with_headers(send, config.headers)
        if _head_size(scope) > MAX_HEADER_BYTES:
            await _plain(send, 431, b"Request Header Fields Too Large\n")
            return
        if _declared_length(scope) > MAX_BODY_BYTES:
            await _plain(send, 413, b"Request body too large\n")
            return
        if open_route:
            await self.app(scope, receive, send)
            return
        if not self._allowed_by_rate_limit(config):
            self.stats.rate_limited += 1
            await _plain(send, 429, b"Too Many Requests\n")
            return
        verdict = await self._authenticated(scope, config) if config.users else True
        if verdict is None:  # too many uncached checks queued (a password spray)
            self.stats.rejected_busy += 1
            await _plain(send, 503, b"Busy, retry shortly\n", [(b"retry-after", b"1")])
            return
        if not verdict:
            self.stats.unauthorized += 1
            await _plain(
                send, 401, b"Unauthorized\n", [(b"www-authenticate", b'Basic realm="agentwatch"')]
            )
            return
        if self.in_flight >= self.max_in_flight:
            self.stats.rejected_busy += 1
            await _plain(send, 503, b"Busy, retry shortly\n", [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _allowed_by_rate_limit(self, config: WebConfig) -> bool:
        limit = config.rate_limit
        if limit is None:
            self._bucket = None
            return True
        bucket = self._bucket
        if bucket is None or (bucket.interval, bucket.burst) != (limit.interval, limit.burst):
            bucket = self._bucket = TokenBucket(limit.interval, limit.burst)
        return bucket.allow()

    async def _authenticated(self, scope: Scope, config: WebConfig) -> bool | None:
        """True/False for the request's credentials; None when bcrypt is saturated.

        Cached verdicts answer on the event loop; a miss waits for the single bcrypt thread,
        and at most `MAX_AUTH_WAITING` misses may wait, so a spray of guesses costs one core
        at most and never delays a scraper whose password is already cached.
        """
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        cached = self.cache.cached(config.users, user, password)
        if cached is not None:
            return cached
        if self._auth_waiting >= MAX_AUTH_WAITING:
            return None
        users = config.users
        self._auth_waiting += 1
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.cache.verify(users, user, password), limiter=self._auth_limiter
            )
        finally:
            self._auth_waiting -= 1


def _head_size(scope: Scope) -> int:
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return size + sum(len(k) + len(v) + 4 for k, v in scope["headers"])


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return MAX_BODY_BYTES + 1
        if name == b"transfer-encoding":
            return MAX_BODY_BYTES + 1  # a streamed body: no route takes one
    return 0


def _with_headers(send: Send, headers: Sequence[tuple[str, str]]) -> Send:
    if not headers:
        return send
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {k for k, _ in encoded}
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": [*kept, *encoded]}
        await send(message)

    return wrapped


async def _plain(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def metrics_routes(
    registry: CollectorRegistry,
    lane: Lane | None,
    exposition: ExpositionCache | None = None,
) -> list[BaseRoute]:
    """`/metrics` (text or OpenMetrics, negotiated; gzip when accepted) and the health routes.

    With a `lane`, the exposition renders in its worker threads and `/readyz` probes its
    store; without one (the in-process endpoint) `/readyz` is always ready. With an
    `exposition` (serve), the body comes from that cache instead of rendering `registry`
    (a format the cache does not render still renders `registry`).
    """
    scrape_limiter = anyio.CapacityLimiter(2)

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        gzip_ok = accepts_gzip(request)

        openmetrics = None if exposition is None else encoder_format(encoder)

        def render() -> tuple[bytes, dict[str, str]]:
            if exposition is not None and openmetrics is not None:
                return encode_body(exposition.render(openmetrics), gzip_ok)
            return encode_body(encoder(registry), gzip_ok)

        if lane is not None:
            body, headers = await lane.run(render)
        else:
            body, headers = await anyio.to_thread.run_sync(render, limiter=scrape_limiter)
        return Response(body, headers={**headers, "Content-Type": content_type})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if lane is None:
            return PlainTextResponse("ready\n")
        try:
            await lane.run(lambda: probe(lane.access))
        except Exception:  # logged once, masked, by StoreAccess; nothing revealed here
            return PlainTextResponse("not ready\n", status_code=503)
        return PlainTextResponse("ready\n")

    return [
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]


def build_app(
    routes: Sequence[BaseRoute],
    watcher: WebConfigWatcher,
    *,
    index: Sequence[str] = (),
    max_in_flight: int = 64,
) -> WebGuard:
    """The ASGI app: `routes` (plus `/` listing `index`) behind the web-config guard."""

    async def root(request: Request) -> Response:
        body = "\n".join([f"agentwatch {__version__}", *index]) + "\n"
        return PlainTextResponse(body)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "no such route"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": "method not allowed"},
            status_code=405,
            headers=getattr(exc, "headers", None),
        )

    handlers: dict[Any, Callable[..., Any]] = {404: not_found, 405: not_allowed}
    app = Starlette(
        routes=[Route("/", root), *routes],
        exception_handlers=handlers,
    )
    return WebGuard(app, watcher, max_in_flight=max_in_flight)
