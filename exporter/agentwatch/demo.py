"""A realistic agent workload through real litellm code paths, offline (`mock_response=`).

Used by `agentwatch demo`, the README's first command and the end-to-end tests: several
agents (one nested inside another), five models across four providers plus one self-hosted
model with no public price, a tool, streaming, rate-limit failures and failed runs. Every call
goes through litellm and the agentwatch callback exactly as production traffic would; only
the network is replaced by litellm's mock responses with realistic delays.

Reproducible: each top-level run draws from its own random generator, seeded from the seed
and the run's index, so two workloads with one seed make the same runs, failures and LLM
calls whatever order the concurrent runs finish in (ids and timings differ).

`python -m agentwatch.demo` runs the workload in a process of its own and reports progress as
JSON lines on stdout: `agentwatch demo` serves `/metrics` from another process meanwhile, so
a scrape never waits for the workload's share of the interpreter lock.

Each agent has a `team` attribute and each call a `customer` in its litellm metadata:
declare them under `attribution:` in the config to see spend by team and customer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import json
import os
import random
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

#: (model, share of calls). Providers follow from litellm's own model routing.
_MODELS = (
    ("gpt-4o-mini", 0.35),
    ("gpt-4o", 0.15),
    ("claude-haiku-4-5", 0.2),
    ("gemini/gemini-2.5-flash", 0.15),
    ("mistral/mistral-small-latest", 0.1),
    ("hosted_vllm/acme-7b", 0.05),
)
#: Customers the demo's calls are made for (litellm `metadata={"customer": ...}`).
_CUSTOMERS = ("acme", "globex", "initech")
_ANSWERS = (
    "The quarterly numbers look stable; revenue grew four percent.",
    "Here is a short summary of the three sources you gave me.",
    "I could not find that order; could you confirm the number?",
    "Bonjour! Je peux vous aider avec votre commande.",
)

#: The random generator of the run the current task belongs to (see `run_rng`).
_RUN_RNG: contextvars.ContextVar[random.Random] = contextvars.ContextVar("agentwatch_demo_rng")
#: The customer a top-level run (and its calls) serves: a rotation by run index, no random
#: draw, so attributing calls changes none of the runs, failures and calls a seed makes.
_RUN_CUSTOMER: contextvars.ContextVar[str] = contextvars.ContextVar(
    "agentwatch_demo_customer", default="acme"
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


#: Called after each top-level run with (runs finished, the report so far).
ProgressCallback = Callable[[int, DemoReport], None]


def run_rng(seed: int, index: int) -> random.Random:
    """The generator of top-level run `index`: depends on nothing but `seed` and `index`.

    A string seed is hashed with SHA-512 by `random`, the same in every process (unlike
    `hash()`), so a run draws the same numbers in any process and any interleaving.
    """
    return random.Random(f"agentwatch-demo:{seed}:{index}")


def _prepare_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


async def run_demo_async(
    runs: int = 40,
    seed: int = 7,
    concurrency: int = 8,
    on_progress: ProgressCallback | None = None,
) -> DemoReport:
    """Run `runs` top-level agent runs (plus nested ones) through litellm; return counts.

    The caller configures agentwatch (store, settings) before and flushes after.
    `on_progress`, if given, is called after each top-level run (an exception it raises
    stops the workload).
    """
    import agentwatch

    litellm = _prepare_litellm()
    agentwatch.instrument_litellm()
    report = DemoReport()
    finished = 0

    def rng() -> random.Random:
        return _RUN_RNG.get()

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
        return rng().choices([m for m, _ in _MODELS], weights=[w for _, w in _MODELS])[0]

    async def llm(model: str, prompt: str, stream: bool = False) -> str:
        report.llm_calls += 1
        # The customer a call is made for: an attribution dimension when the config declares
        # `customer` (the team comes from the agent's attributes).
        metadata = {"customer": _RUN_CUSTOMER.get()}
        delay = rng().uniform(0.05, 0.6)
        if rng().random() < 0.08:
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
                metadata=metadata,
            )
        answer = rng().choice(_ANSWERS)
        if stream:
            chunks = await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                mock_response=answer,
                mock_delay=delay,
                stream=True,
                metadata=metadata,
            )
            parts = [chunk.choices[0].delta.content or "" async for chunk in chunks]
            return "".join(parts)
        response = await litellm.acompletion(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            mock_response=answer,
            mock_delay=delay,
            metadata=metadata,
        )
        return str(response.choices[0].message.content)

    @agentwatch.observe(kind="tool", name="web_search")
    async def web_search(query: str) -> list[str]:
        report.tool_calls += 1
        await asyncio.sleep(rng().uniform(0.01, 0.2))
        if rng().random() < 0.05:
            raise TimeoutError("search backend timed out")
        return [f"result {i} for {query}" for i in range(3)]

    @agentwatch.observe(name="summarizer")
    @run(nested=True)
    async def summarizer(texts: list[str]) -> str:
        return await llm("claude-haiku-4-5", "Summarise: " + " ".join(texts))

    @agentwatch.observe(name="researcher", attributes={"team": "research"})
    @run()
    async def researcher(question: str) -> str:
        results = await web_search(question)
        draft = await llm(pick_model(), question)
        return draft + await summarizer(results)

    @agentwatch.observe(name="support-bot", attributes={"team": "support"})
    @run()
    async def support_bot(message: str) -> str:
        model = rng().choice(["gpt-4o-mini", "gemini/gemini-2.5-flash"])
        return await llm(model, message, True)

    @agentwatch.observe(name="translator", attributes={"team": "localization"})
    @run()
    async def translator(text: str) -> str:
        return await llm(pick_model(), "Translate to French: " + text)

    agents = (researcher, support_bot, translator)

    async def one_run(index: int) -> None:
        nonlocal finished
        agent = agents[index % len(agents)]
        # Set inside this worker's task, before the run: concurrent runs never share draws.
        _RUN_RNG.set(run_rng(seed, index))
        _RUN_CUSTOMER.set(_CUSTOMERS[(index // len(agents)) % len(_CUSTOMERS)])
        with contextlib.suppress(Exception):  # counted by run(); a demo keeps going
            await agent(f"demo request {index}")
        finished += 1
        if on_progress is not None:
            on_progress(finished, report)

    # `concurrency` workers take run numbers from one iterator: a handful of tasks whatever
    # `runs` is, so stopping a long workload (cancelling them) is immediate.
    pending = iter(range(runs))

    async def worker() -> None:
        for index in pending:
            await one_run(index)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, runs))))
    # litellm runs its last hooks as tasks after the calls returned; a loaded machine may need
    # more than the default few seconds, and a hook left for litellm's exit handler runs on a
    # fresh event loop that warns about the tasks it strands.
    await agentwatch.aflush(timeout=30.0)
    return report


def run_demo(
    runs: int = 40,
    seed: int = 7,
    concurrency: int = 8,
    on_progress: ProgressCallback | None = None,
) -> DemoReport:
    """Synchronous wrapper of `run_demo_async`."""
    return asyncio.run(
        run_demo_async(runs=runs, seed=seed, concurrency=concurrency, on_progress=on_progress)
    )


# -- the workload process of `agentwatch demo` ------------------------------------------------


@dataclass(frozen=True)
class WorkloadMessage:
    """One line the workload process writes: a phase change, a finished run, or the end.

    `phase` is `loaded` (litellm imported, runs start), `run` (one more top-level run done),
    `writing` (runs done, waiting for the store) or `done` (everything written, or
    `flushed` False when the store did not take it all in time).
    """

    phase: str
    done: int = 0
    total: int = 0
    report: DemoReport | None = None
    flushed: bool = True

    def to_line(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str) -> WorkloadMessage:
        """Parse one line; raises ValueError (or a subclass) on anything else."""
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("phase"), str):
            raise ValueError(f"not a workload message: {line[:80]!r}")
        report = data.get("report")
        return cls(
            phase=data["phase"],
            done=int(data.get("done", 0)),
            total=int(data.get("total", 0)),
            report=DemoReport(**report) if isinstance(report, dict) else None,
            flushed=bool(data.get("flushed", True)),
        )


def read_messages(stream: IO[str]) -> Iterator[WorkloadMessage]:
    """The workload's messages, in order, until it closes its end; other lines are skipped."""
    for line in stream:
        try:
            yield WorkloadMessage.from_line(line)
        except (ValueError, TypeError):
            continue  # not ours: the protocol is the only thing on this stream, but be lenient


