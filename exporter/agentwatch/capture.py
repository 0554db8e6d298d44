"""Capture: `@observe`, `track()` and the manual `record_*` API.

An execution is an `Execution` record held in a context variable (`context.py`) for as long
as the observed function, generator or `with` block runs. LLM calls, tool calls and custom
events made meanwhile are appended to it under its lock; when it ends it is counted in the
in-process metrics and handed to the background writer as `ExecutionFinished`. An event that
arrives after its execution ended (litellm's async hooks fire after the caller resumed) goes
to the writer as a `LateEvent` carrying the execution id, so it still lands on that run.
Whether the run has ended is decided under the execution's lock: no event is lost or counted
twice.

Every value is checked where it enters, here, by `validation.py` (the litellm integration
enters through `emit_llm_event` too): invalid text and negative, NaN, infinite or absurd
numbers are repaired per field and counted in `agentwatch_invalid_values_total{field}` before
the record is counted or handed to the writer, so the in-process metrics, the stored rows and
the store's rollups see the same values and the rest of the record is kept.

Two promises to the host program: its own exceptions propagate unchanged, and exceptions
inside agentwatch never reach it (they are contained, counted in
`agentwatch_internal_errors_total{component}` and logged once).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from agentwatch import context, validation
from agentwatch import runtime as _runtime_module
from agentwatch.context import Frame
from agentwatch.contract import NO_AGENT
from agentwatch.cost import llm_cost
from agentwatch.ids import new_execution_id as new_execution_id  # re-exported
from agentwatch.model import Event, EventKind, Execution, ExecutionFinished, LateEvent
from agentwatch.runtime import Runtime, get_runtime

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["agent", "tool"]

#: Attribution of a call or run outside any run that sets one (shared, never mutated).
_EMPTY_ATTRIBUTION: dict[str, str] = {}
#: Longest error message kept on an execution or event.
MAX_ERROR_MESSAGE = 1000
_SKIPPED_PARAMETERS = frozenset({"self", "cls"})


def _runtime() -> Runtime:
    # A module attribute read, not an import: this runs several times per captured run.
    current = _runtime_module._runtime
    return current if current is not None else get_runtime()


def error_type_of(exc: BaseException) -> str:
    """The short class name stored and used as label (`RateLimitError`, `ValueError`)."""
    return type(exc).__name__


# -- the life of one execution -------------------------------------------------------------


class _Run:
    """An execution being captured, with what is needed to finish it."""

    __slots__ = ("frame", "parent", "rt", "t0")

    def __init__(self, rt: Runtime, frame: Frame, parent: Frame | None) -> None:
        self.rt = rt
        self.frame = frame
        self.parent = parent
        self.t0 = time.perf_counter()


def _start(
    name: str,
    kind: Kind,
    enabled: bool,
    arguments: Callable[[Runtime], dict[str, Any] | None] | None,
    attributes: dict[str, Any] | None,
) -> _Run | None:
    """Open an execution, or return None when recording is off for it. Never raises."""
    if not enabled:
        return None
    try:
        rt = _runtime()
        if not rt.enabled or name in rt.settings.disabled_agents:
            return None
        name = validation.text(name, "agent", rt.metrics.count_invalid_value)
        name = rt.redactor.redact_name(name)
        parent = context.current_frame()
        execution = Execution(
            id=new_execution_id(),
            agent=name,
            started_at=time.time(),
            parent_id=None if parent is None else parent.execution.id,
            kind=kind,
        )
        if arguments is not None:
            execution.arguments = arguments(rt)
        if attributes:
            execution.attributes = rt.redactor.redact(attributes)
        inherited = _EMPTY_ATTRIBUTION if parent is None else parent.execution.attribution
        execution.attribution = (
            rt.attribution.resolve(inherited, attributes, rt.metrics.count_invalid_value)
            if rt.attribution
            else inherited
        )
        label = name if kind == "agent" else NO_AGENT if parent is None else parent.agent
        frame = Frame(execution, label, None if parent is None else parent.root_id)
        if rt.tracer is not None:
            rt.tracer.start_run(frame, parent)
        return _Run(rt, frame, parent)
    except Exception as exc:
        _contain("capture", exc)
        return None


def _finish(run: _Run, exc: BaseException | None, end: float | None = None) -> None:
    """Close the execution, count it, hand it to the writer. Never raises.

    `end` is the `time.perf_counter()` reading at which the run ended (default: now). The
    runtime current *now* receives it: a run still open when `configure()` swapped the
    runtime goes to the new writer instead of the closed one. If recording was turned off
    meanwhile, the run is closed (late events then go nowhere) but not recorded.
    """
    rt = run.rt
    try:
        rt = _runtime()
        execution = run.frame.execution
        ended = execution.started_at + ((time.perf_counter() if end is None else end) - run.t0)
        failed = exc is not None and not isinstance(exc, GeneratorExit)
        error_type = error_message = None
        if failed:
            assert exc is not None
            error_type = error_type_of(exc)
            error_message = _error_message(rt, exc)
        with execution.lock:
            execution.ended_at = ended
            execution.status = "failed" if failed else "completed"
            execution.error_type = error_type
            execution.error_message = error_message
        if run.frame.span is not None:
            run.frame.span.end(execution)
        if not rt.enabled:
            return
        validation.clean_execution(execution, rt.metrics.count_invalid_value)
        if execution.kind == "agent":
            rt.metrics.observe_execution(execution)
        else:
            parent = run.parent
            event = Event(  # built from the execution's fields, already clean
                kind="tool_call",
                name=execution.agent,
                started_at=execution.started_at,
                duration=execution.duration,
                status="failure" if failed else "success",
                execution_id=None if parent is None else parent.execution.id,
                agent=run.frame.agent,
                error_type=execution.error_type,
                error_message=execution.error_message,
                attribution=execution.attribution,
            )
            event.trace_id = execution.trace_id
            rt.metrics.observe_tool_call(event, run.frame.agent)
            _deliver(rt, event, parent)
        rt.submit(ExecutionFinished(execution, run.frame.root_id))
    except Exception as err:
        rt.internal_error("capture", err)


#: Awaited with the root execution id when an outermost async run ends, before it is closed.
_settle_hooks: list[Callable[[str], Awaitable[None]]] = []


def add_settle_hook(hook: Callable[[str], Awaitable[None]]) -> None:
    """Have `hook(root_id)` awaited when an outermost async run (or `async with track`) ends.

    An integration whose events arrive after the call returned (litellm runs its success
    hooks as tasks) uses it to let them land before the run closes: once the program's
    `main()` returns, `asyncio.run()` cancels every task still pending, and those events
    would be lost. A hook must return at once when nothing of that run is pending.
    """
    if hook not in _settle_hooks:
        _settle_hooks.append(hook)


async def _settle(run: _Run) -> None:
    """Await the settle hooks for an outermost run. Never raises (except cancellation)."""
    if run.parent is not None or not _settle_hooks:
        return
    root_id = run.frame.root_id
    for hook in tuple(_settle_hooks):
        try:
            await hook(root_id)
        except Exception as exc:
            _contain("capture", exc)


def _error_message(rt: Runtime, exc: BaseException) -> str:
    """The exception's text as stored: redacted like everything kept (it often carries a
    DSN, a token or a user's data), whether or not argument capture is on, and bounded."""
    try:
        text = str(exc)
    except Exception:
        text = f"<unprintable {type(exc).__name__}>"
    return rt.redactor.redact_text(text, MAX_ERROR_MESSAGE)


