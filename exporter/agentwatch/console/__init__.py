"""The on-call console: server-rendered HTML pages inside `agentwatch serve` (docs/console.md).

`/ui/` (overview), `/ui/runs` (filtered runs list), `/ui/runs/{id}` (one run, id prefixes
resolve), `/ui/agents/{agent}`, `/ui/models/{model}`, `/ui/budgets/{budget}` and
`/ui/runbooks`. Pages read the store through the same typed queries as the JSON API, render
with Jinja2 (autoescaped) and ship with no script at all, under a strict
Content-Security-Policy. Importing this package imports Jinja2; `import agentwatch` does not.
"""

from __future__ import annotations

from agentwatch.console.fmt import run_url
from agentwatch.console.routes import ConsoleContext, console_routes

__all__ = ["ConsoleContext", "console_routes", "run_url"]
