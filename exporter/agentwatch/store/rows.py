"""Typed rows the store's queries return, and their one JSON shape.

Every reader of the store (the CLI's tables, `--json` and `monitor export`, the JSON API,
`EventStore`) gets these dataclasses instead of dicts, and turns them into JSON with
`to_record()` only: one conversion, so the same run looks the same everywhere. Times are
Unix seconds on the rows and ISO-8601 UTC strings in records; durations are seconds; costs
are US dollars.

What the numbers mean (docs/metrics.md, "Runs, tool calls and LLM calls"):

- A **run** is an execution of kind `agent`: a function decorated with `@observe` or a
  `track()` block, top-level or nested in another run. `agentwatch_executions_total` counts
  runs; so do `SummaryStats.runs`, `monitor list` and `monitor export` by default.
- A **tool call** is not a run. A function observed with `kind="tool"` is stored as an
  execution of kind `tool` (so it can be traced) and counted as a tool call of its caller.
- A run's own totals (`ExecutionRow`) cover the LLM and tool calls made in it, including
  inside the tools it called; a nested run has its own row and its calls are not repeated
  in its parent's.
- A call's cost is **unpriced** (None) when neither the provider nor a price table knew it.
  Unpriced calls are counted (`unpriced_calls`), never added as $0; `cost_usd` is the sum of
  the known prices, or None when calls were made and none of them had a price.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ExecutionKind = Literal["agent", "tool"]

#: Execution statuses a filter accepts (a stored run is never left `running`).
STATUSES: tuple[str, ...] = ("completed", "failed")
#: Execution kinds a filter accepts; `None` selects every kind.
KINDS: tuple[str, ...] = ("agent", "tool")

#: What an attribution dimension's name looks like (a Prometheus label name).
ATTRIBUTE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Keys of `ExecutionRow.to_record()`, in order (also the columns of `export --format csv`).
EXECUTION_RECORD_FIELDS: tuple[str, ...] = (
    "id",
    "agent",
    "parent_id",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "duration_seconds",
    "error_type",
    "error_message",
    "cost_usd",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "llm_calls",
    "tool_calls",
    "attributes",
    "attribution",
    "arguments",
)


def iso_utc(epoch: float | None) -> str | None:
    """ISO-8601 in UTC with an explicit offset and milliseconds; None for None or a bad time.

    A stored time that is not a usable timestamp (NaN, out of range) gives None instead of
    an exception, so one bad row never breaks a listing or an export.
    """
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def finite(value: float | None) -> float | None:
    """`value` if it is a finite number, else None: JSON has no NaN or infinity."""
    if value is None or not math.isfinite(value):
        return None
    return value


def known_cost(cost: float, llm_calls: int, unpriced_calls: int) -> float | None:
    """The sum of known prices, or None when every call made was unpriced.

    `cost` is what SQL summed (NULLs skipped, so 0 when nothing was priced); a caller must
    show `unpriced_calls` next to it, since the known sum leaves those calls out.
    """
    if unpriced_calls > 0 and unpriced_calls >= llm_calls and cost == 0:
        return None
    return cost


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """Which executions a listing, count or export covers; one value for every reader.

    Attributes:
        agent: only executions of this agent (name as given to `@observe` / `track()`).
        status: `completed` or `failed`; None for both.
        since: started at or after this Unix time (inclusive).
        until: started before this Unix time (exclusive).
        kind: `agent` (runs, the default), `tool`, or None for every kind.
        attributes: `(dimension, value)` pairs the execution's attribution must all have
            (`(("team", "search"),)`): its own attribute or one inherited from its parent.

    Raises:
        ValueError: an unknown status or kind, or an attribute name that is not a label name.
    """

    agent: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    kind: str | None = "agent"
    attributes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, _ in self.attributes:
            if not ATTRIBUTE_NAME.match(name):
                raise ValueError(f"attribute names are label names, got {name!r}")
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, not {self.kind!r}")


@dataclass(slots=True)
class ExecutionRow:
    """One stored execution (a run, or an observed tool) with its own call totals.

    `cost_usd` is None when the run made LLM calls and none could be priced; otherwise the
    sum of the known prices, which leaves out its `unpriced_calls`. Treat it as read-only
    (not frozen only because an export builds millions and frozen init costs 2x).
    """

    id: str
    agent: str
    parent_id: str | None
    kind: str
    status: str
    started_at: float
    ended_at: float | None
    duration: float | None
    error_type: str | None
    error_message: str | None
    arguments: Any
    attributes: dict[str, Any]
    cost_usd: float | None
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    llm_calls: int
    tool_calls: int
    attribution: dict[str, str] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def to_record(self) -> dict[str, Any]:
        """The JSON shape of an execution (keys `EXECUTION_RECORD_FIELDS`), for every reader."""
        return {
            "id": self.id,
            "agent": self.agent,
            "parent_id": self.parent_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
            "duration_seconds": finite(self.duration),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "cost_usd": finite(self.cost_usd),
            "unpriced_calls": self.unpriced_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "attributes": dict(self.attributes),
            "attribution": dict(self.attribution),
            "arguments": self.arguments,
        }

    def legacy_dict(self) -> dict[str, Any]:
        """The pre-1.0 dict shape (`agent_name`, epoch times, nested `metrics`).

        Kept for `EventStore.get_executions()` callers and the unversioned `/api/` routes;
        new code uses the attributes or `to_record()`.
        """
        return {
            "id": self.id,
            "agent_name": self.agent,
            "parent_id": self.parent_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "error": self.error_message,
            "arguments": self.arguments,
            "attributes": dict(self.attributes),
            "attribution": dict(self.attribution),
            "metrics": {
                "total_cost": self.cost_usd or 0.0,
                "unpriced_calls": self.unpriced_calls,
                "total_tokens": self.total_tokens,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "llm_calls": self.llm_calls,
                "tool_calls": self.tool_calls,
            },
        }


@dataclass(slots=True)
class EventRow:
    """One step of a run's timeline: an LLM call, a tool call, a memory or custom event.

    `agent` is the agent the step is billed to (the calling agent for a call made inside a
    tool, `none` outside any run). `offset` is seconds from the start of its execution
    (None when read without it). `cost_usd` None on an LLM call means unpriced. Read-only
    by convention, like `ExecutionRow`.
    """

    id: int
    execution_id: str | None
    agent: str
    seq: int
    kind: str
    name: str
    started_at: float
    offset: float | None
    duration: float | None
    status: str
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    time_to_first_token: float | None
    error_type: str | None
    error_message: str | None
    attributes: dict[str, Any]
    attribution: dict[str, str] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def unpriced(self) -> bool:
        """An LLM call whose cost is unknown."""
        return self.kind == "llm_call" and self.cost_usd is None

    def to_record(self) -> dict[str, Any]:
        """The JSON shape of an event."""
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "agent": self.agent,
            "seq": self.seq,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "started_at": iso_utc(self.started_at),
            "offset_seconds": finite(self.offset),
            "duration_seconds": finite(self.duration),
            "model": self.model,
            "provider": self.provider,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": finite(self.cost_usd),
            "time_to_first_token_seconds": finite(self.time_to_first_token),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attributes": dict(self.attributes),
            "attribution": dict(self.attribution),
        }

    def legacy_dict(self) -> dict[str, Any]:
        """The pre-1.0 dict shape of an event (epoch times, `offset`, `total_tokens`)."""
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "seq": self.seq,
            "kind": self.kind,
            "name": self.name,
            "started_at": self.started_at,
            "offset": self.offset,
            "duration": self.duration,
            "status": self.status,
            "model": self.model,
            "provider": self.provider,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "time_to_first_token": self.time_to_first_token,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    """One execution with its timeline and the ids of the executions nested in it."""

    execution: ExecutionRow
    events: tuple[EventRow, ...] = ()
    child_ids: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """The execution record plus `events` (event records) and `child_ids`."""
        return {
            **self.execution.to_record(),
            "events": [event.to_record() for event in self.events],
            "child_ids": list(self.child_ids),
        }

    def legacy_dict(self) -> dict[str, Any]:
        """The pre-1.0 dict shape, with `events` and `children` (ids)."""
        return {
            **self.execution.legacy_dict(),
            "events": [event.legacy_dict() for event in self.events],
            "children": list(self.child_ids),
        }


@dataclass(frozen=True, slots=True)
class SummaryStats:
    """Run counts and durations, and the totals of every LLM and tool call, for one scope.

    Run counts and durations cover runs (`kind = 'agent'`, nested ones included) by their
    agent and start time, as `agentwatch_executions_total` counts them. Call counts, tokens
    and cost cover every call by its own agent label and start time, including calls made
    inside tools and outside any run (agent `none`), as the `agentwatch_llm_*` and
    `agentwatch_tool_calls_total` counters and `monitor cost` do.
    """

    runs: int = 0
    top_level_runs: int = 0
    completed_runs: int = 0
    failed_runs: int = 0
    avg_duration: float | None = None
    p50_duration: float | None = None
    p95_duration: float | None = None
    p99_duration: float | None = None
    llm_calls: int = 0
    unpriced_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def nested_runs(self) -> int:
        """Runs started inside another execution."""
        return self.runs - self.top_level_runs

    @property
    def success_rate(self) -> float:
        """Completed runs / runs (0..1); 0 when there are none."""
        return self.completed_runs / self.runs if self.runs else 0.0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def to_record(self) -> dict[str, Any]:
        """The JSON shape of summary statistics (durations in seconds, success rate 0..1)."""
        return {
            "runs": self.runs,
            "top_level_runs": self.top_level_runs,
            "nested_runs": self.nested_runs,
            "completed_runs": self.completed_runs,
            "failed_runs": self.failed_runs,
            "success_rate": self.success_rate,
            "avg_duration_seconds": finite(self.avg_duration),
            "p50_duration_seconds": finite(self.p50_duration),
            "p95_duration_seconds": finite(self.p95_duration),
            "p99_duration_seconds": finite(self.p99_duration),
            "llm_calls": self.llm_calls,
            "unpriced_calls": self.unpriced_calls,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": finite(self.cost_usd),
        }

    def legacy_dict(self) -> dict[str, Any]:
        """The pre-1.0 dict shape (`total_executions`, `total_cost`, ...)."""
        return {
            "total_executions": self.runs,
            "completed": self.completed_runs,
            "failed": self.failed_runs,
            "success_rate": self.success_rate,
            "avg_duration": self.avg_duration,
            "p50_duration": self.p50_duration,
            "p95_duration": self.p95_duration,
            "p99_duration": self.p99_duration,
            "total_cost": self.cost_usd or 0.0,
            "unpriced_calls": self.unpriced_calls,
            "total_tokens": self.total_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
        }


@dataclass(frozen=True, slots=True)
class CostRow:
    """LLM calls, tokens and spend of one group (agent, model, provider and/or date).

    `group` maps each grouping key to its value (None: calls without one). `cost_usd` is
    None when every call of the group was unpriced.
    """

    group: dict[str, str | None] = field(default_factory=dict)
    llm_calls: int = 0
    unpriced_calls: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0

    def to_record(self) -> dict[str, Any]:
        """The group keys, then `calls`, `unpriced_calls`, `tokens`, `cost_usd`."""
        return {
            **self.group,
            "calls": self.llm_calls,
            "unpriced_calls": self.unpriced_calls,
            "tokens": self.tokens,
            "cost_usd": finite(self.cost_usd),
        }

    def legacy_dict(self) -> dict[str, Any]:
        """The pre-1.0 dict shape (group keys, `calls`, `tokens`, `cost`)."""
        return {
            **self.group,
            "calls": self.llm_calls,
            "unpriced_calls": self.unpriced_calls,
            "tokens": self.tokens,
            "cost": self.cost_usd or 0.0,
        }


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent's runs in a window (as `SummaryStats` counts them) and its call totals."""

    agent: str
    runs: int = 0
    completed_runs: int = 0
    failed_runs: int = 0
    last_started_at: float | None = None
    llm_calls: int = 0
    unpriced_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    def to_record(self) -> dict[str, Any]:
        """The JSON shape of an agent in `/api/v1/agents`."""
        return {
            "agent": self.agent,
            "runs": self.runs,
            "completed_runs": self.completed_runs,
            "failed_runs": self.failed_runs,
            "last_started_at": iso_utc(self.last_started_at),
            "llm_calls": self.llm_calls,
            "unpriced_calls": self.unpriced_calls,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": finite(self.cost_usd),
        }


