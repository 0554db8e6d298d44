"""Real litellm calls (offline, `mock_response=`) become exactly one llm_call event each."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest
from litellm.types.utils import (
    Choices,
    CompletionTokensDetailsWrapper,
    Message,
    ModelResponse,
    PromptTokensDetailsWrapper,
    Usage,
)
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import Captured, captured, clean_environment
from agentwatch import context as agentwatch_context
from agentwatch import runtime
from agentwatch.integrations.litellm import (
    AgentwatchLogger,
    instrument_litellm,
    uninstrument_litellm,
)
from agentwatch.model import Event
from agentwatch.store import open_store

__all__ = ["captured"]

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def instrumented(captured: Captured) -> Iterator[Captured]:
    instrument_litellm()
    yield captured
    uninstrument_litellm()


def llm_events(captured: Captured) -> list[Event]:
    inside = [e for r in captured.sink.executions() for e in r.events if e.kind == "llm_call"]
    return inside + [e for e in captured.sink.late_events() if e.kind == "llm_call"]


def wait_for_llm_events(captured: Captured, count: int, timeout: float = 10.0) -> list[Event]:
    """LiteLLM runs its hooks on a thread pool or as later tasks: wait for them, then
    allow a moment for a (wrong) duplicate to show up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(llm_events(captured)) < count:
        time.sleep(0.01)
    time.sleep(0.2)
    return llm_events(captured)


def requests(captured: Captured, agent: str, model: str, status: str) -> float | None:
    return captured.value(
        "agentwatch_llm_requests_total",
        {"agent": agent, "model": model, "provider": "openai", "status": status},
    )


def test_instrument_is_idempotent() -> None:
    first = instrument_litellm()
    try:
        assert instrument_litellm() is first
        assert sum(cb is first for cb in litellm.callbacks) == 1
        assert isinstance(first, AgentwatchLogger)
    finally:
        uninstrument_litellm()
    assert all(cb is not first for cb in litellm.callbacks + litellm.success_callback)


def test_sync_completion_records_one_call_with_tokens_and_litellms_cost(
    instrumented: Captured,
) -> None:
    @agentwatch.observe
    def researcher() -> ModelResponse:
        return litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")

    response = researcher()
    run = instrumented.sink.execution("researcher")
    events = wait_for_llm_events(instrumented, 1)
    assert len(events) == 1
    event = events[0]
    assert (event.execution_id, event.agent, event.status) == (run.id, "researcher", "success")
    assert (event.model, event.provider) == ("gpt-4o-mini", "openai")
    assert (event.input_tokens, event.output_tokens) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )
    assert event.cost_usd == pytest.approx(litellm.completion_cost(completion_response=response))
    assert event.time_to_first_token is None
    assert event.duration is not None and event.duration >= 0
    assert requests(instrumented, "researcher", "gpt-4o-mini", "success") == 1.0
    assert instrumented.value(
        "agentwatch_llm_cost_usd_total",
        {"agent": "researcher", "model": "gpt-4o-mini", "provider": "openai"},
    ) == pytest.approx(event.cost_usd)


def test_async_completion_records_one_call(instrumented: Captured) -> None:
    @agentwatch.observe
    async def planner() -> ModelResponse:
        return await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")

    async def main() -> ModelResponse:
        response = await planner()
        await asyncio.sleep(0.3)  # litellm's async success hook is a later task
        return response

    response = asyncio.run(main())
    run = instrumented.sink.execution("planner")
    events = wait_for_llm_events(instrumented, 1)
    assert [(e.execution_id, e.agent) for e in events] == [(run.id, "planner")]
    assert events[0].output_tokens == response.usage.completion_tokens
    assert requests(instrumented, "planner", "gpt-4o-mini", "success") == 1.0


