"""Concurrent runs never mix: each execution holds exactly its own calls.

The seeds' collector kept the current execution on a shared object, so two agents running at
once wrote into each other's records. These tests run many executions at the same time and
check every record carries only its own marker.
"""

from __future__ import annotations

import asyncio
import threading

import agentwatch
from _capture_fixtures import Captured, captured
from agentwatch.context import current_execution

__all__ = ["captured"]


def test_hundred_concurrent_tasks_keep_their_own_calls(captured: Captured) -> None:
    @agentwatch.observe
    async def worker(marker: int) -> str:
        run = current_execution()
        assert run is not None
        for step in range(3):
            # yield to the loop between calls so all tasks interleave
            await asyncio.sleep(0)
            agentwatch.record_llm_call(
                f"model-{marker % 7}", provider="openai", input_tokens=marker, marker=marker
            )
            agentwatch.record_event("custom", f"step-{marker}-{step}")
        assert current_execution() is run
        return run.id

    async def main() -> list[str]:
        return await asyncio.gather(*(worker(i) for i in range(100)))

    ids = asyncio.run(main())
    runs = captured.sink.executions()
    assert len(runs) == 100 and {r.id for r in runs} == set(ids)
    for run in runs:
        llm = [e for e in run.events if e.kind == "llm_call"]
        markers = {e.attributes["marker"] for e in llm}
        assert len(llm) == 3 and len(markers) == 1
        marker = markers.pop()
        assert all(e.input_tokens == marker and e.execution_id == run.id for e in llm)
        assert [e.name for e in run.events if e.kind == "custom"] == [
            f"step-{marker}-{s}" for s in range(3)
        ]
    assert captured.sink.late_events() == []


def test_eight_threads_keep_their_own_calls_and_nesting(captured: Captured) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    @agentwatch.observe(kind="tool")
    def tool(marker: int) -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", output_tokens=marker)

    def thread_body(marker: int) -> None:
        try:
            with agentwatch.track(f"agent-{marker}"):
                barrier.wait(timeout=10)
                for _ in range(5):
                    agentwatch.record_llm_call(
                        "gpt-4o-mini", provider="openai", input_tokens=marker
                    )
                    tool(marker)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=thread_body, args=(i + 1,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    for marker in range(1, 9):
        run = captured.sink.execution(f"agent-{marker}")
        llm = [e for e in run.events if e.kind == "llm_call"]
        tools = [e for e in run.events if e.kind == "tool_call"]
        assert len(llm) == 5 and {e.input_tokens for e in llm} == {marker}
        assert len(tools) == 5
        tool_runs = [
            r for r in captured.sink.executions() if r.kind == "tool" and r.parent_id == run.id
        ]
        assert len(tool_runs) == 5
        assert all([e.output_tokens for e in r.events] == [marker] for r in tool_runs)
        # tool LLM calls are billed to the agent that called the tool
        assert (
            captured.value(
                "agentwatch_llm_tokens_total",
                {
                    "agent": f"agent-{marker}",
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "type": "output",
                },
            )
            == 5.0 * marker
        )
