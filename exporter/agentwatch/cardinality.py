"""A cap on distinct label sets per metric, so one runaway label cannot blow up a TSDB.

Model names, agent names and tool names come from user code and from providers; a typo loop
or a per-request model alias can mint thousands of series. Past the cap, new label sets fold
into one series whose every label is `__overflow__`, and the fold is counted in
`agentwatch_cardinality_overflow_total{metric}`.

Two places enforce the cap. `CardinalityGuard` caps one process' in-process registry. The
durable store caps what every process writes together (so `agentwatch serve`, which exposes
the store, stays bounded however many processes write): the store decides inside each
writer's transaction (`Store.write_batch`), and `AdmissionCache` remembers its decisions so
that only label sets a process has not seen decided cost a query.

Attribution dimensions (team, customer, ...) have a cap of their own on distinct values,
`max_values`: past it a new value becomes `__overflow__` in that label only, the other
labels are kept. `ValueCaps` applies it in-process; the store applies it for every writer
together and `ValueAdmissionCache` remembers its decisions.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from agentwatch.contract import OVERFLOW

if TYPE_CHECKING:
    from agentwatch.config import AttributionDimension


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

    def reserve(self, metric: str, labels: tuple[str, ...]) -> bool:
        """Admit `labels` if there is room, without counting a fold when there is none.

        For series created before anything is observed in them (the zero-filled outcome
        series of `contract.ZERO_FILLED_STATUSES`): such a series is exposed, so it takes a
        place under the cap like any other, and the cap keeps bounding what Prometheus
        stores. Past the cap it is simply not created: nothing was observed, so nothing is
        folded or counted in `agentwatch_cardinality_overflow_total`; a later observation
        of that label set goes through `admit` and folds as usual.
        """
        seen = self._seen.get(metric)
        if seen is not None and labels in seen:
            return True
        with self._lock:
            seen = self._seen.setdefault(metric, set())
            if labels in seen:
                return True
            if len(seen) < self.max_label_sets:
                seen.add(labels)
                return True
        return False

    def overflow_counts(self) -> dict[str, int]:
        """Observations folded into the overflow series so far, per metric."""
        with self._lock:
            return dict(self._overflowed)


class ValueCaps:
    """Per-dimension caps on distinct label values for one process' registry.

    First come, first served: the first `max_values` values of a dimension are kept as
    labels, later ones become `__overflow__`. Thread-safe; a value seen before costs one set
    lookup, a new one takes the lock.
    """

    def __init__(self, dimensions: tuple[AttributionDimension, ...]) -> None:
        self._caps = tuple(d.max_values for d in dimensions)
        self._names = tuple(d.name for d in dimensions)
        self._seen: tuple[set[str], ...] = tuple(set() for _ in dimensions)
        self._overflowed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """`values` with each value past its dimension's cap replaced by `__overflow__`.

        Each replaced value counts one fold for its dimension (one per run or call).
        """
        result: list[str] | None = None
        for i, value in enumerate(values):
            if not value:
                continue
            seen = self._seen[i]
            if value in seen:
                continue
            with self._lock:
                if value in seen:
                    continue
                if len(seen) < self._caps[i]:
                    seen.add(value)
                    continue
                name = self._names[i]
                self._overflowed[name] = self._overflowed.get(name, 0) + 1
            if result is None:
                result = list(values)
            result[i] = OVERFLOW
        return values if result is None else tuple(result)

    def overflow_counts(self) -> dict[str, int]:
        """Runs and calls whose value was folded so far, per dimension."""
        with self._lock:
            return dict(self._overflowed)


#: Bound of the remembered refusals (label sets the store folded): an attacker minting
#: label values must not grow a writer's memory without end.
_MAX_REMEMBERED_REFUSALS = 100_000


class AdmissionCache:
    """What one process learned about the store's label-set admissions.

    The store-wide cap (see `Store.write_batch`) is decided in SQL, inside the writer's
    transaction. A label set the store admitted stays admitted (rollup rows are never
    deleted, except by `clear_all`), so once a batch that saw it commits, later batches
    need no query for it: the hot path costs one dict lookup per label set. Refusals are
    remembered too (a store at its cap stays full), up to a bound.

    Not thread-safe: owned by one store instance, whose writes are serialised.
    """

    def __init__(self) -> None:
        self._admitted: dict[str, set[str]] = {}
        self._refused: dict[str, set[str]] = {}
        self._refused_size = 0
        self._cap: int | None = None

    def lookup(self, sample: str, key: str, cap: int) -> bool | None:
        """True (admitted), False (refused under `cap`) or None (ask the store)."""
        admitted = self._admitted.get(sample)
        if admitted is not None and key in admitted:
            return True
        if cap != self._cap:
            return None
        refused = self._refused.get(sample)
        if refused is not None and key in refused:
            return False
        return None

    def remember(self, decisions: list[tuple[str, str, bool]], cap: int) -> None:
        """Record `(sample, key, admitted)` decisions of a committed transaction."""
        if cap != self._cap:
            self._refused.clear()
            self._refused_size = 0
            self._cap = cap
        for sample, key, admitted in decisions:
            if admitted:
                self._admitted.setdefault(sample, set()).add(key)
                continue
            if self._refused_size >= _MAX_REMEMBERED_REFUSALS:
                self._refused.clear()
                self._refused_size = 0
            bucket = self._refused.setdefault(sample, set())
            if key not in bucket:
                bucket.add(key)
                self._refused_size += 1

    def clear(self) -> None:
        """Forget everything (the store's rollups were deleted)."""
        self._admitted.clear()
        self._refused.clear()
        self._refused_size = 0


class ValueAdmissionCache:
    """What one process learned about the store's attribution-value admissions.

    The store-wide `max_values` cap of each attribution dimension is decided in SQL inside
    the writer's transaction (`AttributionStore.admit_values`). An admitted value stays
    admitted, so it costs no query once seen; refusals are remembered while the cap stays
    the same, up to a bound. Not thread-safe: owned by one store instance.
    """

    def __init__(self) -> None:
        self._admitted: dict[str, set[str]] = {}
        self._refused: dict[str, set[str]] = {}
        self._refused_size = 0
        self._caps: dict[str, int] = {}

    def lookup(self, dimension: str, value: str, cap: int) -> bool | None:
        """True (admitted), False (refused under `cap`) or None (ask the store)."""
        admitted = self._admitted.get(dimension)
        if admitted is not None and value in admitted:
            return True
        if self._caps.get(dimension) != cap:
            return None
        refused = self._refused.get(dimension)
        if refused is not None and value in refused:
            return False
        return None

    def remember(self, decisions: list[tuple[str, str, bool]], caps: dict[str, int]) -> None:
        """Record `(dimension, value, admitted)` decisions of a committed transaction."""
        for dimension, cap in caps.items():
            if self._caps.get(dimension) != cap:
                self._refused_size -= len(self._refused.pop(dimension, ()))
                self._caps[dimension] = cap
        for dimension, value, admitted in decisions:
            if admitted:
                self._admitted.setdefault(dimension, set()).add(value)
                continue
            if self._refused_size >= _MAX_REMEMBERED_REFUSALS:
                self._refused.clear()
                self._refused_size = 0
            bucket = self._refused.setdefault(dimension, set())
            if value not in bucket:
                bucket.add(value)
                self._refused_size += 1

    def clear(self) -> None:
        """Forget everything (the store's rollups were deleted)."""
        self._admitted.clear()
        self._refused.clear()
        self._refused_size = 0
