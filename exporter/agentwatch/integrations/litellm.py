"""LiteLLM integration: every `litellm.completion`/`acompletion` becomes an `llm_call` event.

`instrument_litellm()` registers one `CustomLogger` in `litellm.callbacks`. LiteLLM calls its
sync hooks for `completion()` (on a `litellm-logging` thread) and its async hooks for
`acompletion()` (as a task that may run after the caller resumed); both see a copy of the
caller's context, so the event lands on the execution that made the call, or travels as a
late event when that execution already ended. Calls outside any execution are counted with
agent `none`.

Everything is read from `kwargs["standard_logging_object"]`, litellm's normalised payload:
model, provider, tokens, `response_cost`, start/end times, `completionStartTime` (time to
first token for streams), status and error class. Cached and reasoning tokens come from the
usage details. A call id already recorded is ignored, so a call is never counted twice even
if litellm fires both a sync and an async hook for it. The hooks never raise into litellm.
The payload's values are taken as litellm gives them: `capture.emit_llm_event` validates
(`validation.py`) and prices them, exactly as for a manual `record_llm_call`. A call's
attribution values (team, customer, ...) are its run's, overridden by the declared dimensions
among its `metadata={...}` keys and by `user=` (`attribution.py`).

`instrument_litellm()` also installs the budget guard (`litellm_budget.py`): with a budget
that has `enforce: true`, a call in its scope is refused with `agentwatch.BudgetExceeded`
before any request leaves the process, once the budget is spent.

Importing this module imports litellm (after making it read its bundled price map instead
of fetching one); `import agentwatch` alone does not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

from agentwatch.cost import ensure_offline_cost_map

ensure_offline_cost_map()

import litellm  # noqa: E402 - must follow ensure_offline_cost_map()
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from agentwatch import context  # noqa: E402
from agentwatch import runtime as _runtime_module  # noqa: E402
from agentwatch.capture import MAX_ERROR_MESSAGE, add_settle_hook, emit_llm_event  # noqa: E402
from agentwatch.genai_semconv import litellm_attributes  # noqa: E402
from agentwatch.integrations.litellm_budget import (  # noqa: E402
    install_budget_guard,
    uninstall_budget_guard,
)
from agentwatch.model import Event  # noqa: E402

__all__ = ["AgentwatchLogger", "instrument_litellm", "uninstrument_litellm"]

#: How many recent call ids are remembered to drop a second hook for the same call.
_DEDUPE_WINDOW = 16_384
#: Longest wait, in seconds, at the end of an outermost async run for its calls' hooks.
SETTLE_TIMEOUT = 2.0
#: Event-loop iterations `settle` yields before asking whether litellm has work pending,
#: then yields without sleeping for `_FAST_SPINS` iterations in all, then polls.
_SPINS_BEFORE_CHECK = 4
_FAST_SPINS = 64
_POLL_INTERVAL = 0.002
#: Coroutines litellm runs as tasks to deliver a call's success hooks.
_LOGGING_COROUTINES = frozenset({"_client_async_logging_helper", "Logging.async_success_handler"})
_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


class AgentwatchLogger(CustomLogger):
    """The litellm callback that records each call. Use `instrument_litellm()` to install it."""

    def __init__(self) -> None:
        super().__init__()
        self._recent: dict[tuple[str, str], None] = {}
        self._recent_lock = threading.Lock()
        self._frames: dict[str, context.Frame] = {}
        #: Call ids whose hook has not run yet, per root execution id (see `settle`).
        self._pending: dict[str, set[str]] = {}

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Remember the caller's execution before the request is sent.

        LiteLLM runs this in the caller's context. Its success hook for a *sync stream* runs
        on a thread that does not see that context, so the hooks look the execution up here
        by call id first. The call is also noted as pending for its run tree until a hook
        records it, so the outermost async run can wait for it (`settle`).
        """
        try:
            frame = context.current_frame()
            call_id = kwargs.get("litellm_call_id")
            if frame is None or call_id is None:
                return
            frames = self._frames
            frames[call_id] = frame
            with self._recent_lock:
                pending = self._pending.get(frame.root_id)
                if pending is None:
                    pending = self._pending[frame.root_id] = set()
                pending.add(call_id)
                if len(frames) > _DEDUPE_WINDOW:  # calls whose hooks never fired
                    while len(frames) > _DEDUPE_WINDOW:
                        frames.pop(next(iter(frames)), None)
                if len(self._pending) > _DEDUPE_WINDOW:  # roots that were never settled
                    del self._pending[next(iter(self._pending))]
        except Exception as exc:
            rt = _runtime_module._runtime
            if rt is not None:
                rt.internal_error("litellm", exc)

    async def settle(self, root_id: str) -> None:
        """Wait (bounded) until the hooks of every call made in run tree `root_id` have run.

        Awaited by capture when an outermost async run ends. LiteLLM runs its async success
        hook as a task after `acompletion` returned, through a queue and a worker task; if
        the run was the last thing `main()` awaited, `asyncio.run()` cancels those tasks and
        the call is lost (to every litellm logger). Waiting here costs a few event-loop
        iterations when calls are pending and nothing otherwise; it stops early when litellm
        has no logging work left that could still deliver them (an abandoned stream, a call
        with logging turned off), and after `SETTLE_TIMEOUT` seconds at most.
        """
        pending = self._pending.get(root_id)
        try:
            if not pending:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_TIMEOUT
            spins = 0
            while pending and loop.time() < deadline:
                if spins >= _SPINS_BEFORE_CHECK and not _logging_work_pending(loop):
                    return
                spins += 1
                await asyncio.sleep(0 if spins < _FAST_SPINS else _POLL_INTERVAL)
        finally:
            with self._recent_lock:
                self._pending.pop(root_id, None)

    # LiteLLM calls the async hooks with keyword arguments: the names must stay exactly
    # kwargs, response_obj, start_time, end_time.
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs, response_obj)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs, response_obj)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs, response_obj)

    def record(self, kwargs: Mapping[str, Any], response_obj: Any) -> None:
        """Turn one hook invocation into an `llm_call` event. Never raises."""
        rt = _runtime_module._runtime
        try:
            if rt is None:
                rt = _runtime_module.get_runtime()
            if not rt.enabled:
                return
            slo = kwargs.get("standard_logging_object")
            if not isinstance(slo, Mapping):
                rt.internal_error("litellm_payload")
                return
            status = "failure" if slo.get("status") == "failure" else "success"
            call_id = kwargs.get("litellm_call_id") or slo.get("id")
            frame = None
            if call_id is not None:
                frame = self._frames.pop(call_id, None)
                if frame is not None:
                    self._done(frame.root_id, call_id)
                if self._already_seen(str(call_id), status):
                    return
            if frame is None:
                frame = context.current_frame()
            event = _event_from_payload(rt, slo, response_obj, status)
            if rt.tracer is not None:
                event.trace_attributes = litellm_attributes(slo, response_obj)
            emit_llm_event(rt, event, frame, _call_attributes(rt, kwargs))
        except Exception as exc:
            if rt is not None:
                rt.internal_error("litellm", exc)

    def _done(self, root_id: str, call_id: str) -> None:
        with self._recent_lock:
            pending = self._pending.get(root_id)
            if pending is not None:
                pending.discard(call_id)
                if not pending:  # a synchronous run is never settled: forget it here
                    del self._pending[root_id]

    def _already_seen(self, call_id: str, status: str) -> bool:
        key = (call_id, status)
        recent = self._recent
        with self._recent_lock:
            if key in recent:
                return True
            recent[key] = None
            if len(recent) > _DEDUPE_WINDOW:
                del recent[next(iter(recent))]
        return False


