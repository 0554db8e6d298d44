"""`@observe`, `track()` and the manual API record what the user's code did, and only that."""

from __future__ import annotations

import asyncio
import gc
import math
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import Captured, CollectingSink, captured, clean_environment
from agentwatch import runtime
from agentwatch.context import current_execution
from agentwatch.model import Execution

__all__ = ["captured"]  # the fixture, imported for pytest

EXEC_ID = re.compile(r"^exec_[0-9a-f]{32}$")


def test_bare_decorator_records_a_completed_execution(captured: Captured) -> None:
    @agentwatch.observe
    def greet(name: str) -> str:
        return f"hello {name}"

    assert greet("ada") == "hello ada"
    run = captured.sink.execution("greet")
    assert run.status == "completed"
    assert EXEC_ID.match(run.id)
    assert run.parent_id is None
    assert run.ended_at is not None and run.ended_at >= run.started_at
    assert (
        captured.value("agentwatch_executions_total", {"agent": "greet", "status": "completed"})
        == 1.0
    )
    assert captured.value("agentwatch_execution_duration_seconds_count", {"agent": "greet"}) == 1.0


def test_named_forms_use_the_given_name(captured: Captured) -> None:
    @agentwatch.observe("positional-name")
    def a() -> int:
        return 1

    @agentwatch.observe(name="keyword-name")
    def b() -> int:
        return 2

    assert a() + b() == 3
    assert captured.sink.execution("positional-name").status == "completed"
    assert captured.sink.execution("keyword-name").status == "completed"


def test_coroutine_execution_is_current_inside_and_cleared_after(captured: Captured) -> None:
    seen: list[Execution | None] = []

    @agentwatch.observe
    async def planner() -> str:
        await asyncio.sleep(0)
        seen.append(current_execution())
        return "plan"

    assert asyncio.run(planner()) == "plan"
    run = captured.sink.execution("planner")
    assert seen == [run]
    assert current_execution() is None


def test_failure_records_error_type_and_reraises_the_same_exception(captured: Captured) -> None:
    class QuotaError(RuntimeError):
        pass

    original = QuotaError("over quota for key sk-abcdefghijklmnopqrstuv")

    @agentwatch.observe
    def flaky() -> None:
        raise original

    with pytest.raises(QuotaError) as raised:
        flaky()
    assert raised.value is original
    run = captured.sink.execution("flaky")
    assert run.status == "failed"
    assert run.error_type == "QuotaError"
    assert run.error_message is not None
    assert "over quota" in run.error_message
    assert "sk-abcdefghijklmnopqrstuv" not in run.error_message
    assert (
        captured.value(
            "agentwatch_execution_errors_total", {"agent": "flaky", "error_type": "QuotaError"}
        )
        == 1.0
    )
    assert (
        captured.value("agentwatch_executions_total", {"agent": "flaky", "status": "failed"}) == 1.0
    )


def test_async_failure_is_recorded_and_propagates(captured: Captured) -> None:
    @agentwatch.observe
    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    with pytest.raises(KeyError):
        asyncio.run(broken())
    assert captured.sink.execution("broken").error_type == "KeyError"


def test_nested_runs_carry_their_parent_id(captured: Captured) -> None:
    @agentwatch.observe
    def child() -> str | None:
        run = current_execution()
        return None if run is None else run.parent_id

    @agentwatch.observe
    def parent() -> str | None:
        return child()

    parent_id_seen_by_child = parent()
    outer = captured.sink.execution("parent")
    inner = captured.sink.execution("child")
    assert inner.parent_id == outer.id == parent_id_seen_by_child
    assert outer.parent_id is None


def test_generator_execution_spans_the_whole_iteration(captured: Captured) -> None:
    inside: list[bool] = []

    @agentwatch.observe
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            inside.append(current_execution() is not None)
            agentwatch.record_event("custom", f"chunk-{i}")
            yield i

    gen = stream(3)
    assert captured.sink.executions() == []
    assert next(gen) == 0
    assert current_execution() is None  # the run is current only while the body runs
    assert captured.sink.executions() == []
    assert list(gen) == [1, 2]
    run = captured.sink.execution("stream")
    assert run.status == "completed"
    assert inside == [True, True, True]
    assert [e.name for e in run.events] == ["chunk-0", "chunk-1", "chunk-2"]


