"""The JSON API's record shapes: the store's typed rows, converted by their `to_record()`.

One conversion per kind of row, shared with the CLI's `--json` and `monitor export`
(`agent`, `duration_seconds`, ISO-8601 UTC times, `cost_usd` with null for unpriced), so the
same run looks the same everywhere. The legacy `/api/...` routes answer with the rows'
`legacy_dict()` for one more release.
"""

from __future__ import annotations

import math
from typing import Any

from agentwatch.store.rows import EXECUTION_RECORD_FIELDS, ExecutionRow

#: Keys of an execution record, in order (docs/api.md, docs/openapi.json).
EXECUTION_FIELDS: tuple[str, ...] = EXECUTION_RECORD_FIELDS

#: Keys of an event record (`EventRow.to_record()`), in order.
EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "execution_id",
    "agent",
    "seq",
    "kind",
    "name",
    "status",
    "started_at",
    "offset_seconds",
    "duration_seconds",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "time_to_first_token_seconds",
    "error_type",
    "error_message",
    "attributes",
    "attribution",
)


def execution_record(row: ExecutionRow) -> dict[str, Any]:
    """One stored execution in the shared record shape (keys: `EXECUTION_FIELDS`)."""
    return row.to_record()


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