def _event_from_payload(
    rt: _runtime_module.Runtime, slo: Mapping[str, Any], response_obj: Any, status: str
) -> Event:
    model = slo.get("model") or None
    provider = slo.get("custom_llm_provider") or None
    input_tokens: Any = slo.get("prompt_tokens")
    output_tokens: Any = slo.get("completion_tokens")
    cached, reasoning = _token_details(slo, response_obj)
    start = slo.get("startTime")
    end = slo.get("endTime")
    duration = None
    if isinstance(start, int | float) and isinstance(end, int | float):
        duration = max(0.0, end - start)
    else:
        start = None
    ttft = None
    if slo.get("stream") and start is not None:
        first = slo.get("completionStartTime")
        if isinstance(first, int | float) and first >= start:
            ttft = first - start
    reported = slo.get("response_cost")
    if slo.get("response_cost_failure_debug_info"):
        # litellm could not price the call (e.g. ModelNotMappedError) and reports 0.0: that
        # zero is "unknown", not "free"; emit_llm_event falls back to user prices, else
        # counts it unpriced.
        reported = None
    event = Event(  # raw payload values: emit_llm_event validates and prices them
        kind="llm_call",
        name=model or "unknown",
        started_at=float(start) if start is not None else time.time(),
        duration=duration,
        status="failure" if status == "failure" else "success",
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cost_usd=reported,
        time_to_first_token=ttft,
    )
    if status == "failure":
        info = slo.get("error_information")
        info = info if isinstance(info, Mapping) else {}
        event.error_type = info.get("error_class") or "unknown"  # text: validated later
        message = info.get("error_message") or slo.get("error_str")
        if message:
            event.error_message = rt.redactor.redact_text(str(message), MAX_ERROR_MESSAGE)
    if rt.settings.capture_prompts:
        event.attributes = {
            "messages": rt.redactor.redact(slo.get("messages")),
            "response": rt.redactor.redact(slo.get("response")),
        }
    return event


