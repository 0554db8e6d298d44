"""Sampling of stored detail: which run trees keep their raw rows (runs, events, arguments).

Metrics always count everything; only the store's raw rows are sampled. The decision is
taken once per run tree, when its root run ends, so a tree is stored whole or not at all:

- a tree with a failed run, or a run slower than `slow_seconds`, is always kept;
- otherwise it is kept when `fraction(root_id) < rate`, where `rate` is the root agent's
  rate; `fraction` is a hash of the root run id, so every process (and a late event that
  only knows the root) reaches the same decision without coordination.

Nested runs end before their root: `TreeSampler` holds them until the root's decision
(bounded: past `max_held` held runs a tree is kept whole rather than held, so memory stays
flat). A kept run of a sampled agent carries `agentwatch.sampled_rate` in its attributes,
so a reader can weight what it sees (1 / rate); sampled-out runs are counted
(`TreeSampler.sampled_out`) for a self-metric.

Wiring: `Runtime.submit` offers every finished run (when a rate is below 1) and hands the
decided runs to the writer marked `stored`; the writer's `RollupBuilder` counts every run in
the rollups and the hourly aggregates but writes rows for stored runs only.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentwatch.model import ExecutionFinished

#: Attribute a kept run of a sampled agent carries: the fraction of its trees kept.
SAMPLED_RATE_ATTRIBUTE = "agentwatch.sampled_rate"


def fraction(run_id: str) -> float:
    """A uniform number in [0, 1) derived from a run id (the same in every process)."""
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class SamplingPolicy:
    """Fractions of run trees whose raw rows are stored, per root agent.

    Attributes:
        default_rate: for agents not in `rates`; 1.0 stores everything (no sampling).
        rates: per-agent rates in [0, 1].
        slow_seconds: a tree with a run at least this long is always kept (None: no rule).
    """

    default_rate: float = 1.0
    rates: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float | None = None

    def rate_for(self, agent: str) -> float:
        return self.rates.get(agent, self.default_rate)

    @property
    def active(self) -> bool:
        """False when every agent is stored in full (nothing to decide, nothing held)."""
        return self.default_rate < 1.0 or any(r < 1.0 for r in self.rates.values())

    def must_keep(self, item: ExecutionFinished) -> bool:
        """A failed or slow run keeps its whole tree."""
        ex = item.execution
        if ex.status == "failed":
            return True
        duration = ex.duration
        return (
            self.slow_seconds is not None and duration is not None and duration >= self.slow_seconds
        )


@dataclass(slots=True)
class _Tree:
    runs: list[ExecutionFinished] = field(default_factory=list)
    keep: bool = False


class TreeSampler:
    """Decides per run tree; holds nested runs until their root ends. Thread-safe.

    Args:
        policy: the rates and the slow threshold.
        max_held: nested runs held at most, over all open trees; beyond it a tree's runs
            are released at once and the tree is kept whole.
    """

    def __init__(self, policy: SamplingPolicy, max_held: int = 10_000) -> None:
        self.policy = policy
        self._max_held = max_held
        self._held = 0
        self._trees: dict[str, _Tree] = {}
        self._forced: set[str] = set()
        self._lock = threading.Lock()
        self.sampled_out = 0

    def offer(self, item: ExecutionFinished, root_id: str) -> list[tuple[ExecutionFinished, bool]]:
        """Hand over a finished run; returns the runs now decided, each with "store rows?".

        Every run offered is returned exactly once, either now or with its root.
        """
        policy = self.policy
        if not policy.active:
            return [(item, True)]
        is_root = item.execution.id == root_id
        with self._lock:
            tree = self._trees.get(root_id)
            if not is_root:
                if root_id in self._forced:
                    return [(item, True)]
                if tree is None:
                    tree = self._trees[root_id] = _Tree()
                tree.runs.append(item)
                tree.keep = tree.keep or policy.must_keep(item)
                self._held += 1
                if self._held <= self._max_held:
                    return []
                # Too much held: keep this tree whole and stop holding its runs.
                del self._trees[root_id]
                self._held -= len(tree.runs)
                self._forced.add(root_id)
                return [(run, True) for run in tree.runs]
            if tree is not None:
                del self._trees[root_id]
                self._held -= len(tree.runs)
            forced = root_id in self._forced
            self._forced.discard(root_id)
        runs = [*(tree.runs if tree else ()), item]
        rate = policy.rate_for(item.execution.agent)
        keep = (
            forced
            or (tree is not None and tree.keep)
            or policy.must_keep(item)
            or fraction(root_id) < rate
        )
        if keep and rate < 1.0:
            for run in runs:
                run.execution.attributes[SAMPLED_RATE_ATTRIBUTE] = rate
        if not keep:
            with self._lock:
                self.sampled_out += len(runs)
        return [(run, keep) for run in runs]

    def release(self) -> list[ExecutionFinished]:
        """Every run still held (its root never ended), kept: called at shutdown."""
        with self._lock:
            trees, self._trees = self._trees, {}
            self._held = 0
            self._forced.clear()
        return [run for tree in trees.values() for run in tree.runs]
