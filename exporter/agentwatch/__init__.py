"""agentwatch: capture LLM agent runs, export Prometheus metrics, keep a durable record.

    import agentwatch

    agentwatch.instrument_litellm()          # every litellm call becomes an llm_call event

    @agentwatch.observe
    async def researcher(question: str) -> str: ...

    with agentwatch.track("batch-job", team="search"):
        ...

Importing this package is cheap: submodules (and litellm) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentwatch._version import __version__

if TYPE_CHECKING:
    from agentwatch.capture import observe as observe
    from agentwatch.capture import record_event as record_event
    from agentwatch.capture import record_llm_call as record_llm_call
    from agentwatch.capture import record_tool_call as record_tool_call
    from agentwatch.capture import track as track
    from agentwatch.enforcement import check_budget as check_budget
    from agentwatch.errors import BudgetExceeded as BudgetExceeded
    from agentwatch.event_store import EventStore as EventStore
    from agentwatch.integrations.litellm import instrument_litellm as instrument_litellm
    from agentwatch.logs import install_json_logging as install_json_logging
    from agentwatch.runtime import aflush as aflush
    from agentwatch.runtime import close as close
    from agentwatch.runtime import configure as configure
    from agentwatch.runtime import flush as flush
    from agentwatch.runtime import start_http_server as start_http_server

_EXPORTS: dict[str, str] = {
    "observe": "agentwatch.capture",
    "track": "agentwatch.capture",
    "record_llm_call": "agentwatch.capture",
    "record_tool_call": "agentwatch.capture",
    "record_event": "agentwatch.capture",
    "check_budget": "agentwatch.enforcement",
    "BudgetExceeded": "agentwatch.errors",
    "instrument_litellm": "agentwatch.integrations.litellm",
    "install_json_logging": "agentwatch.logs",
    "EventStore": "agentwatch.event_store",
    "configure": "agentwatch.runtime",
    "flush": "agentwatch.runtime",
    "aflush": "agentwatch.runtime",
    "close": "agentwatch.runtime",
    "start_http_server": "agentwatch.runtime",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