def _progress_channel() -> IO[str]:
    """Our own copy of stdout for messages; fd 1 then points at stderr, so whatever else
    prints (litellm, a warning) can never corrupt a message line."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return channel


def main(argv: list[str] | None = None) -> int:
    """`python -m agentwatch.demo --runs N --seed S`: the workload process of `agentwatch demo`.

    Settings come from the environment (`AGENTWATCH_STORE_URL`, `AGENTWATCH_CONFIG`), so a
    store password never appears in the process list. When the reader goes away (its end of
    the pipe closes) the workload stops; what it recorded is still flushed.
    """
    parser = argparse.ArgumentParser(prog="python -m agentwatch.demo")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    channel = _progress_channel()

    def send(message: WorkloadMessage) -> None:
        channel.write(message.to_line())
        channel.flush()

    import agentwatch

    agentwatch.configure()
    _prepare_litellm()
    send(WorkloadMessage("loaded", total=args.runs))

    def progress(done: int, report: DemoReport) -> None:
        send(WorkloadMessage("run", done=done, total=args.runs, report=report))

    try:
        report = run_demo(args.runs, args.seed, args.concurrency, on_progress=progress)
        send(WorkloadMessage("writing", done=args.runs, total=args.runs, report=report))
        flushed = agentwatch.flush(timeout=30.0)
        send(WorkloadMessage("done", args.runs, args.runs, report, flushed))
    except BrokenPipeError:  # `agentwatch demo` stopped: keep what was recorded, say nothing
        agentwatch.flush(timeout=10.0)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), channel.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
