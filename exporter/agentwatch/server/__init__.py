"""`agentwatch serve` and the in-process endpoint: HTTP, web configuration, store, JSON API.

One module per job:

- `store_access`: reaching the store (lazily, one connection per lane, password masked);
- `collector`: the Prometheus collector over the store's rollups and budgets;
- `webconfig`, `auth`: the exporter-toolkit web configuration (TLS, basic auth, headers);
- `protocol`, `runner`: connections (timeouts, caps, per-connection TLS) on uvicorn;
- `app`, `render`: the ASGI app, its guard, and off-loop rendering;
- `api`, `records`, `openapi`: the JSON API, its record shapes and its OpenAPI document;
- `store_server`, `metrics_endpoint`: the two servers built from these parts.

Importing this package imports Starlette and uvicorn; `import agentwatch` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.server.collector import StoreCollector, budget_families, rollup_families
    from agentwatch.server.store_access import StoreAccess
    from agentwatch.server.store_server import AgentwatchServer, make_server, serve_in_thread

# Resolved on first use, so `python -m agentwatch.server.openapi` runs without importing the
# whole server first.
_EXPORTS = {
    "AgentwatchServer": "agentwatch.server.store_server",
    "make_server": "agentwatch.server.store_server",
    "serve_in_thread": "agentwatch.server.store_server",
    "StoreAccess": "agentwatch.server.store_access",
    "StoreCollector": "agentwatch.server.collector",
    "budget_families": "agentwatch.server.collector",
    "rollup_families": "agentwatch.server.collector",
}

__all__ = [
    "AgentwatchServer",
    "StoreAccess",
    "StoreCollector",
    "budget_families",
    "make_server",
    "rollup_families",
    "serve_in_thread",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentwatch.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
