"""The synthetic agent fleet of the benchmarks: agents, models, tools and a realistic mix.

Version-neutral (no agentwatch import): the parent of a comparison and the workers of every
code version draw the same label sets from here, so two versions store the same data.

The mix, per run: 1, 2 or 3 LLM calls (50 / 30 / 20 %), 0, 1 or 2 tool calls (60 / 25 /
15 %), 5 % failed runs (timeouts and rate limits fail the last LLM call too). Agents are
Zipf-distributed (the busiest of 200 makes ~3 % of the runs); each uses three models of
the fleet (70 / 20 / 10 %) and two of 20 tools. One model (`llama3` on ollama) has no price,
so unpriced calls are part of the data. With 200 agents x 10 models this exposes ~10k
series on `/metrics` and stays under the default cap of 2,000 label sets per metric.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect
from dataclasses import dataclass

#: (model, provider, USD per 1M input tokens, per 1M output tokens); None = unpriced.
MODEL_TABLE: tuple[tuple[str, str, float | None, float | None], ...] = (
    ("gpt-4o-mini", "openai", 0.15, 0.60),
    ("claude-3-5-haiku-20241022", "anthropic", 0.80, 4.00),
    ("gemini-1.5-flash", "gemini", 0.075, 0.30),
    ("gpt-4o", "openai", 2.50, 10.00),
    ("claude-3-5-sonnet-20241022", "anthropic", 3.00, 15.00),
    ("mistral-small-latest", "mistral", 0.20, 0.60),
    ("deepseek-chat", "deepseek", 0.27, 1.10),
    ("o3-mini", "openai", 1.10, 4.40),
    ("gpt-4.1-mini", "openai", 0.40, 1.60),
    ("llama3", "ollama", None, None),
)
TOOLS = 20
FAILURE_RATE = 0.05
#: (error type, share of failures, message, fails the last LLM call too)
ERRORS = (
    ("TimeoutError", 0.4, "request timed out after 60 s", True),
    ("RateLimitError", 0.4, "Rate limit reached for requests per minute", True),
    ("ValueError", 0.2, "could not parse the model's answer as JSON", False),
)
_MODEL_SHARES = (0.7, 0.9, 1.0)  # cumulative: primary, secondary, tertiary model


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    input_price: float | None  # USD per token
    output_price: float | None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float | None:
        if self.input_price is None or self.output_price is None:
            return None
        billed = input_tokens - cached_tokens
        return (
            billed * self.input_price
            + cached_tokens * self.input_price / 2
            + output_tokens * self.output_price
        )


def models(n: int) -> list[Model]:
    """The first `n` models of the fleet (extra ones are priced like a small model)."""
    result = []
    for i in range(n):
        if i < len(MODEL_TABLE):
            name, provider, pin, pout = MODEL_TABLE[i]
        else:
            name, provider, pin, pout = f"model-{i:03d}", "openai-compatible", 0.3, 1.2
        result.append(
            Model(
                name,
                provider,
                None if pin is None else pin / 1e6,
                None if pout is None else pout / 1e6,
            )
        )
    return result


@dataclass(frozen=True)
class Call:
    """One LLM call of a run, as capture would record it."""

    model: Model
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    duration: float
    ttft: float | None
    failed: bool
    cost: float | None


@dataclass(frozen=True)
class Tool:
    name: str
    duration: float
    failed: bool


@dataclass(frozen=True)
class Run:
    """One agent run: who, when (offset filled by the caller), what it called, how it ended."""

    agent: str
    calls: tuple[Call, ...]
    tools: tuple[Tool, ...]
    error: tuple[str, str] | None  # (error type, message) of a failed run


class Fleet:
    """`agents` x `n_models` label shape with a deterministic random mix (seeded)."""

    def __init__(self, agents: int, n_models: int, seed: int = 10) -> None:
        if agents < 1 or n_models < 1:
            raise ValueError("agents and models must be >= 1")
        width = max(3, len(str(agents - 1)))
        self.agents = [f"agent-{i:0{width}d}" for i in range(agents)]
        self.models = models(n_models)
        weights = [1.0 / (rank + 1) ** 0.8 for rank in range(agents)]
        self._agent_cum = list(itertools.accumulate(weights))
        self._agent_models = [
            list(dict.fromkeys(self.models[(i * k + k - 1) % n_models] for k in (1, 3, 7)))
            for i in range(agents)
        ]
        self._agent_tools = [
            [f"tool-{i % TOOLS:02d}", f"tool-{(i + 7) % TOOLS:02d}"] for i in range(agents)
        ]
        self.rng = random.Random(seed)

    def agent_models(self, agent_index: int) -> list[Model]:
        return self._agent_models[agent_index]

    def next_run(self) -> Run:
        """Draw one run of the mix."""
        rng = self.rng
        r = rng.random
        index = bisect(self._agent_cum, r() * self._agent_cum[-1])
        index = min(index, len(self.agents) - 1)
        own = self._agent_models[index]
        error = None
        fail_last = False
        if r() < FAILURE_RATE:
            pick = r()
            chosen = ERRORS[-1]
            for entry in ERRORS:
                pick -= entry[1]
                if pick <= 0:
                    chosen = entry
                    break
            error, fail_last = (chosen[0], chosen[2]), chosen[3]
        x = r()
        n_calls = 1 if x < 0.5 else 2 if x < 0.8 else 3
        calls = []
        for k in range(n_calls):
            failed = fail_last and k == n_calls - 1
            calls.append(self._call(own, failed))
        x = r()
        n_tools = 0 if x < 0.6 else 1 if x < 0.85 else 2
        tools = tuple(
            Tool(
                rng.choice(self._agent_tools[index]),
                min(rng.lognormvariate(-2.5, 1.0), 120.0),
                r() < 0.02,
            )
            for _ in range(n_tools)
        )
        return Run(self.agents[index], tuple(calls), tools, error)

    def _call(self, own: list[Model], failed: bool) -> Call:
        rng = self.rng
        pick = rng.random()
        model = own[min(bisect(_MODEL_SHARES, pick), len(own) - 1)]
        duration = min(rng.lognormvariate(0.2, 0.8), 300.0)
        if failed:
            cost = None if model.input_price is None else 0.0
            return Call(model, 0, 0, 0, 0, duration, None, True, cost)
        input_tokens = int(rng.lognormvariate(6.6, 0.8))
        output_tokens = int(rng.lognormvariate(5.0, 0.8))
        cached = input_tokens // 2 if model.provider == "openai" and rng.random() < 0.3 else 0
        reasoning = output_tokens // 2 if model.name.startswith("o3") else 0
        ttft = duration * 0.15 if rng.random() < 0.3 else None
        cost = model.cost(input_tokens, output_tokens, cached)
        return Call(
            model, input_tokens, output_tokens, cached, reasoning, duration, ttft, False, cost
        )


def budgets(fleet: Fleet) -> list[dict[str, object]]:
    """Budgets a team would configure for this fleet (config-file shape)."""
    busiest, quiet = fleet.agents[0], fleet.agents[-1]
    return [
        {"name": "all-monthly", "period": "month", "limit_usd": 50000.0},
        {"name": "busiest-agent-daily", "period": "day", "limit_usd": 100.0, "agent": busiest},
        {
            "name": "model-weekly",
            "period": "week",
            "limit_usd": 2000.0,
            "model": fleet.models[0].name,
        },
        {
            "name": "provider-monthly",
            "period": "month",
            "limit_usd": 10000.0,
            "provider": fleet.models[min(1, len(fleet.models) - 1)].provider,
        },
        {
            "name": "quiet-agent-monthly",
            "period": "month",
            "limit_usd": 10.0,
            "timezone": "Europe/Berlin",
            "agent": quiet,
        },
    ]