def test_generator_return_value_and_send_pass_through(captured: Captured) -> None:
    @agentwatch.observe
    def echo() -> Iterator[str]:
        received = yield "ready"
        yield f"got {received}"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    with pytest.raises(StopIteration):
        next(gen)
    assert captured.sink.execution("echo").status == "completed"


def test_closing_or_abandoning_a_generator_finishes_its_execution(captured: Captured) -> None:
    @agentwatch.observe
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    gen = endless()
    next(gen)
    gen.close()
    assert captured.sink.execution("endless").status == "completed"

    @agentwatch.observe
    def abandoned() -> Iterator[int]:
        yield from range(10)

    gen2 = abandoned()
    next(gen2)
    del gen2
    gc.collect()
    assert captured.sink.execution("abandoned").status == "completed"


def test_generator_failure_is_recorded(captured: Captured) -> None:
    @agentwatch.observe
    def bad() -> Iterator[int]:
        yield 1
        raise ValueError("late failure")

    with pytest.raises(ValueError, match="late failure"):
        list(bad())
    assert captured.sink.execution("bad").error_type == "ValueError"


def test_async_generator_spans_iteration_and_records_events(captured: Captured) -> None:
    @agentwatch.observe
    async def tokens() -> AsyncIterator[str]:
        for word in ("a", "b"):
            await asyncio.sleep(0)
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=1)
            yield word

    async def consume() -> list[str]:
        return [w async for w in tokens()]

    assert asyncio.run(consume()) == ["a", "b"]
    run = captured.sink.execution("tokens")
    assert run.status == "completed"
    assert [e.kind for e in run.events] == ["llm_call", "llm_call"]


def test_async_generator_closed_early_finishes(captured: Captured) -> None:
    @agentwatch.observe
    async def numbers() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    async def first() -> int:
        agen = numbers()
        value = await agen.__anext__()
        await agen.aclose()
        return value

    assert asyncio.run(first()) == 0
    assert captured.sink.execution("numbers").status == "completed"


def test_async_generator_failure_propagates(captured: Captured) -> None:
    @agentwatch.observe
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise LookupError("nope")

    async def consume() -> None:
        async for _ in failing():
            pass

    with pytest.raises(LookupError):
        asyncio.run(consume())
    assert captured.sink.execution("failing").error_type == "LookupError"


def test_track_sync_and_async_yield_the_execution(captured: Captured) -> None:
    with agentwatch.track("batch", team="search") as run:
        assert current_execution() is run
    assert captured.sink.execution("batch").attributes == {"team": "search"}

    async def main() -> str:
        async with agentwatch.track("chat-turn") as turn:
            assert current_execution() is turn
            return turn.id

    turn_id = asyncio.run(main())
    assert captured.sink.execution("chat-turn").id == turn_id


def test_track_records_failure_and_reraises(captured: Captured) -> None:
    with pytest.raises(ZeroDivisionError), agentwatch.track("math"):
        _ = 1 / 0
    assert captured.sink.execution("math").error_type == "ZeroDivisionError"


