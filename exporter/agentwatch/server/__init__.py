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

from agentwatch.server.collector import StoreCollector, budget_families, rollup_families
from agentwatch.server.store_access import StoreAccess
from agentwatch.server.store_server import AgentwatchServer, make_server, serve_in_thread

__all__ = [
    "AgentwatchServer",
    "StoreAccess",
    "StoreCollector",
    "budget_families",
    "make_server",
    "rollup_families",
    "serve_in_thread",
]
