"""Column order of the execution and event rows the writer hands the store.

`rollups.RollupBatch` carries its rows as tuples in this order and the store's INSERT
statements name the columns in the same order. It lives apart from `rollups` so a reader
that only opens a store (`agentwatch monitor stats`) does not import the writer's modules.
"""

from __future__ import annotations

#: Column order of the rows in `RollupBatch.executions` (the store's INSERT uses it).
EXECUTION_COLUMNS: tuple[str, ...] = (
    "id", "agent", "parent_id", "kind", "status", "started_at", "ended_at", "duration",
    "error_type", "error_message", "arguments", "attributes", "cost_usd", "input_tokens",
    "output_tokens", "cached_tokens", "reasoning_tokens", "llm_calls", "tool_calls",
    "attribution",
)  # fmt: skip
#: Column order of the rows in `RollupBatch.events` (and of late events, whose `seq` the
#: store computes in SQL as the next free position of their execution).
EVENT_COLUMNS: tuple[str, ...] = (
    "execution_id", "agent", "seq", "kind", "name", "started_at", "duration", "status",
    "model", "provider", "input_tokens", "output_tokens", "cached_tokens",
    "reasoning_tokens", "cost_usd", "time_to_first_token", "error_type", "error_message",
    "attributes", "attribution",
)  # fmt: skip
