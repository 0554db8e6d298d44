"""The budget guard of the litellm integration: refuse a call before any request is sent.

LiteLLM's SDK has no pre-call hook that may veto a call (`async_pre_call_hook` runs only in
its proxy; exceptions in `log_pre_api_call` are swallowed). Every public litellm call
(`completion`, `acompletion`, `embedding`, `responses`, `image_generation`, ...) goes through
its `@client` decorator, which calls `litellm.utils.function_setup(...)` first, in the
caller's context, with the call's arguments, before any logging object or request exists.
The guard wraps that function: it checks the enforcing budgets in scope of the call (its
model and provider as litellm resolves them, its run's agent and attribution, its `metadata`
and `user=`) and raises `agentwatch.BudgetExceeded`, which litellm re-raises unchanged. An
acompletion is checked once (its inner completion skips the setup).

The guard is installed by `instrument_litellm()` and costs two attribute reads per call when
no budget enforces. It never breaks a call on its own failure: errors are contained and
counted in `agentwatch_internal_errors_total{component="budget_enforcement"}`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from agentwatch.cost import ensure_offline_cost_map

ensure_offline_cost_map()

import litellm  # noqa: E402 - must follow ensure_offline_cost_map()
import litellm.utils  # noqa: E402

from agentwatch import context  # noqa: E402
from agentwatch import runtime as _runtime_module  # noqa: E402
from agentwatch.errors import BudgetExceeded  # noqa: E402

#: Call types that cost nothing, never refused: files, batches, listings, token counting.
_FREE_CALL_WORDS = (
    "file", "batch", "fine_tuning", "list", "retrieve", "delete", "cancel", "count_tokens",
    "health", "moderation", "vector_store", "container",
)  # fmt: skip
#: Models resolved to (model, provider) by litellm, remembered (bounded).
_MAX_RESOLVED = 4096

_lock = threading.Lock()
_original: Callable[..., Any] | None = None
_resolved: dict[str, tuple[str | None, str | None]] = {}


def _resolve(model: str) -> tuple[str | None, str | None]:
    """The model name and provider litellm records for `model` (`gemini/x` -> `x`, `gemini`)."""
    found = _resolved.get(model)
    if found is not None:
        return found
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        found = (str(name), str(provider))
    except Exception:  # an unknown model: litellm itself will say so
        found = (model, None)
    if len(_resolved) >= _MAX_RESOLVED:
        _resolved.clear()
    _resolved[model] = found
    return found


def _free(call_type: object) -> bool:
    name = str(call_type)
    return any(word in name for word in _FREE_CALL_WORDS)


def precheck(call_type: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse the litellm call about to be set up if an enforcing budget in scope is spent.

    Raises:
        BudgetExceeded: counted in `agentwatch_llm_refused_requests_total`.
    """
    rt = _runtime_module._runtime
    if rt is None:  # the first call of the program: enforce from it on
        rt = _runtime_module.get_runtime()
    if rt.enforcer is None or not rt.enabled:
        return
    from agentwatch.enforcement import count_refusal

    agent = context.current_agent()
    model: str | None = None
    provider: str | None = None
    try:
        if _free(call_type):
            return
        raw = args[0] if args else kwargs.get("model")
        model = raw if isinstance(raw, str) else None
        if model is not None:
            model, provider = _resolve(model)
        frame = context.current_frame()
        values = {} if frame is None else frame.execution.attribution
        if rt.attribution:
            metadata = kwargs.get("metadata")
            if metadata is None:
                metadata = kwargs.get("litellm_metadata")
            own = rt.attribution.litellm_attributes(metadata, kwargs.get("user"))
            if own:
                values = rt.attribution.resolve(values, own, rt.metrics.count_invalid_value)
        rt.enforcer.check(agent, model, provider, values)
    except BudgetExceeded as refused:
        count_refusal(rt, refused, agent, model, provider)
        raise
    except Exception as exc:  # the guard must never break a call on its own failure
        rt.internal_error("budget_enforcement", exc)


def install_budget_guard() -> None:
    """Wrap `litellm.utils.function_setup` with the budget check (idempotent)."""
    global _original
    with _lock:
        current = getattr(litellm.utils, "function_setup", None)
        if current is None or getattr(current, "__agentwatch_guard__", False):
            return
        original = current

        @functools.wraps(original)
        def guarded(original_function: Any, rules_obj: Any, start_time: Any, *args: Any,
                    **kwargs: Any) -> Any:  # fmt: skip
            precheck(original_function, args, kwargs)
            return original(original_function, rules_obj, start_time, *args, **kwargs)

        guarded.__agentwatch_guard__ = True  # type: ignore[attr-defined]
        _original = original
        litellm.utils.function_setup = guarded


def uninstall_budget_guard() -> None:
    """Restore litellm's own `function_setup` (tests, `uninstrument_litellm()`)."""
    global _original
    with _lock:
        if _original is not None:
            litellm.utils.function_setup = _original
            _original = None


def guard_installed() -> bool:
    """Whether litellm calls are checked against enforcing budgets."""
    return bool(getattr(getattr(litellm.utils, "function_setup", None), "__agentwatch_guard__",
                        False))  # fmt: skip
