"""A cap on distinct label sets per metric, so one runaway label cannot blow up a TSDB.

Model names, agent names and tool names come from user code and from providers; a typo loop
or a per-request model alias can mint thousands of series. Past the cap, new label sets fold
into one series whose every label is `__overflow__`, and the fold is counted in
`agentwatch_cardinality_overflow_total{metric}`.
"""

from __future__ import annotations

import threading

from agentwatch.contract import OVERFLOW


class CardinalityGuard:
    """Admits at most `max_label_sets` distinct label tuples per metric name.

    Thread-safe. A label set seen before costs one dict and one set lookup (no lock); only a
    new label set takes the lock.
    """

    def __init__(self, max_label_sets: int) -> None:
        if max_label_sets < 1:
            raise ValueError("max_label_sets must be >= 1")
        self.max_label_sets = max_label_sets
        self._seen: dict[str, set[tuple[str, ...]]] = {}
        self._overflowed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, metric: str, labels: tuple[str, ...]) -> tuple[str, ...]:
        """Return `labels` if admitted, else the overflow label tuple of the same length."""
        seen = self._seen.get(metric)
        if seen is not None and labels in seen:
            return labels
        with self._lock:
            seen = self._seen.setdefault(metric, set())
            if labels in seen:
                return labels
            if len(seen) < self.max_label_sets:
                seen.add(labels)
                return labels
            self._overflowed[metric] = self._overflowed.get(metric, 0) + 1
        return (OVERFLOW,) * len(labels)

    def overflow_counts(self) -> dict[str, int]:
        """Observations folded into the overflow series so far, per metric."""
        with self._lock:
            return dict(self._overflowed)
