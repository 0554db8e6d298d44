"""A realistic agent workload through real litellm code paths, offline (`mock_response=`).

Used by `agentwatch demo`, the README's first command and the end-to-end tests: several
agents (one nested inside another), five models across four providers plus one self-hosted
model with no public price, a tool, streaming, rate-limit failures and failed runs. Every call
goes through litellm and the agentwatch callback exactly as production traffic would; only
the network is replaced by litellm's mock responses with realistic delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: (model, share of calls). Providers follow from litellm's own model routing.
_MODELS = (
    ("gpt-4o-mini", 0.35),
    ("gpt-4o", 0.15),
    ("claude-haiku-4-5", 0.2),
    ("gemini/gemini-2.5-flash", 0.15),
    ("mistral/mistral-small-latest", 0.1),
    ("hosted_vllm/acme-7b", 0.05),
)
_ANSWERS = (
    "The quarterly numbers look stable; revenue grew four percent.",
    "Here is a short summary of the three sources you gave me.",
    "I could not find that order; could you confirm the number?",
    "Bonjour! Je peux vous aider avec votre commande.",
)


_Agent = Callable[..., Awaitable[str]]


@dataclass
class DemoReport:
    """What the demo did, for the CLI to print, counted as `monitor stats` counts them.

    A run is an agent execution, top-level or nested (`summarizer` runs inside
    `researcher`); `failed_runs` counts both kinds; tool calls are not runs.
    """

    top_level_runs: int = 0
    nested_runs: int = 0
    failed_runs: int = 0
    llm_calls: int = 0
    llm_failures: int = 0
    tool_calls: int = 0

    @property
    def runs(self) -> int:
        """Every agent run, nested ones included (what `agentwatch_executions_total` counts)."""
        return self.top_level_runs + self.nested_runs


def _prepare_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


async def run_demo_async(runs: int = 40, seed: int = 7, concurrency: int = 8) -> DemoReport:
    """Run `runs` top-level agent runs (plus nested ones) through litellm; return counts.

    The caller configures agentwatch (store, settings) before and flushes after.
    """
    import agentwatch

    litellm = _prepare_litellm()
    agentwatch.instrument_litellm()
    rng = random.Random(seed)
    report = DemoReport()
    gate = asyncio.Semaphore(concurrency)

    def run(nested: bool = False) -> Callable[[_Agent], _Agent]:
        """Count an agent run (inside its @observe), and whether it failed."""

        def wrap(fn: _Agent) -> _Agent:
            @functools.wraps(fn)
            async def counted(*args: Any) -> str:
                if nested:
                    report.nested_runs += 1
                else:
                    report.top_level_runs += 1
                try:
                    return await fn(*args)
                except Exception:
                    report.failed_runs += 1
                    raise

            return counted

        return wrap

    def pick_model() -> str:
        return rng.choices([m for m, _ in _MODELS], weights=[w for _, w in _MODELS])[0]

    async def llm(model: str, prompt: str, stream: bool = False) -> str:
        report.llm_calls += 1
        delay = rng.uniform(0.05, 0.6)
        if rng.random() < 0.08:
            report.llm_failures += 1
            error = litellm.RateLimitError(
                "rate limited (demo)", llm_provider="openai", model=model
            )
            await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                mock_response=error,
                mock_delay=delay / 4,
                num_retries=0,
            )
        if stream:
            chunks = await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                mock_response=rng.choice(_ANSWERS),
                mock_delay=delay,
                stream=True,
            )
            parts = [chunk.choices[0].delta.content or "" async for chunk in chunks]
            return "".join(parts)
        response = await litellm.acompletion(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            mock_response=rng.choice(_ANSWERS),
            mock_delay=delay,
        )
        return str(response.choices[0].message.content)

    @agentwatch.observe(kind="tool", name="web_search")
    async def web_search(query: str) -> list[str]:
        report.tool_calls += 1
        await asyncio.sleep(rng.uniform(0.01, 0.2))
        if rng.random() < 0.05:
            raise TimeoutError("search backend timed out")
        return [f"result {i} for {query}" for i in range(3)]

    @agentwatch.observe(name="summarizer")
    @run(nested=True)
    async def summarizer(texts: list[str]) -> str:
        return await llm("claude-haiku-4-5", "Summarise: " + " ".join(texts))

    @agentwatch.observe(name="researcher")
    @run()
    async def researcher(question: str) -> str:
        results = await web_search(question)
        draft = await llm(pick_model(), question)
        return draft + await summarizer(results)

    @agentwatch.observe(name="support-bot")
    @run()
    async def support_bot(message: str) -> str:
        return await llm(rng.choice(["gpt-4o-mini", "gemini/gemini-2.5-flash"]), message, True)

    @agentwatch.observe(name="translator")
    @run()
    async def translator(text: str) -> str:
        return await llm(pick_model(), "Translate to French: " + text)

    agents = (researcher, support_bot, translator)

    async def one_run(index: int) -> None:
        agent = agents[index % len(agents)]
        async with gate:
            with contextlib.suppress(Exception):  # counted by run(); a demo keeps going
                await agent(f"demo request {index}")

    await asyncio.gather(*(one_run(i) for i in range(runs)))
    await agentwatch.aflush()  # litellm's last hooks run as tasks after the calls returned
    return report


def run_demo(runs: int = 40, seed: int = 7, concurrency: int = 8) -> DemoReport:
    """Synchronous wrapper of `run_demo_async`."""
    return asyncio.run(run_demo_async(runs=runs, seed=seed, concurrency=concurrency))