def test_tool_inside_an_agent_adds_a_tool_call_event_and_tool_metrics(
    captured: Captured,
) -> None:
    @agentwatch.observe(name="search", kind="tool")
    def search(query: str) -> list[str]:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=5)
        return [query]

    @agentwatch.observe
    def researcher() -> list[str]:
        return search("llm")

    assert researcher() == ["llm"]
    agent_run = captured.sink.execution("researcher")
    tool_run = captured.sink.execution("search")
    assert tool_run.kind == "tool"
    assert tool_run.parent_id == agent_run.id
    tool_events = [e for e in agent_run.events if e.kind == "tool_call"]
    assert [(e.name, e.status, e.execution_id) for e in tool_events] == [
        ("search", "success", agent_run.id)
    ]
    # the LLM call inside the tool is billed to the agent that called the tool
    assert (
        captured.value(
            "agentwatch_llm_tokens_total",
            {"agent": "researcher", "model": "gpt-4o-mini", "provider": "openai", "type": "input"},
        )
        == 5.0
    )
    assert (
        captured.value(
            "agentwatch_tool_calls_total",
            {"agent": "researcher", "tool": "search", "status": "success"},
        )
        == 1.0
    )
    assert captured.value("agentwatch_tool_call_duration_seconds_count", {"tool": "search"}) == 1.0
    # tools are not agent executions
    assert (
        captured.value("agentwatch_executions_total", {"agent": "search", "status": "completed"})
        is None
    )


def test_tool_outside_any_execution_is_still_counted(captured: Captured) -> None:
    @agentwatch.observe(kind="tool")
    def lookup() -> None:
        raise TimeoutError("slow backend")

    with pytest.raises(TimeoutError):
        lookup()
    assert (
        captured.value(
            "agentwatch_tool_calls_total", {"agent": "none", "tool": "lookup", "status": "failure"}
        )
        == 1.0
    )
    late = captured.sink.late_events()
    assert [(e.kind, e.name, e.execution_id, e.error_type) for e in late] == [
        ("tool_call", "lookup", None, "TimeoutError")
    ]


def test_manual_api_attaches_to_the_current_execution(captured: Captured) -> None:
    with agentwatch.track("manual") as run:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=20, duration=0.2
        )
        agentwatch.record_tool_call("calculator", duration=0.01)
        agentwatch.record_event("memory", "recall", hits=3)
        agentwatch.record_event("cache-warmup")
    kinds = [(e.kind, e.name) for e in captured.sink.execution("manual").events]
    assert kinds == [
        ("llm_call", "gpt-4o-mini"),
        ("tool_call", "calculator"),
        ("memory", "recall"),
        ("custom", "cache-warmup"),
    ]
    llm = captured.sink.execution("manual").events[0]
    assert llm.execution_id == run.id
    assert llm.cost_usd == pytest.approx(10 * 0.15e-6 + 20 * 0.6e-6)
    assert captured.sink.execution("manual").events[2].attributes == {"hits": 3}


def test_llm_call_outside_executions_is_counted_with_agent_none(captured: Captured) -> None:
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=3, output_tokens=4)
    assert (
        captured.value(
            "agentwatch_llm_requests_total",
            {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "status": "success"},
        )
        == 1.0
    )
    late = captured.sink.late_events()
    assert len(late) == 1 and late[0].execution_id is None and late[0].agent == "none"


def test_event_after_the_run_ended_travels_as_late_event_with_its_id(
    captured: Captured,
) -> None:
    from agentwatch import context

    with agentwatch.track("quick") as run:
        frame = context.current_frame()
    assert frame is not None
    # what a litellm async hook does: it runs later, in a copy of the caller's context
    token = context.push(frame)
    try:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", output_tokens=7)
    finally:
        context.pop(token)
    assert captured.sink.execution("quick").events == []
    late = captured.sink.late_events()
    assert [(e.execution_id, e.agent, e.output_tokens) for e in late] == [(run.id, "quick", 7)]


def test_enabled_false_and_disabled_agents_record_nothing(captured: Captured) -> None:
    captured.reconfigure(disabled_agents=["noisy"])

    @agentwatch.observe(enabled=False)
    def quiet() -> int:
        return 1

    @agentwatch.observe
    def noisy() -> int:
        return 2

    assert quiet() + noisy() == 3
    assert captured.sink.items == []
    assert (
        captured.value("agentwatch_executions_total", {"agent": "noisy", "status": "completed"})
        is None
    )


