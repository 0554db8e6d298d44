"""The execution that is running *here*: one `contextvars.ContextVar`, nothing else.

A context variable (not a thread-local, not an attribute of a shared collector) is what keeps
concurrent runs apart: every asyncio task and every thread started through
`contextvars.copy_context()` sees its own current execution, so 100 agents running at once
never write into each other's records. LiteLLM copies the caller's context into its logging
threads and tasks, which is how its hooks find the execution that made the call.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from agentwatch.contract import NO_AGENT
from agentwatch.model import Execution

if TYPE_CHECKING:
    from agentwatch.tracing import RunSpan


class Frame:
    """What the context holds: the innermost execution and the agent label its calls carry.

    `agent` is the name of the nearest enclosing *agent* execution: an LLM call made inside a
    function observed with `kind="tool"` is still billed to the agent that called the tool.
    `span` is the run's OpenTelemetry span when tracing is on (`tracing.py`), else None.
    `root_id` is the id of the outermost execution of the tree (its own id for a top-level
    run): integrations use it to find the work a whole run tree still has pending.
    """

    __slots__ = ("agent", "execution", "root_id", "span")

    def __init__(self, execution: Execution, agent: str, root_id: str | None = None) -> None:
        self.execution = execution
        self.agent = agent
        self.span: RunSpan | None = None
        self.root_id = execution.id if root_id is None else root_id


_CURRENT: ContextVar[Frame | None] = ContextVar("agentwatch_current_execution", default=None)


def current_frame() -> Frame | None:
    """The innermost open frame of this context, or None outside any execution."""
    return _CURRENT.get()


def current_execution() -> Execution | None:
    """The innermost execution of this context (thread or task), or None outside any.

    Example:
        >>> with agentwatch.track("job") as run:
        ...     assert current_execution() is run
    """
    frame = _CURRENT.get()
    return None if frame is None else frame.execution


def current_execution_id() -> str | None:
    """Id of the innermost execution of this context, or None."""
    frame = _CURRENT.get()
    return None if frame is None else frame.execution.id


def current_agent() -> str:
    """Agent label for calls made here: the enclosing agent's name, or `none` outside runs."""
    frame = _CURRENT.get()
    return NO_AGENT if frame is None else frame.agent


def push(frame: Frame) -> Token[Frame | None]:
    """Make `frame` current; pass the token to `pop` in the same context.

    A traced run's span becomes OpenTelemetry's current span too, so spans the program starts
    inside the run (HTTP clients, databases) are its children.
    """
    token = _CURRENT.set(frame)
    if frame.span is not None:
        frame.span.attach()
    return token


def pop(token: Token[Frame | None]) -> None:
    """Restore what was current before the matching `push`."""
    frame = _CURRENT.get()
    if frame is not None and frame.span is not None:
        frame.span.detach()
    _CURRENT.reset(token)
