"""Running store reads and response rendering off the event loop, lane by lane.

The event loop only moves bytes; anything that blocks or burns CPU (a store query, JSON
encoding of a page, gzip, the exposition) runs in a worker thread. Each lane has its own
thread limiter and a bound on requests in flight: when the API lane is saturated its extra
requests get 503 at once instead of queueing without end, and the metrics lane is untouched.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from agentwatch.server.store_access import StoreAccess
from agentwatch.store.base import Store

T = TypeVar("T")

#: Bodies smaller than this are sent as they are (gzip would cost more than it saves).
_GZIP_MIN = 1024


class Lane:
    """One store connection with its worker threads and its queue bound.

    Args:
        access: the lane's store access (own connection and lock).
        threads: worker threads this lane may use at once.
        max_waiting: requests that may wait for or use the lane; more get 503 right away.
    """

    def __init__(self, access: StoreAccess, threads: int = 2, max_waiting: int = 32) -> None:
        self.access = access
        self.limiter = anyio.CapacityLimiter(threads)
        self.max_waiting = max_waiting
        self.waiting = 0

    async def run(self, func: Callable[[], T]) -> T:
        """Run blocking `func` in one of this lane's worker threads."""
        return await anyio.to_thread.run_sync(func, limiter=self.limiter)

    async def read(self, request: Request, action: Callable[[Store], T]) -> T | Response:
        """`action(store)` in a worker thread; a 503 Response when busy or the store fails."""
        if self.waiting >= self.max_waiting:
            return busy()
        self.waiting += 1
        try:
            return await self.run(lambda: self.access.run(action))
        except Exception:  # logged once, password masked, by StoreAccess
            return store_unavailable()
        finally:
            self.waiting -= 1


def busy() -> Response:
    return Response(
        b'{"error":"busy, retry shortly"}',
        503,
        headers={"Retry-After": "1"},
        media_type="application/json",
    )


def store_unavailable() -> Response:
    return Response(b'{"error":"store unavailable"}', 503, media_type="application/json")


def accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def encode_body(body: bytes, gzip_ok: bool) -> tuple[bytes, dict[str, str]]:
    """The body to send and its encoding headers (gzip when accepted and worth it)."""
    if gzip_ok and len(body) >= _GZIP_MIN:
        return gzip.compress(body, compresslevel=5), {
            "Content-Encoding": "gzip",
            "Vary": "Accept-Encoding",
        }
    return body, {"Vary": "Accept-Encoding"}


async def json_response(
    request: Request,
    payload: Any,
    headers: Mapping[str, str] | None = None,
    *,
    lane: Lane,
    status: int = 200,
) -> Response:
    """`payload` as compact JSON, encoded (and gzipped) in a worker thread of `lane`."""
    gzip_ok = accepts_gzip(request)

    def render() -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return encode_body(raw, gzip_ok)

    body, extra = await lane.run(render)
    return Response(
        body, status, headers={**extra, **(headers or {})}, media_type="application/json"
    )