def _call_attributes(
    rt: _runtime_module.Runtime, kwargs: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The call's own attribution values: litellm's `metadata={...}` keys and `user=`."""
    if not rt.attribution:
        return None
    params = kwargs.get("litellm_params")
    metadata = params.get("metadata") if isinstance(params, Mapping) else None
    user = kwargs.get("user")
    if user is None:
        optional = kwargs.get("optional_params")
        user = optional.get("user") if isinstance(optional, Mapping) else None
    return rt.attribution.litellm_attributes(metadata, user)


def _token_details(slo: Mapping[str, Any], response_obj: Any) -> tuple[Any, Any]:
    """Cached prompt tokens and reasoning tokens (as reported), from the usage details."""
    usage: Any = None
    metadata = slo.get("metadata")
    if isinstance(metadata, Mapping):
        usage = metadata.get("usage_object")
    if usage is None:
        usage = getattr(response_obj, "usage", None)
        if usage is None and isinstance(response_obj, Mapping):
            usage = response_obj.get("usage")
    if usage is None:
        return 0, 0
    return (
        _field(_field(usage, "prompt_tokens_details"), "cached_tokens"),
        _field(_field(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


def _field(container: Any, name: str) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


_logger: AgentwatchLogger | None = None
_install_lock = threading.Lock()


def instrument_litellm() -> AgentwatchLogger:
    """Record every litellm call from now on; safe to call any number of times.

    Returns the installed callback (the same instance every time). If the program replaced
    `litellm.callbacks` since, the callback is added again.

    Example:
        >>> import agentwatch, litellm
        >>> agentwatch.instrument_litellm()
        >>> litellm.completion(model="gpt-4o-mini", messages=[...])
    """
    global _logger
    with _install_lock:
        if _logger is None:
            _logger = AgentwatchLogger()
            add_settle_hook(_logger.settle)
        if not any(cb is _logger for cb in litellm.callbacks):
            litellm.callbacks.append(_logger)
        install_budget_guard()
        return _logger


def uninstrument_litellm() -> None:
    """Remove the callback from every litellm callback list (tests, or to stop recording)."""
    with _install_lock:
        uninstall_budget_guard()
        if _logger is None:
            return
        for name in _CALLBACK_LISTS:
            callbacks = getattr(litellm, name, None)
            if isinstance(callbacks, list):
                callbacks[:] = [cb for cb in callbacks if cb is not _logger]


def _logging_work_pending(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether litellm still has success-hook work queued or running on `loop`.

    Reads litellm's logging worker and the loop's tasks; when their shape is not the one
    expected (another litellm version), it answers True so `settle` keeps to its timeout.
    """
    try:
        worker = _logging_worker()
        if worker is not None and getattr(worker, "_bound_loop", None) is loop:
            queue = worker._queue
            if queue is not None and (queue.qsize() or worker._running_tasks):
                return True
        for task in asyncio.all_tasks(loop):
            name = getattr(task.get_coro(), "__qualname__", "")
            if name in _LOGGING_COROUTINES and not task.done():
                return True
        return False
    except Exception:
        return True


def _logging_worker() -> Any:
    """LiteLLM's queue of pending async logging hooks (litellm >= 1.7x), or None."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:  # older litellm: hooks are plain tasks, nothing to drain
        return None
    return GLOBAL_LOGGING_WORKER


async def drain_pending_hooks(timeout: float = 5.0) -> None:
    """Let litellm's queued async logging hooks run (bounded by `timeout`). Never raises."""
    worker = _logging_worker()
    if worker is None:
        return
    try:
        await asyncio.wait_for(worker.flush(), timeout)
    except Exception as exc:  # a slow or broken callback of another logger
        rt = _runtime_module._runtime
        if rt is not None:
            rt.internal_error("litellm", exc)


def drain_pending_hooks_sync(timeout: float = 5.0) -> None:
    """`drain_pending_hooks` from synchronous code, when no event loop runs in this thread.

    Hooks queued by an event loop that has since finished (a script's `asyncio.run(main())`
    returning right after its last `acompletion`) would otherwise wait for litellm's own
    exit handler, which may run after agentwatch has flushed.
    """
    worker = _logging_worker()
    if worker is None or getattr(worker, "_queue", None) is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # inside a running loop: cannot block it; `await aflush()` is the async path
        return
    try:
        asyncio.run(drain_pending_hooks(timeout))
    except Exception as exc:
        rt = _runtime_module._runtime
        if rt is not None:
            rt.internal_error("litellm", exc)