def test_late_async_hook_lands_on_its_execution_after_the_run_ended(
    instrumented: Captured,
) -> None:
    async def main() -> str:
        async with agentwatch.track("short-run") as run:
            await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")
        # the run is over; the hook has not necessarily run yet
        await asyncio.sleep(0.3)
        return run.id

    run_id = asyncio.run(main())
    events = wait_for_llm_events(instrumented, 1)
    assert [e.execution_id for e in events] == [run_id]
    run = instrumented.sink.execution("short-run")
    late = instrumented.sink.late_events()
    # wherever it landed, it is counted once: either in the run's events or as late event
    assert len(run.events) + len(late) == 1


def test_sync_stream_records_time_to_first_token(instrumented: Captured) -> None:
    with agentwatch.track("streamer") as run:
        chunks = list(
            litellm.completion(
                model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there", stream=True
            )
        )
    assert chunks
    events = wait_for_llm_events(instrumented, 1)
    assert len(events) == 1
    event = events[0]
    assert event.execution_id == run.id
    assert event.time_to_first_token is not None and event.time_to_first_token >= 0
    assert event.output_tokens > 0
    assert (
        instrumented.value(
            "agentwatch_llm_time_to_first_token_seconds_count",
            {"model": "gpt-4o-mini", "provider": "openai"},
        )
        == 1.0
    )


def test_async_stream_records_time_to_first_token(instrumented: Captured) -> None:
    async def main() -> None:
        async with agentwatch.track("async-streamer"):
            stream = await litellm.acompletion(
                model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there", stream=True
            )
            async for _ in stream:
                pass
        await asyncio.sleep(0.3)

    asyncio.run(main())
    events = wait_for_llm_events(instrumented, 1)
    assert len(events) == 1
    assert events[0].time_to_first_token is not None
    assert events[0].agent == "async-streamer"


def test_failures_record_the_error_class(instrumented: Captured) -> None:
    @agentwatch.observe
    def fragile() -> None:
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=Exception("boom"))

    with pytest.raises(litellm.exceptions.InternalServerError):
        fragile()

    async def limited() -> None:
        async with agentwatch.track("limited"):
            await litellm.acompletion(
                model="gpt-4o-mini",
                messages=MESSAGES,
                mock_response=litellm.RateLimitError(
                    "slow down", llm_provider="openai", model="gpt-4o-mini"
                ),
            )

    async def main() -> None:
        with pytest.raises(litellm.RateLimitError):
            await limited()
        await asyncio.sleep(0.3)

    asyncio.run(main())
    events = wait_for_llm_events(instrumented, 2)
    by_agent = {e.agent: e for e in events}
    assert len(events) == 2
    assert by_agent["fragile"].status == "failure"
    assert by_agent["fragile"].error_type == "InternalServerError"
    assert by_agent["limited"].error_type == "RateLimitError"
    assert (
        instrumented.value(
            "agentwatch_llm_errors_total",
            {
                "agent": "limited",
                "model": "gpt-4o-mini",
                "provider": "openai",
                "error_type": "RateLimitError",
            },
        )
        == 1.0
    )
    assert requests(instrumented, "fragile", "gpt-4o-mini", "failure") == 1.0
    assert instrumented.sink.execution("fragile").error_type == "InternalServerError"


def test_calls_outside_executions_are_counted_with_agent_none(instrumented: Captured) -> None:
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
    events = wait_for_llm_events(instrumented, 1)
    assert [(e.execution_id, e.agent) for e in events] == [(None, "none")]
    assert requests(instrumented, "none", "gpt-4o-mini", "success") == 1.0