def test_agentwatch_enabled_false_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AGENTWATCH_ENABLED", "false")
    runtime.close()
    registry = CollectorRegistry()
    sink = CollectingSink()
    rt = runtime.configure(registry=registry, sink=sink)
    try:

        @agentwatch.observe
        def agent() -> str:
            agentwatch.record_llm_call("gpt-4o-mini", input_tokens=1)
            return "ran"

        with agentwatch.track("block") as detached:
            assert detached.id.startswith("exec_")
        assert agent() == "ran"
        assert not rt.enabled
        assert sink.items == []
        exposed = [
            s for m in registry.collect() for s in m.samples if s.name.startswith("agentwatch_e")
        ]
        assert [s for s in exposed if s.name == "agentwatch_executions_total"] == []
    finally:
        runtime.close()


def test_arguments_are_captured_only_when_enabled_and_redacted(captured: Captured) -> None:
    @agentwatch.observe
    def default_off(question: str) -> None:
        return None

    @agentwatch.observe(capture_arguments=True)
    def login(user: str, password: str, note: str = "", *, api_key: str = "k") -> None:
        return None

    default_off("hi")
    login("ada@example.com", "hunter2", "x" * 10_000)
    assert captured.sink.execution("default_off").arguments is None
    args = captured.sink.execution("login").arguments
    assert args is not None
    assert args["password"] == "[REDACTED]"
    assert args["user"] == "[REDACTED:email]"
    assert len(args["note"]) < 3000 and "truncated" in args["note"]

    captured.reconfigure(capture_arguments=True)

    @agentwatch.observe
    def method_like(self: object, query: str) -> None:
        return None

    method_like(object(), "what")
    assert captured.sink.execution("method_like").arguments == {"query": "what"}


class _ExplodingSink:
    def submit(self, item: object) -> bool:
        raise RuntimeError("writer exploded")


def test_errors_inside_agentwatch_never_reach_the_user(captured: Captured) -> None:
    registry = CollectorRegistry()
    runtime.configure(registry=registry, sink=_ExplodingSink())  # type: ignore[arg-type]

    @agentwatch.observe
    def survives() -> str:
        agentwatch.record_llm_call("gpt-4o-mini", input_tokens=1)
        return "value"

    assert survives() == "value"  # its ExecutionFinished could not be handed over
    agentwatch.record_llm_call("gpt-4o-mini", input_tokens=1)  # neither could this LateEvent
    assert (
        registry.get_sample_value("agentwatch_internal_errors_total", {"component": "writer"})
        == 2.0
    )


def test_invalid_manual_values_never_reach_a_counter(captured: Captured) -> None:
    agentwatch.record_llm_call(
        "gpt-4o-mini", provider="openai", input_tokens=1, cost_usd=math.nan, duration=-1.0
    )
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", status="weird")  # type: ignore[arg-type]
    cost = captured.value(
        "agentwatch_llm_cost_usd_total",
        {"agent": "none", "model": "gpt-4o-mini", "provider": "openai"},
    )
    assert cost is not None and math.isfinite(cost) and cost == pytest.approx(0.15e-6)
    for field in ("cost_usd", "duration"):
        assert captured.value("agentwatch_invalid_values_total", {"field": field}) == 1.0
    labels = {"component": "invalid_argument"}
    assert captured.value("agentwatch_internal_errors_total", labels) == 1.0
    assert (
        captured.value(
            "agentwatch_llm_request_duration_seconds_count",
            {"model": "gpt-4o-mini", "provider": "openai"},
        )
        is None
    )


def test_observe_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="'agent' or 'tool'"):
        agentwatch.observe(kind="robot")  # type: ignore[call-overload]


def test_decorated_functions_keep_their_nature_and_metadata(captured: Captured) -> None:
    import inspect

    @agentwatch.observe
    async def coro() -> None:
        """Docstring kept."""

    @agentwatch.observe
    def gen() -> Iterator[int]:
        yield 1

    @agentwatch.observe
    async def agen() -> AsyncIterator[int]:
        yield 1

    assert inspect.iscoroutinefunction(coro)
    assert inspect.isgeneratorfunction(gen)
    assert inspect.isasyncgenfunction(agen)
    assert coro.__name__ == "coro" and coro.__doc__ == "Docstring kept."