def _deliver(rt: Runtime, event: Event, frame: Frame | None) -> None:
    """Append `event` to the open execution of `frame`, or send it to the writer as late.

    The ended check and the append happen under the execution's lock, the same lock
    `_finish` takes to end it: an event is either in `execution.events` (stored with the
    execution) or a `LateEvent`, never both, never neither.
    """
    if frame is not None:
        execution = frame.execution
        with execution.lock:
            if execution.ended_at is None:
                execution.events.append(event)
                return
    rt.submit(LateEvent(event))


def _started_at(started_at: float | None, duration: float | None) -> float:
    """The given start time, or now minus the (valid) duration when none was given.

    An invalid `started_at` is left for `validation.clean_event` to repair and count.
    """
    if started_at is not None:
        return started_at
    seconds = validation.seconds(duration, "duration", validation.count_nothing)
    return time.time() - (seconds or 0.0)


def _contain(component: str, exc: BaseException) -> None:
    with contextlib.suppress(Exception):
        _runtime().internal_error(component, exc)


# -- @observe ------------------------------------------------------------------------------


@overload
def observe(func: F, /) -> F: ...
@overload
def observe(
    name: str | None = None,
    /,
    *,
    kind: Kind = "agent",
    enabled: bool = True,
    capture_arguments: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...
@overload
def observe(
    *,
    name: str | None = None,
    kind: Kind = "agent",
    enabled: bool = True,
    capture_arguments: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...


def observe(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    kind: Kind = "agent",
    enabled: bool = True,
    capture_arguments: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Record every call of a function as an execution (an agent run or a tool call).

    Works on plain functions, coroutine functions, generators and async generators; for
    generators the execution spans the whole iteration and ends when the generator is
    exhausted, closed or abandoned. The function's result and exceptions are untouched.

    Args:
        name: agent (or tool) name; defaults to the function's `__name__`.
        kind: `"agent"` (default) or `"tool"`: a tool records its own execution and a
            `tool_call` event on the calling execution, and counts in the tool metrics.
        enabled: False turns recording off for this function.
        capture_arguments: keep the (redacted, truncated) call arguments; None follows the
            `capture_arguments` setting.
        attributes: small JSON-serialisable extras stored with every run (redacted), as
            `track(name, **attributes)` does; the declared attribution dimensions among
            them (`team`, `customer`, ...) label the run and the calls made in it.

    Example:
        >>> @observe
        ... async def researcher(question: str) -> str: ...
        >>> @observe(attributes={"team": "search"})
        ... def ranker(query: str) -> list[str]: ...
        >>> @observe("search", kind="tool")
        ... def web_search(query: str) -> list[str]: ...
    """
    if kind not in ("agent", "tool"):
        raise ValueError(f"observe(kind=...) must be 'agent' or 'tool', got {kind!r}")
    if isinstance(func, str):
        name, func = func, None

    extras = dict(attributes) if attributes else None

    def decorate(fn: F) -> F:
        label = name or str(getattr(fn, "__name__", "anonymous"))
        return _wrap(fn, label, kind, enabled, capture_arguments, extras)

    return decorate if func is None else decorate(func)


def _argument_capturer(
    fn: Callable[..., Any], capture: bool | None
) -> Callable[[tuple[Any, ...], dict[str, Any]], Callable[[Runtime], dict[str, Any] | None] | None]:
    """Build the per-call argument binder; the signature is computed once, lazily."""
    signature: list[inspect.Signature | None] = []

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def capture_now(rt: Runtime) -> dict[str, Any] | None:
            wanted = rt.settings.capture_arguments if capture is None else capture
            if not wanted:
                return None
            if not signature:
                try:
                    signature.append(inspect.signature(fn))
                except (TypeError, ValueError):
                    signature.append(None)
            sig = signature[0]
            if sig is None:
                raw: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
            else:
                try:
                    bound = sig.bind_partial(*args, **kwargs)
                except TypeError:  # the call itself is wrong; the function will say so
                    raw = {"args": list(args), "kwargs": kwargs}
                else:
                    raw = {k: v for k, v in bound.arguments.items() if k not in _SKIPPED_PARAMETERS}
            result = rt.redactor.redact(raw)
            return result if isinstance(result, dict) else None

        return capture_now

    return bind


def _wrap(
    fn: F,
    name: str,
    kind: Kind,
    enabled: bool,
    capture: bool | None,
    attributes: dict[str, Any] | None = None,
) -> F:
    binder = _argument_capturer(fn, capture)

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            run = _start(name, kind, enabled, binder(args, kwargs), attributes)
            agen = fn(*args, **kwargs)
            if run is None:
                async for item in _passthrough_async(agen):
                    yield item
                return
            failure: BaseException | None = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = context.push(run.frame)
                    try:
                        if to_throw is not None:
                            exc, to_throw = to_throw, None
                            item = await agen.athrow(exc)
                        else:
                            item = await agen.asend(to_send)
                    except StopAsyncIteration:
                        return
                    finally:
                        context.pop(token)
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        token = context.push(run.frame)
                        try:
                            await agen.aclose()
                        finally:
                            context.pop(token)
                        raise
                    except BaseException as exc:
                        to_throw = exc
            except GeneratorExit:
                raise
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _finish(run, failure)

        return agen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            run = _start(name, kind, enabled, binder(args, kwargs), attributes)
            gen = fn(*args, **kwargs)
            if run is None:
                return (yield from gen)
            failure: BaseException | None = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = context.push(run.frame)
                    try:
                        if to_throw is not None:
                            exc, to_throw = to_throw, None
                            item = gen.throw(exc)
                        else:
                            item = gen.send(to_send)
                    except StopIteration as stop:
                        return stop.value
                    finally:
                        context.pop(token)
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        token = context.push(run.frame)
                        try:
                            gen.close()
                        finally:
                            context.pop(token)
                        raise
                    except BaseException as exc:
                        to_throw = exc
            except GeneratorExit:
                raise
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _finish(run, failure)

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _start(name, kind, enabled, binder(args, kwargs), attributes)
            if run is None:
                return await fn(*args, **kwargs)
            token = context.push(run.frame)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                context.pop(token)
                end = time.perf_counter()
                try:
                    if isinstance(exc, Exception):
                        await _settle(run)
                finally:
                    _finish(run, exc, end)
                raise
            context.pop(token)
            end = time.perf_counter()
            try:
                await _settle(run)
            finally:
                _finish(run, None, end)
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        run = _start(name, kind, enabled, binder(args, kwargs), attributes)
        if run is None:
            return fn(*args, **kwargs)
        token = context.push(run.frame)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            context.pop(token)
            _finish(run, exc)
            raise
        context.pop(token)
        _finish(run, None)
        return result

    return sync_wrapper  # type: ignore[return-value]


async def _passthrough_async(agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    """Delegate to `agen` exactly (send/throw/close), for runs that are not recorded."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        try:
            if to_throw is not None:
                exc, to_throw = to_throw, None
                item = await agen.athrow(exc)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            return
        try:
            to_send = yield item
        except GeneratorExit:
            await agen.aclose()
            raise
        except BaseException as exc:
            to_throw = exc


# -- track() -------------------------------------------------------------------------------


class track:
    """Record a block of code as an execution; usable with `with` and `async with`.

    Yields the `Execution` (its `id` is what exemplars and the store refer to). When recording
    is off the block still runs and receives a detached Execution that is never stored.

    Args:
        name: agent name of the block.
        **attributes: small JSON-serialisable extras stored with the execution (redacted).

    Example:
        >>> with track("nightly-report", team="search") as run:
        ...     summarise()
        >>> async with track("chat-turn"):
        ...     await answer()
    """

    __slots__ = ("_attributes", "_execution", "_name", "_run", "_token")

    def __init__(self, name: str, **attributes: Any) -> None:
        self._name = name
        self._attributes = attributes
        self._run: _Run | None = None
        self._token: Any = None
        self._execution: Execution | None = None

    def __enter__(self) -> Execution:
        run = _start(self._name, "agent", True, None, self._attributes)
        if run is None:
            detached = Execution(id=new_execution_id(), agent=self._name, started_at=time.time())
            self._execution = detached
            return detached
        self._run = run
        self._token = context.push(run.frame)
        return run.frame.execution

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc, None)

    def _exit(self, exc: BaseException | None, end: float | None) -> None:
        run = self._run
        if run is None:
            return
        self._run = None
        try:
            context.pop(self._token)
        except Exception as err:  # exited in another context than entered: keep going
            _contain("capture", err)
        _finish(run, exc, end)

    async def __aenter__(self) -> Execution:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run = self._run
        if run is not None and (exc is None or isinstance(exc, Exception)):
            end = time.perf_counter()
            try:
                await _settle(run)
            finally:
                self._exit(exc, end)
            return
        self.__exit__(exc_type, exc, tb)


# -- manual API ----------------------------------------------------------------------------


def emit_llm_event(
    rt: Runtime,
    event: Event,
    frame: Frame | None,
    call_attributes: Mapping[str, Any] | None = None,
) -> None:
    """Validate, price and count an LLM call event, then attach it to its execution.

    The hot path of every call, manual or from litellm. `event.cost_usd` holds the cost the
    caller or provider reported, or None; an invalid one is counted and, like None, replaced
    by the configured or bundled price of the (validated) tokens when there is one.
    `frame` is the caller's frame (None outside executions: agent label `none`).
    `call_attributes` are the call's own attribution values (litellm's metadata and user,
    `record_llm_call`'s keyword arguments); they override the values of the caller's run.
    """
    report = rt.metrics.count_invalid_value
    validation.clean_event(event, report)
    if event.cost_usd is None:
        priced = llm_cost(
            event.model,
            event.provider,
            event.input_tokens,
            event.output_tokens,
            event.cached_tokens,
            prices=rt.settings.prices,
        )
        event.cost_usd = validation.cost(priced, "cost_usd", report)
    agent = NO_AGENT if frame is None else frame.agent
    event.agent = agent
    if frame is not None:
        event.execution_id = frame.execution.id
        event.attribution = frame.execution.attribution
    if call_attributes and rt.attribution:
        event.attribution = rt.attribution.resolve(event.attribution, call_attributes, report)
    if rt.tracer is not None:
        rt.tracer.llm_call(event, frame)
    rt.metrics.observe_llm_call(event, agent)
    if rt.enforcer is not None:
        rt.enforcer.spent(event)
    _deliver(rt, event, frame)


def record_llm_call(
    model: str,
    *,
    provider: str | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    cost_usd: float | None = None,
    duration: float | None = None,
    time_to_first_token: float | None = None,
    status: Literal["success", "failure"] = "success",
    error_type: str | None = None,
    started_at: float | None = None,
    **attributes: Any,
) -> None:
    """Record one LLM call made without litellm (or that litellm did not see).

    Counted in the metrics at once and attached to the current execution (or stored as a
    call outside any execution, agent `none`). When `cost_usd` is None the cost comes from
    the configured prices or litellm's bundled price map; if neither knows the model the
    call is counted as unpriced, never as free.

    Args:
        model: model name, e.g. `gpt-4o-mini`.
        provider: provider name, e.g. `openai`.
        input_tokens: prompt tokens (including cached ones).
        output_tokens: completion tokens (including reasoning ones).
        cached_tokens: prompt tokens served from the provider's cache.
        reasoning_tokens: completion tokens spent on reasoning.
        cost_usd: the call's cost in USD if known.
        duration: seconds from request to last token.
        time_to_first_token: seconds to the first streamed token.
        status: `success` or `failure`.
        error_type: exception class name of a failure.
        started_at: Unix time of the request (default: now minus `duration`).
        **attributes: small JSON-serialisable extras (redacted).

    A negative, NaN, infinite or absurd number (or text that cannot be stored) is repaired
    field by field, as docs/metrics.md lists, and counted in
    `agentwatch_invalid_values_total{field}`; the rest of the call is recorded.
    """
    try:
        rt = _runtime()
        if not rt.enabled:
            return
        if status not in ("success", "failure"):
            rt.internal_error("invalid_argument")
            return
        event = Event(  # raw values: emit_llm_event validates and prices them
            kind="llm_call",
            name=model,
            started_at=_started_at(started_at, duration),
            duration=duration,
            status=status,
            model=model,
            provider=provider,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            cost_usd=cost_usd,
            time_to_first_token=time_to_first_token,
            error_type=error_type,
            attributes=rt.redactor.redact(attributes) if attributes else {},
        )
        emit_llm_event(rt, event, context.current_frame(), attributes)
    except Exception as exc:
        _contain("capture", exc)


def record_tool_call(
    tool: str,
    *,
    duration: float | None = None,
    status: Literal["success", "failure"] = "success",
    error_type: str | None = None,
    started_at: float | None = None,
    **attributes: Any,
) -> None:
    """Record one tool call on the current execution and in the tool metrics.

    Use `@observe(kind="tool")` when you can wrap the tool function; this is for tools
    invoked by a framework you do not control.
    """
    try:
        rt = _runtime()
        if not rt.enabled:
            return
        if status not in ("success", "failure"):
            rt.internal_error("invalid_argument")
            return
        frame = context.current_frame()
        agent = NO_AGENT if frame is None else frame.agent
        event = Event(
            kind="tool_call",
            name=rt.redactor.redact_name(tool),
            started_at=_started_at(started_at, duration),
            duration=duration,
            status=status,
            execution_id=None if frame is None else frame.execution.id,
            agent=agent,
            error_type=error_type,
            attributes=rt.redactor.redact(attributes) if attributes else {},
            attribution=_EMPTY_ATTRIBUTION if frame is None else frame.execution.attribution,
        )
        validation.clean_event(event, rt.metrics.count_invalid_value)
        if rt.tracer is not None:
            rt.tracer.tool_call(event, frame)
        rt.metrics.observe_tool_call(event, agent)
        _deliver(rt, event, frame)
    except Exception as exc:
        _contain("capture", exc)


def record_event(
    kind_or_name: str,
    name: str | None = None,
    *,
    duration: float | None = None,
    status: Literal["success", "failure"] = "success",
    started_at: float | None = None,
    **attributes: Any,
) -> None:
    """Record a memory operation or a custom step on the current execution's timeline.

    `record_event("memory", "recall", hits=3)` records a memory event named `recall`;
    `record_event("cache-warmup")` records a custom event. These appear in traces and the
    store, not in the Prometheus metrics.
    """
    try:
        rt = _runtime()
        if not rt.enabled:
            return
        kind: EventKind
        if kind_or_name in ("memory", "custom") and name is not None:
            kind, event_name = kind_or_name, name  # type: ignore[assignment]
        else:
            kind, event_name = "custom", kind_or_name if name is None else f"{kind_or_name}:{name}"
        frame = context.current_frame()
        event = Event(
            kind=kind,
            name=event_name,
            started_at=_started_at(started_at, duration),
            duration=duration,
            status=status if status in ("success", "failure") else "failure",
            execution_id=None if frame is None else frame.execution.id,
            agent=NO_AGENT if frame is None else frame.agent,
            attributes=rt.redactor.redact(attributes) if attributes else {},
            attribution=_EMPTY_ATTRIBUTION if frame is None else frame.execution.attribution,
        )
        validation.clean_event(event, rt.metrics.count_invalid_value)
        if rt.tracer is not None:
            rt.tracer.custom_event(event, frame)
        _deliver(rt, event, frame)
    except Exception as exc:
        _contain("capture", exc)