def test_cached_and_reasoning_tokens_come_from_usage_details(instrumented: Captured) -> None:
    mocked = ModelResponse(
        model="gpt-4o-mini",
        choices=[Choices(message=Message(content="hi", role="assistant"), index=0)],
        usage=Usage(
            prompt_tokens=100,
            completion_tokens=50,
            total_tokens=150,
            prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=40),
            completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=30),
        ),
    )
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=mocked)
    [event] = wait_for_llm_events(instrumented, 1)
    assert (event.input_tokens, event.output_tokens) == (100, 50)
    assert (event.cached_tokens, event.reasoning_tokens) == (40, 30)
    assert event.cost_usd == pytest.approx(litellm.completion_cost(completion_response=response))
    base = {"agent": "none", "model": "gpt-4o-mini", "provider": "openai"}
    assert instrumented.value("agentwatch_llm_tokens_total", {**base, "type": "cached"}) == 40.0
    assert instrumented.value("agentwatch_llm_tokens_total", {**base, "type": "reasoning"}) == 30.0


def test_unmapped_model_is_counted_unpriced_not_free(instrumented: Captured) -> None:
    litellm.completion(model="openai/my-private-model", messages=MESSAGES, mock_response="hi")
    [event] = wait_for_llm_events(instrumented, 1)
    assert event.cost_usd is None
    labels = {"model": event.model or "", "provider": "openai"}
    assert instrumented.value("agentwatch_llm_unpriced_requests_total", labels) == 1.0
    assert instrumented.value("agentwatch_llm_cost_usd_total", {"agent": "none", **labels}) is None


