"""The store's part of cost attribution and budget enforcement (mixed into `Store`).

- **Per-dimension value caps**: `admit_values` decides, inside a writer's transaction,
  which attribution values become labels: at most `max_values` per dimension for all
  writers together, first come first served, in `attribution_values`. Refused values are
  folded into `__overflow__` in the rollups (`rollups.fold_values`), never in the rows.
- **Pending spend of enforcing processes** (`budget_pending`): each process running an
  enforcing budget publishes the spend it recorded but has not written yet, so the others
  count it (`enforcement.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the writer's modules: a store opened only to query never needs them
    from agentwatch.cardinality import ValueAdmissionCache
    from agentwatch.rollups import RollupBatch

_VALUES_CHUNK = 256

_ADMITTED_VALUES = "SELECT value FROM attribution_values WHERE dimension = ? AND value IN ({})"
_VALUE_COUNT = "SELECT COUNT(*) FROM attribution_values WHERE dimension = ?"
_ADMIT_VALUE = (
    "INSERT INTO attribution_values (dimension, value) VALUES (?, ?) "
    "ON CONFLICT (dimension, value) DO NOTHING"
)
_PUBLISH = (
    "INSERT INTO budget_pending (owner, budget, period_start, amount, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, budget) DO UPDATE SET "
    "period_start = excluded.period_start, amount = excluded.amount, "
    "updated_at = excluded.updated_at"
)
_OTHERS_PENDING = (
    "SELECT COALESCE(SUM(amount), 0) FROM budget_pending WHERE budget = ? "
    "AND period_start = ? AND owner <> ? AND updated_at >= ?"
)


class AttributionStore(ABC):
    """Attribution and enforcement queries; `Store` supplies the hooks below."""

    _values: ValueAdmissionCache

    @abstractmethod
    def _sql(self, sql: str) -> str:
        """`sql` with `?` placeholders converted for the driver."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """Yield a cursor for read-only statements (under the store's lock)."""

    @abstractmethod
    def atomic(self) -> AbstractContextManager[Any]:
        """Open a transaction and yield a cursor."""

    @abstractmethod
    def _lock_for_admission(self, cur: Any) -> None:
        """Serialise admission between writers until the transaction ends."""

    # -- per-dimension caps (inside a writer's transaction) -------------------------------
    def admit_values(self, cur: Any, batch: RollupBatch) -> list[tuple[str, str, bool]]:
        """Decide the batch's attribution values and fold the refused ones.

        A value is admitted when any writer admitted it before, or when its dimension holds
        fewer than `batch.attribution_caps[d]` values. Runs under `_lock_for_admission`
        (only when a value this store object has not seen decided is in the batch).

        Returns:
            The `(dimension, value, admitted)` decisions, to remember once committed.
        """
        from agentwatch.rollups import attribution_values, fold_values

        caps = batch.attribution_caps
        found = attribution_values(batch) if caps else {}
        decided: list[tuple[str, str, bool]] = []
        refused: set[tuple[str, str]] = set()
        locked = False
        for dimension, values in sorted(found.items()):
            cap = caps.get(dimension)
            if cap is None:  # a dimension this writer does not cap: keep as it is
                continue
            unknown: list[str] = []
            for value in sorted(values):
                known = self._values.lookup(dimension, value, cap)
                if known is None:
                    unknown.append(value)
                elif not known:
                    refused.add((dimension, value))
            if not unknown:
                continue
            if not locked:
                self._lock_for_admission(cur)
                locked = True
            existing: set[str] = set()
            for start in range(0, len(unknown), _VALUES_CHUNK):
                chunk = unknown[start : start + _VALUES_CHUNK]
                size = 1 << (len(chunk) - 1).bit_length()  # few distinct statement texts
                chunk += [chunk[-1]] * (size - len(chunk))
                cur.execute(
                    self._sql(_ADMITTED_VALUES.format(", ".join("?" * size))), (dimension, *chunk)
                )
                existing.update(str(row[0]) for row in cur.fetchall())
            fresh = [v for v in unknown if v not in existing]
            room = 0
            if fresh:
                cur.execute(self._sql(_VALUE_COUNT), (dimension,))
                room = max(0, cap - int(cur.fetchone()[0]))
                if room:
                    cur.executemany(self._sql(_ADMIT_VALUE), [(dimension, v) for v in fresh[:room]])
            admitted = existing.union(fresh[:room])
            for value in unknown:
                ok = value in admitted
                decided.append((dimension, value, ok))
                if not ok:
                    refused.add((dimension, value))
        if refused:
            fold_values(batch, refused)
        return decided

    # -- pending spend of enforcing processes ----------------------------------------------
    def publish_pending(
        self, owner: str, budget: str, period_start: float, amount: float, now: float
    ) -> None:
        """Record that process `owner` has `amount` USD of `budget`'s spend not written yet."""
        with self.atomic() as cur:
            cur.execute(self._sql(_PUBLISH), (owner, budget, period_start, amount, now))

    def others_pending(
        self, budget: str, period_start: float, owner: str, fresh_after: float
    ) -> float:
        """Spend of `budget` other live processes recorded but have not written yet.

        Rows not refreshed since `fresh_after` are ignored: their process is gone (its
        unwritten records with it) or cannot reach the store.
        """
        with self._read() as cur:
            cur.execute(self._sql(_OTHERS_PENDING), (budget, period_start, owner, fresh_after))
            return float(cur.fetchone()[0])

    def forget_pending(self, owner: str | None = None, older_than: float | None = None) -> None:
        """Delete `owner`'s rows (it stops), or every row not refreshed since `older_than`."""
        with self.atomic() as cur:
            if owner is not None:
                cur.execute(self._sql("DELETE FROM budget_pending WHERE owner = ?"), (owner,))
            if older_than is not None:
                cur.execute(
                    self._sql("DELETE FROM budget_pending WHERE updated_at < ?"), (older_than,)
                )