#: Orders `StoreQueries.search_runs` accepts: newest first, slowest first, most expensive first.
RUN_SORTS: tuple[str, ...] = ("started", "duration", "cost")


@dataclass(frozen=True, slots=True)
class RunSearch:
    """The console's runs list filter: `ExecutionFilter` plus model, error and thresholds.

    Attributes:
        model: runs that made at least one LLM call to this model themselves.
        error_type: runs that failed with this error class.
        text: case-insensitive text contained in the error message or error class.
        min_cost: runs whose own spend is at least this (USD; unpriced runs never match).
        min_duration: runs that lasted at least this many seconds.
        sort: one of `RUN_SORTS`.
    """

    agent: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    model: str | None = None
    error_type: str | None = None
    text: str | None = None
    min_cost: float | None = None
    min_duration: float | None = None
    sort: str = "started"
    kind: str | None = "agent"

    def __post_init__(self) -> None:
        ExecutionFilter(status=self.status, kind=self.kind)  # the same checks
        if self.sort not in RUN_SORTS:
            raise ValueError(f"sort must be one of {', '.join(RUN_SORTS)}, not {self.sort!r}")


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One time bucket of a trend: runs (or LLM calls), failures, spend and durations."""

    start: float
    count: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    avg_duration: float | None = None
    max_duration: float | None = None


@dataclass(frozen=True, slots=True)
class ErrorCount:
    """How often one error class occurred in a window."""

    error_type: str | None
    count: int