def test_user_price_override_prices_an_unmapped_model(instrumented: Captured) -> None:
    instrumented.reconfigure(
        prices={"my-private-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}
    )
    litellm.completion(model="openai/my-private-model", messages=MESSAGES, mock_response="hi")
    [event] = wait_for_llm_events(instrumented, 1)
    assert event.cost_usd == pytest.approx(event.input_tokens * 1e-6 + event.output_tokens * 2e-6)
    assert (
        instrumented.value(
            "agentwatch_llm_unpriced_requests_total",
            {"model": event.model or "", "provider": "openai"},
        )
        is None
    )


def test_a_call_seen_by_both_hooks_is_counted_once(instrumented: Captured) -> None:
    captured_kwargs: list[dict[str, object]] = []

    class Spy(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
        def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            captured_kwargs.append(kwargs)

    spy = Spy()
    litellm.callbacks.append(spy)
    try:
        response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
        wait_for_llm_events(instrumented, 1)
    finally:
        litellm.callbacks.remove(spy)
    assert captured_kwargs
    logger = instrument_litellm()
    kwargs = captured_kwargs[0]
    # what a litellm version firing both hooks for one call would do:
    logger.log_success_event(kwargs, response, None, None)
    asyncio.run(
        logger.async_log_success_event(
            kwargs=kwargs, response_obj=response, start_time=None, end_time=None
        )
    )
    assert len(llm_events(instrumented)) == 1
    assert requests(instrumented, "none", "gpt-4o-mini", "success") == 1.0


def test_the_hook_never_raises_into_litellm(instrumented: Captured) -> None:
    logger = instrument_litellm()
    logger.log_success_event({"standard_logging_object": "garbage"}, None, None, None)
    logger.log_success_event(
        {"standard_logging_object": {"model": object(), "startTime": "x"}}, None, None, None
    )
    logger.log_failure_event({}, None, None, None)
    errors = [
        instrumented.value("agentwatch_internal_errors_total", {"component": c}) or 0.0
        for c in ("litellm", "litellm_payload")
    ]
    assert sum(errors) >= 2.0


def test_disabled_agentwatch_ignores_litellm_calls(instrumented: Captured) -> None:
    instrumented.reconfigure(enabled=False)
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
    time.sleep(0.3)
    assert instrumented.sink.items == []


def test_litellm_calls_of_a_finished_run_reach_its_stored_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end with the real writer and SQLite: the late async hook still counts."""
    clean_environment(monkeypatch, tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    agentwatch.configure(store_url=url, registry=CollectorRegistry())
    instrument_litellm()
    try:

        @agentwatch.observe
        async def writer_agent() -> str:
            for _ in range(3):
                await litellm.acompletion(
                    model="gpt-4o-mini", messages=MESSAGES, mock_response="hi"
                )
            run = agentwatch_context.current_execution()
            assert run is not None
            return run.id

        async def main() -> str:
            run_id = await writer_agent()
            await asyncio.sleep(0.5)  # let litellm's hook tasks run before the loop closes
            return run_id

        run_id = asyncio.run(main())
        assert agentwatch.flush(timeout=10)
        store = open_store(url)
        try:
            stored = store.get_execution(run_id)
        finally:
            store.close()
        assert stored is not None
        assert stored["metrics"]["llm_calls"] == 3
        assert stored["metrics"]["input_tokens"] == 30
        assert stored["metrics"]["total_cost"] == pytest.approx(3 * 1.35e-05)
        assert [e["kind"] for e in stored["events"]] == ["llm_call"] * 3
    finally:
        uninstrument_litellm()
        runtime.close()


def test_aflush_keeps_the_last_calls_of_a_program_that_returns_right_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.run()` cancels litellm's pending hook tasks when main() returns (without the
    `aflush()` below, this run loses calls: seen here with litellm 1.106.2); awaiting `aflush()`
    first lets them run, so no call is lost."""
    clean_environment(monkeypatch, tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    agentwatch.configure(store_url=url, registry=CollectorRegistry())
    instrument_litellm()
    try:

        @agentwatch.observe
        async def burst() -> None:
            await asyncio.gather(
                *(
                    litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
                    for _ in range(8)
                )
            )

        async def main() -> None:
            await burst()
            assert await agentwatch.aflush(timeout=10)

        asyncio.run(main())
        assert agentwatch.flush(timeout=10)
        with agentwatch.EventStore(url) as store:
            assert store.get_summary_stats()["llm_calls"] == 8
    finally:
        uninstrument_litellm()
        runtime.close()


def test_the_outermost_async_run_closes_only_after_its_calls_hooks_ran(
    instrumented: Captured,
) -> None:
    """litellm runs the success hook as a task after `acompletion` returned. The outermost
    async run waits for it, so the call is on the run when it closes (not a late event that
    `asyncio.run()` could cancel), nested runs included."""

    @agentwatch.observe(name="inner")
    async def inner() -> None:
        await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="in")

    @agentwatch.observe(name="outer")
    async def outer() -> None:
        await inner()
        await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="out")

    async def main() -> int:
        await outer()
        # Nothing awaited after the run: what is not delivered now never will be.
        return len(llm_events(instrumented))

    assert asyncio.run(main()) == 2
    assert [e.kind for e in instrumented.sink.execution("outer").events] == ["llm_call"]
    assert {e.agent for e in llm_events(instrumented)} == {"inner", "outer"}


def test_a_call_whose_hook_never_comes_does_not_hold_the_run(
    instrumented: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call litellm will never report (logging off for it, a stream left unread) must not
    keep the run waiting: with nothing left in litellm's logging queue, the wait ends."""
    from agentwatch.integrations import litellm as integration

    monkeypatch.setattr(integration, "SETTLE_TIMEOUT", 3600.0)
    logger = instrument_litellm()

    @agentwatch.observe(name="silent")
    async def silent() -> str:
        logger.log_pre_api_call("gpt-4o-mini", MESSAGES, {"litellm_call_id": "never-reported"})
        return "done"

    async def main() -> str:
        return await asyncio.wait_for(silent(), timeout=60)

    assert asyncio.run(main()) == "done"
    assert instrumented.sink.execution("silent").status == "completed"
    assert logger._pending == {}  # nothing kept for a run that ended


def test_an_abandoned_stream_does_not_hold_the_run(instrumented: Captured) -> None:
    @agentwatch.observe(name="impatient")
    async def impatient() -> str:
        stream = await litellm.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="a b c d", stream=True
        )
        async for chunk in stream:
            return str(chunk.choices[0].delta.content)
        return ""

    async def main() -> str:
        return await asyncio.wait_for(impatient(), timeout=60)

    assert asyncio.run(main())
    assert instrumented.sink.execution("impatient").status == "completed"
