"""The records agentwatch captures and hands to the background writer.

Capture (`capture.py`, the litellm integration, the manual API) builds these; the writer
(`writer.py`) and the stores (`store/`) consume them. They are plain dataclasses with slots:
building one on the hot path costs about a microsecond, and nothing here does I/O.

Times are Unix epoch seconds (float); durations are seconds; costs are US dollars.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

EventKind = Literal["llm_call", "tool_call", "memory", "custom"]
ExecutionStatus = Literal["running", "completed", "failed"]
CallStatus = Literal["success", "failure"]


@dataclass(slots=True)
class Event:
    """One step of an execution's timeline: an LLM call, a tool call, a memory op, or custom.

    LLM-specific fields (model, provider, tokens, cost, time to first token) stay None for
    other kinds. `attributes` holds small JSON-serialisable extras (already redacted).
    `attribution` holds the call's value of each declared attribution dimension (inherited
    from its run, or from litellm's metadata and user), only the non-empty ones.
    """

    kind: EventKind
    name: str
    started_at: float
    duration: float | None = None
    status: CallStatus = "success"
    execution_id: str | None = None
    agent: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    time_to_first_token: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: W3C trace id (32 hex digits) of the sampled span this call was recorded as, when
    #: OpenTelemetry tracing is on (`tracing.py`); histogram exemplars carry it.
    trace_id: str | None = None
    #: Extra span attributes an integration read from its payload (response model, finish
    #: reasons, ...), set only when tracing is on. Not stored.
    trace_attributes: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    attribution: dict[str, str] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached and reasoning tokens are subsets of those)."""
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Execution:
    """One run of an agent (or of a function observed with `kind="tool"`).

    `attribution` holds the run's value of each declared attribution dimension: its own
    attribute, else its parent run's (only the non-empty ones; shared, never mutated).
    `events` is the ordered timeline. While the run is open, capture appends to it under
    `lock`; once `ended_at` is set the record is handed to the writer and events that arrive
    later (litellm's async hooks can fire after the caller resumed) travel as `LateEvent`.
    """

    id: str
    agent: str
    started_at: float
    parent_id: str | None = None
    kind: Literal["agent", "tool"] = "agent"
    ended_at: float | None = None
    status: ExecutionStatus = "running"
    error_type: str | None = None
    error_message: str | None = None
    arguments: dict[str, Any] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: W3C trace id of the run's sampled span when OpenTelemetry tracing is on, else None.
    trace_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while running."""
        if self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


@dataclass(slots=True)
class ExecutionFinished:
    """Writer item: a finished execution with the events it collected while open.

    `root_id` is the id of the outermost run of its tree (None: the run is its own root);
    `stored` is False when sampling left the tree out of the store's raw rows (its metrics
    are still counted, see `agentwatch.sampling`).
    """

    execution: Execution
    root_id: str | None = None
    stored: bool = True


@dataclass(slots=True)
class LateEvent:
    """Writer item: an event for an execution that already finished (or for none at all).

    `event.execution_id` is None for calls made outside any execution; they are stored and
    counted in the rollups without a parent.
    """

    event: Event


@dataclass(slots=True)
class Refusal:
    """Writer item: an LLM call an enforcing budget refused before it was sent.

    Not stored as a row; counted in `agentwatch_llm_refused_requests_total` in the store's
    rollups, so `agentwatch serve` shows the refusals of every process.
    """

    budget: str
    agent: str
    model: str
    provider: str


WriterItem = ExecutionFinished | LateEvent | Refusal


class Sink(Protocol):
    """Where capture hands finished records; implemented by the background writer."""

    def submit(self, item: WriterItem) -> bool:
        """Enqueue without blocking; return False (and count the drop) if it was refused."""
        ...
