"""Fill a store with real captured runs for the CLI tests.

Everything goes through the public capture API (`configure`, `@observe`, `track`,
`record_llm_call`, `record_tool_call`, `record_event`, `flush`) and the real background
writer, so the CLI reads exactly what instrumented programs write.

The workload, in two phases split by `Workload.boundary` (a moment strictly between them):

old phase   translator x2 (completed; gpt-4o-mini / openai, 100 in + 20 out, $0.0003 each)
new phase   researcher (completed) -> summariser (nested; gpt-4o-mini, 50 + 10, $0.0001)
            researcher (failed with RateLimitError) -> summariser (nested)
              each researcher: claude-3-5-haiku / anthropic 300 + 80 $0.002, tool `search`,
              memory `recall`
            translator (completed, track() with team=i18n)
            one LLM call outside any run (gpt-4o-mini, $0.0005)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import agentwatch


class RateLimitError(Exception):
    """Stands in for a provider's rate-limit exception (only the class name matters)."""


@dataclass
class Workload:
    url: str
    boundary: float = 0.0
    old_ids: list[str] = field(default_factory=list)
    failed_id: str = ""
    completed_researcher_id: str = ""

    # Totals the commands must report, derived from the workload above.
    executions = 7  # 2 old translators + 2 researchers + 2 summarisers + 1 translator
    old_executions = 2
    failed = 1
    run_cost = 2 * 0.0003 + 2 * (0.002 + 0.0001) + 0.0003
    orphan_cost = 0.0005


def clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No user config file or AGENTWATCH_* variable may leak into a test."""
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AGENTWATCH_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")


def _translate(text: str) -> str:
    agentwatch.record_llm_call(
        "gpt-4o-mini", provider="openai", input_tokens=100, output_tokens=20,
        cost_usd=0.0003, duration=0.5,
    )  # fmt: skip
    return text.upper()


def record_workload(url: str) -> Workload:
    """Capture the workload into the store at `url` and wait until it is written."""
    workload = Workload(url)
    agentwatch.configure(store_url=url)
    try:
        translator = agentwatch.observe(name="translator")(_translate)
        for word in ("hello", "bye"):
            translator(word)
        assert agentwatch.flush(timeout=10), "old phase not written"
        workload.boundary = time.time()
        time.sleep(0.01)

        @agentwatch.observe(name="summariser")
        def summariser() -> None:
            agentwatch.record_llm_call(
                "gpt-4o-mini", provider="openai", input_tokens=50, output_tokens=10,
                cost_usd=0.0001, duration=0.2,
            )  # fmt: skip

        @agentwatch.observe(name="researcher")
        def researcher(fail: bool) -> str:
            agentwatch.record_llm_call(
                "claude-3-5-haiku", provider="anthropic", input_tokens=300, output_tokens=80,
                cost_usd=0.002, duration=0.4,
            )  # fmt: skip
            agentwatch.record_tool_call("search", duration=0.05)
            agentwatch.record_event("memory", "recall", duration=0.01, hits=3)
            summariser()
            if fail:
                raise RateLimitError("429 slow down")
            return "done"

        researcher(False)
        with pytest.raises(RateLimitError):
            researcher(True)
        with agentwatch.track("translator", team="i18n"):
            _translate("again")
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=5, cost_usd=0.0005
        )
        assert agentwatch.flush(timeout=10), "new phase not written"
    finally:
        agentwatch.close()
    from agentwatch.store import open_store

    store = open_store(url)
    try:
        everything = store.get_executions(limit=None)
    finally:
        store.close()
    assert len(everything) == Workload.executions, everything
    workload.old_ids = [e["id"] for e in everything if e["started_at"] < workload.boundary]
    researchers = [e for e in everything if e["agent_name"] == "researcher"]
    workload.failed_id = next(e["id"] for e in researchers if e["status"] == "failed")
    workload.completed_researcher_id = next(
        e["id"] for e in researchers if e["status"] == "completed"
    )
    return workload
