"""The background batch writer: the only path from capture to the durable store.

`submit()` is the hot path: it appends to a bounded in-memory queue under a lock and returns
(no I/O, no formatting, no allocation beyond the deque slot). One daemon thread takes batches
of up to `batch_size` records (or whatever arrived within `flush_interval`), turns them into
rows and rollup deltas (`rollups.py`) and writes each batch in one transaction.

What happens when things go wrong (the host program never sees an exception):

- queue full (the writer cannot keep up): the new record is refused and counted as
  `queue_full`;
- store unavailable (down, locked, disk full, read-only, cannot be opened): the batch stays
  in memory and is retried with exponential backoff; meanwhile the queue keeps draining into
  that retry buffer, and once the buffer holds more than the queue capacity the oldest
  records are dropped and counted as `store_error`. Each failed attempt counts in
  `write_errors`; each distinct problem is logged once, and the recovery once;
- a record the store refuses (bad data: a string it cannot encode, a number out of range,
  a violated constraint -- told apart from an outage by exception type, never by message):
  it is isolated from its batch and counted as `invalid`; the rest of the batch is written.
  Even a batch made only of such records is dropped, never retried as if the store were
  down;
- a lost acknowledgement (the connection died after the server committed): every batch
  carries a unique id, recorded in the store in the batch's own transaction, and a retry
  reuses the id and the very same batch, so it changes nothing the second time;
- `close()`: flushes, then stops the thread; records still unwritten are counted as
  `shutdown` and logged, and later submits are refused as `shutdown`. Counts that cannot
  reach the store any more (the store is locked or down at exit) are written to a loss
  file next to the store (`store/spill.py`), which the next writer folds into the rollups
  exactly once.

Ordering: one thread writes records in submission order (FIFO), and a batch inserts its
executions before its late events, so an execution's row exists when a `LateEvent`
submitted after its `ExecutionFinished` adds to its totals (`UPDATE ... SET x = x + ?`).
A late event that overtakes its execution (another thread submitted it between the run's
end and the run's own submit) is stored as `pending` and joins the totals when the
execution arrives (see `Store.write_batch`).

Every drop, write error, cardinality fold and internal error is also added to the store's
rollups with the next successful batch (or through a loss file at exit), so a central
`agentwatch serve` sees the losses of every process once the store is reachable again.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from agentwatch import audit, contract
from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import RecordRefused
from agentwatch.model import WriterItem
from agentwatch.rollups import RollupBatch, RollupBuilder, SelfDelta
from agentwatch.store import spill
from agentwatch.store.base import Store, StoreUnavailable, new_batch_id

if TYPE_CHECKING:
    from agentwatch.config import AttributionDimension

logger = logging.getLogger("agentwatch")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 5.0
_EXIT_TIMEOUT = 5.0
_EXIT_TIMEOUT_FAILING = 1.0
_MAX_LOGGED_PROBLEMS = 100
#: Seconds between two looks for loss files left by other processes (also done on open).
_FOLD_INTERVAL = 60.0
#: Exceptions that mean "this data cannot be stored", whatever the store: a record raising
#: one of them is dropped alone as `invalid`. Everything else is treated as an outage.
_REFUSED = (RecordRefused, ValueError, TypeError, OverflowError)

#: A self-metric key: ("errors", "") | ("dropped", reason) | ("internal", component) |
#: ("invalid", field).
_Key = tuple[str, str]


class WriterStats:
    """Counters of the writer, read at scrape time by `metrics.py`. Thread-safe snapshots.

    Attributes:
        backend: store backend label ("sqlite" | "postgresql"; "unknown" until the store was
            opened once, unless given to the writer).
        capacity: maximum records the queue holds before refusing new ones.
    """

    def __init__(self, backend: str, capacity: int, depth: Callable[[], int]) -> None:
        self.backend = backend
        self.capacity = capacity
        self._depth = depth
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = dict.fromkeys(contract.DROP_REASONS, 0)
        self._write_errors = 0
        self._buckets = [0] * (len(contract.STORE_WRITE_BUCKETS) + 1)
        self._write_sum = 0.0
        self._overflow: dict[str, int] = {}
        self._internal: dict[str, int] = {}
        self._invalid: dict[str, int] = {}
        self._rolled: dict[tuple[str, str], float] = {}

    def queue_depth(self) -> int:
        """Records accepted but not yet written (queue plus retry buffer)."""
        return self._depth()

    def dropped(self) -> dict[str, int]:
        """Records not stored, by reason (every reason of `contract.DROP_REASONS`)."""
        with self._lock:
            return dict(self._dropped)

    def write_errors(self) -> int:
        """Failed batch write attempts."""
        with self._lock:
            return self._write_errors

    def write_duration(self) -> tuple[list[int], float, int]:
        """Cumulative counts per `contract.STORE_WRITE_BUCKETS` bound plus +Inf, sum, count."""
        with self._lock:
            counts = list(self._buckets)
            total = self._write_sum
        running = 0
        for i, count in enumerate(counts):
            running += count
            counts[i] = running
        return counts, total, running

    def cardinality_overflow(self) -> dict[str, int]:
        """Observations folded into the overflow series of the rollups, per metric."""
        with self._lock:
            return dict(self._overflow)

    def internal_errors(self) -> dict[str, int]:
        """Contained errors, per component."""
        with self._lock:
            return dict(self._internal)

    def invalid_values(self) -> dict[str, int]:
        """Values repaired or rejected by `validation.py`, per record field."""
        with self._lock:
            return dict(self._invalid)

    # -- writer side -------------------------------------------------------------------
    def _drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n

    def _write_failed(self) -> None:
        with self._lock:
            self._write_errors += 1

    def _observe_write(self, seconds: float) -> None:
        with self._lock:
            self._buckets[bisect_left(contract.STORE_WRITE_BUCKETS, seconds)] += 1
            self._write_sum += seconds

    def _internal_error(self, component: str) -> None:
        with self._lock:
            self._internal[component] = self._internal.get(component, 0) + 1

    def _invalid_value(self, field: str) -> None:
        with self._lock:
            self._invalid[field] = self._invalid.get(field, 0) + 1

    def _current(self) -> dict[_Key, float]:
        """Every self-metric counter by key (lock held)."""
        current: dict[_Key, float] = {("errors", ""): float(self._write_errors)}
        for reason, n in self._dropped.items():
            current[("dropped", reason)] = float(n)
        for component, n in self._internal.items():
            current[("internal", component)] = float(n)
        for name, n in self._invalid.items():
            current[("invalid", name)] = float(n)
        return current

    def _deltas(self, values: dict[_Key, float]) -> list[SelfDelta]:
        """Self-metric deltas for positive `values` by key (lock held)."""
        deltas: list[SelfDelta] = []
        for (kind, label), delta in values.items():
            if delta <= 0:
                continue
            if kind == "errors":
                deltas.append((contract.STORE_WRITE_ERRORS, (self.backend,), delta))
            elif kind == "dropped":
                deltas.append((contract.EVENTS_DROPPED, (label,), delta))
            elif kind == "invalid":
                deltas.append((contract.INVALID_VALUES, (label,), delta))
            else:
                deltas.append((contract.INTERNAL_ERRORS, (label,), delta))
        return deltas

    def _unrolled(self) -> tuple[list[SelfDelta], dict[_Key, float]]:
        """Self-metric increments not yet added to the store's rollups, and the snapshot."""
        with self._lock:
            current = self._current()
            rolled = self._rolled
            deltas = self._deltas({k: v - rolled.get(k, 0.0) for k, v in current.items()})
        return deltas, current

    def _rolled_up(self, snapshot: dict[_Key, float], overflow: dict[str, int]) -> None:
        with self._lock:
            rolled = self._rolled
            for key, value in snapshot.items():  # never backwards (see _take_for_spill)
                if value > rolled.get(key, 0.0):
                    rolled[key] = value
            for metric, n in overflow.items():
                self._overflow[metric] = self._overflow.get(metric, 0) + n

    def _take_for_spill(
        self, inflight: dict[_Key, float] | None, inflight_records: int
    ) -> tuple[list[SelfDelta], list[SelfDelta]]:
        """Everything not rolled up yet, split for a loss file; marks it all rolled up.

        Returns (unconditional, conditional) deltas: with a batch in flight (snapshot
        `inflight`, carrying `inflight_records` records now counted as `shutdown` drops),
        what that batch carried is conditional on the batch never landing.
        """
        with self._lock:
            current = self._current()
            rolled = self._rolled
            sure: dict[_Key, float] = {}
            maybe: dict[_Key, float] = {}
            for key, value in current.items():
                before = rolled.get(key, 0.0)
                carried = before if inflight is None else max(inflight.get(key, before), before)
                maybe[key] = carried - before
                sure[key] = value - carried
            shutdown = ("dropped", "shutdown")
            moved = min(float(inflight_records), max(0.0, sure.get(shutdown, 0.0)))
            if moved:
                sure[shutdown] -= moved
                maybe[shutdown] = maybe.get(shutdown, 0.0) + moved
            self._rolled = current
            return self._deltas(sure), self._deltas(maybe)

    def _inherit(self) -> None:
        """In a forked child: the parent accounts for every count inherited with the fork."""
        self._lock = threading.Lock()
        self._rolled = self._current()

    def _has_unrolled(self) -> bool:
        deltas, _ = self._unrolled()
        return bool(deltas)


class _Failed(Exception):
    """The store could not take the batch now; keep it and retry after a backoff."""


@dataclass(slots=True)
class _Isolation:
    """Progress of isolating the bad records of a refused batch."""

    committed: int = 0
    invalid: int = 0
    first_error: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch handed to the store at least once: retried as is, under the same id.

    Its records are the first `size` of the retry buffer; `snapshot` is the self-metric
    state whose increments the batch carries.
    """

    batch_id: str
    size: int
    batch: RollupBatch
    snapshot: dict[_Key, float]


class BatchWriter:
    """Bounded queue plus one background thread writing batches to a `Store`. A `model.Sink`.

    Thread-safe: any thread may submit, flush or close. The thread starts on the first
    submit; the store is opened (via `store_factory`) and migrated inside it, so a dead
    store never blocks or breaks the host.

    Args:
        store_factory: opens the store, e.g. `lambda: open_store(url)`; called again after a
            failure, so a store that comes back is picked up.
        queue_size: records held in memory before new ones are refused (`queue_full`); also
            the bound of the retry buffer while the store is unavailable.
        batch_size: records per transaction.
        flush_interval: seconds the writer waits to fill a batch (the worst-case delay
            before a record is durable, store permitting).
        max_label_sets: cardinality cap per rollup metric.
        backend: label of `store_write_errors_total` before the store was opened once (pass
            `agentwatch.store.backend_for_url(url)`).
        spill_url: URL of the store, which locates its loss files (`store/spill.py`): this
            writer writes one when it exits with counts the store never got, and folds
            those of other processes. Default: the opened store's URL (unknown, and then no
            loss file, if the store never opened).
        audit: append every record to the store's hash-chained audit trail, in the same
            transaction (`agentwatch.audit`, docs/audit.md).
        attribution: the declared attribution dimensions (labels of the attributed rollup
            families, each capped store-wide at its `max_values`).

    Example:
        writer = BatchWriter(lambda: open_store("sqlite:////tmp/aw.db"))
        writer.submit(ExecutionFinished(execution))
        writer.flush()   # True once committed
    """

    def __init__(
        self,
        store_factory: Callable[[], Store],
        *,
        queue_size: int = 10_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.5,
        max_label_sets: int = 2_000,
        backend: str = "unknown",
        spill_url: str | None = None,
        audit: bool = False,
        attribution: tuple[AttributionDimension, ...] = (),
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be >= 1")
        self._factory = store_factory
        self._capacity = queue_size
        self._limit = queue_size  # set to 0 by close(): every later submit is refused
        self._batch_size = batch_size
        self._interval = max(0.0, flush_interval)
        self._builder = RollupBuilder(
            CardinalityGuard(max_label_sets),
            report_invalid=self.record_invalid_value,
            attribution=attribution,
        )
        self._queue: deque[WriterItem] = deque()
        self._pending: deque[WriterItem] = deque()  # owned by the writer thread
        # Reentrant: the SIGTERM handler flushes on the main thread, which the signal may
        # have interrupted inside submit() with this lock held.
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._accepted = 0  # records accepted by submit, ever
        self._resolved = 0  # accepted records committed or dropped since
        self._lost = 0  # accepted records dropped (store_error, invalid, shutdown)
        self._flushers = 0
        self._flush_gen = 0
        self._dirty = False  # self-metric increments waiting for a batch
        self._closed = False
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._inflight: _Prepared | None = None  # written once, outcome unknown (lock held)
        self._spill_url = spill_url
        self._audit = audit
        self._next_fold = 0.0
        self._failures = 0
        self._logged: set[str] = set()
        self._drop_logged: set[str] = set()
        self.stats = WriterStats(backend, queue_size, self._depth)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                after_in_child=functools.partial(_reset_in_child, weakref.ref(self))
            )

    def _after_fork(self) -> None:
        """In a forked child: start over with an empty queue, fresh locks and no thread.

        The parent keeps (and writes) what it had queued; the child must not touch the
        parent's connection, and its own writer thread starts on its first submit.
        """
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._queue = deque()
        self._pending = deque()
        self._accepted = self._resolved = self._lost = self._flushers = 0
        self._thread = None
        self._store = None  # the parent's connection: abandoned, never closed here
        self._inflight = None  # the parent's batch: the parent retries it
        self._failures = 0
        self.stats._inherit()

    def _depth(self) -> int:
        return len(self._queue) + len(self._pending)

    # -- hot path ------------------------------------------------------------------------
    def submit(self, item: WriterItem) -> bool:
        """Queue a record; never blocks, never raises. False = refused (and counted)."""
        try:
            with self._lock:
                queue = self._queue
                n = len(queue)
                if n >= self._limit:  # full, or 0 once closed
                    self._refuse("shutdown" if self._closed else "queue_full")
                    return False
                queue.append(item)
                self._accepted += 1
                if n == 0 or n + 1 == self._batch_size:
                    self._kick()
            return True
        except Exception:  # pragma: no cover - defensive: telemetry must not break the host
            return False

    def _kick(self) -> None:
        """Wake the writer thread, starting it on first use (lock held)."""
        if self._thread is None:
            self._start()
        self._wake.notify()

    def _refuse(self, reason: str) -> None:
        """Count a refused record (lock held); log the first refusal of each reason."""
        self.stats._drop(reason)
        if reason not in self._drop_logged:
            self._drop_logged.add(reason)
            logger.warning(
                "agentwatch: telemetry record dropped (%s); further drops are only counted in "
                "agentwatch_events_dropped_total",
                reason,
            )

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="agentwatch-writer", daemon=True)
        self._thread = thread
        thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- control -------------------------------------------------------------------------
    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every record accepted so far is committed (or `timeout` passes).

        Returns:
            True when all of them are written or were dropped before this call; False on
            timeout or when some were dropped while waiting (store unavailable too long,
            invalid, shutdown). `stats.dropped()` has the full count.
        """
        with self._lock:
            target = self._accepted
            lost_before = self._lost
            if self._resolved >= target:
                return True
            if self._thread is None:  # accepted, but interrupted before submit() kicked it
                self._start()
            self._flushers += 1
            self._flush_gen += 1
            self._wake.notify_all()
            try:
                done = self._done.wait_for(lambda: self._resolved >= target, timeout)
            finally:
                self._flushers -= 1
            return done and self._lost == lost_before

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, then stop the thread. Later submits are refused as `shutdown`.

        Records that could not be written within `timeout` are counted as `shutdown` drops
        and logged. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
            if self._thread is None and self._queue:  # see flush()
                self._start()
            thread = self._thread
        if thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        thread.join(remaining)
        if thread.is_alive():  # stuck in a store call: give up on everything unwritten
            with self._lock:
                self._abandoned = True  # the thread must not account for it (or write) again
                left = len(self._queue) + len(self._pending)
                self._queue.clear()
                self._resolve_dropped(left, "shutdown")
                inflight = self._inflight
            if left:
                self._log_shutdown_loss(left)
            self._spill(inflight)

    def record_internal_error(self, component: str) -> None:
        """Count an error contained in `component`; rolled up with the next batch."""
        self.stats._internal_error(component)
        with self._lock:
            self._dirty = True
            if self._thread is not None:
                self._wake.notify()

    def record_invalid_value(self, field: str) -> None:
        """Count a value `validation.py` repaired; rolled up with the next batch."""
        self.stats._invalid_value(field)
        with self._lock:
            self._dirty = True
            if self._thread is not None:
                self._wake.notify()

    # -- writer thread -------------------------------------------------------------------
    def _resolve_dropped(self, n: int, reason: str) -> None:
        """Account `n` accepted records as dropped (lock held)."""
        if n <= 0:
            return
        self.stats._drop(reason, n)
        self._resolved += n
        self._lost += n
        self._done.notify_all()

    def _log_shutdown_loss(self, n: int) -> None:
        logger.warning(
            "agentwatch: %d telemetry records could not be stored before shutdown "
            '(counted in agentwatch_events_dropped_total{reason="shutdown"})',
            n,
        )

    def _run(self) -> None:
        next_try = 0.0
        backoff = _FIRST_BACKOFF
        seen_gen = 0
        while True:
            with self._lock:
                work = self._wait_for_work(next_try, seen_gen)
                if work is None:
                    break
                seen_gen = self._flush_gen
                if self._pending:  # retrying: drain the queue into the retry buffer
                    self._pending.extend(self._queue)
                    self._queue.clear()
                    excess = len(self._pending) - self._capacity
                    if excess > 0:
                        self._drop_oldest(excess)
                        self._log_once(
                            "store_error_drop",
                            "agentwatch: store unavailable too long, dropping the oldest "
                            "telemetry records (counted in agentwatch_events_dropped_total)",
                        )
                else:
                    take = min(self._batch_size, len(self._queue))
                    self._pending.extend(self._queue.popleft() for _ in range(take))
                self._dirty = False
            try:
                self._drain()
            except _Failed:
                next_try = time.monotonic() + backoff
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            except Exception:  # pragma: no cover - a bug here must not kill the thread
                logger.exception("agentwatch: unexpected error in the background writer")
                self.stats._internal_error("writer")
                next_try = time.monotonic() + backoff
                continue
            backoff = _FIRST_BACKOFF
            next_try = 0.0
        self._shutdown()

    def _drop_oldest(self, excess: int) -> None:
        """Drop the oldest records of the retry buffer as `store_error` (lock held).

        The records of a batch in flight stay: it may have landed, and it is retried as is.
        """
        keep = self._inflight.size if self._inflight is not None else 0
        head = [self._pending.popleft() for _ in range(keep)]
        n = min(excess, len(self._pending))
        for _ in range(n):
            self._pending.popleft()
        self._pending.extendleft(reversed(head))
        self._resolve_dropped(n, "store_error")

    def _wait_for_work(self, next_try: float, seen_gen: int) -> bool | None:
        """Block (lock held) until there is something to write; None when stopping."""
        while True:
            if self._stopping:
                return None
            if self._pending or self._inflight is not None:
                if self._flush_gen != seen_gen or time.monotonic() >= next_try:
                    return True
                self._wake.wait(max(0.0, next_try - time.monotonic()))
                continue
            if self._queue:
                if len(self._queue) >= self._batch_size or self._flushers or self._closed:
                    return True
                deadline = time.monotonic() + self._interval
                while (
                    len(self._queue) < self._batch_size
                    and not self._flushers
                    and not self._stopping
                    and not self._closed
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                return True
            if self._dirty:
                return True
            self._wake.wait()

    def _drain(self) -> None:
        """Write the retry buffer in batches; raise `_Failed` to back off."""
        first = True
        while True:
            with self._lock:
                inflight = self._inflight
                n = inflight.size if inflight else min(self._batch_size, len(self._pending))
                chunk = list(itertools.islice(self._pending, n))
            if not chunk and not first and inflight is None:
                return
            first = False
            committed, invalid = self._write(chunk)
            with self._lock:
                if self._abandoned:
                    return
                for _ in range(committed + invalid):
                    self._pending.popleft()
                self._resolved += committed
                self._done.notify_all()
                self._resolve_dropped(invalid, "invalid")
            if not chunk and inflight is None:
                return

    def _open(self) -> Store:
        store = self._store
        if store is None:
            try:
                store = self._factory()
                if self._spill_url is None:
                    self._spill_url = store.url
                try:
                    store.migrate()
                except BaseException:
                    store.close()
                    raise
            except Exception as exc:
                self._failed(exc)
            self._store = store
            self.stats.backend = store.backend
            self._next_fold = 0.0
        if time.monotonic() >= self._next_fold:
            self._fold_spills(store)
        return store

    def _fold_spills(self, store: Store) -> None:
        """Fold the loss files other processes left for this store into its rollups.

        Never raises: an unreachable store leaves the files for the next look; a file the
        store refuses is set aside. Each file is folded at most once (`Store.fold_spill`).
        """
        self._next_fold = time.monotonic() + _FOLD_INTERVAL
        url = self._spill_url
        if url is None:
            return
        for found in spill.pending(url):
            try:
                batch = self._builder.build((), found.deltas)
                conditional = self._builder.build((), found.conditional)
                store.fold_spill(found.id, batch, found.unless_batch, conditional)
            except StoreUnavailable:
                self._next_fold = 0.0  # look again once the store answers
                return
            except Exception as exc:
                self._log_once(
                    f"spill:{type(exc).__name__}",
                    "agentwatch: cannot fold loss file %s: %s",
                    found.path,
                    exc,
                )
                with contextlib.suppress(OSError):
                    os.replace(found.path, found.path.with_name(found.path.name + ".invalid"))
                continue
            with contextlib.suppress(OSError):
                spill.remove(found)

    def _begin(self, prepared: _Prepared) -> bool:
        """Mark `prepared` as in flight before the store sees it; False once abandoned.

        Under the lock, so `close()` either sees the batch in flight (and records its
        counts as conditional on it) or stops the thread before it writes anything.
        """
        with self._lock:
            if self._abandoned:
                return False
            self._inflight = prepared
            return True

    def _landed(self) -> None:
        with self._lock:
            self._inflight = None

    def _write(self, chunk: list[WriterItem]) -> tuple[int, int]:
        """Write `chunk` in one transaction. Returns (committed, dropped as invalid).

        A batch retried after an outage is the batch already prepared, under its id: if
        the first attempt landed after all, the store applies nothing the second time.
        """
        store = self._open()
        prepared = self._inflight
        if prepared is None:
            deltas, snapshot = self.stats._unrolled()
            try:
                batch = self._build(chunk, deltas)
            except Exception:
                return self._isolate(store, chunk)
            prepared = _Prepared(new_batch_id(), len(chunk), batch, snapshot)
            if not self._begin(prepared):
                return 0, 0
        started = time.perf_counter()
        try:
            store.write_batch(prepared.batch, batch_id=prepared.batch_id)
        except StoreUnavailable as exc:
            self._failed(exc)  # in flight: it may have landed
        except _REFUSED:
            self._landed()  # refused: nothing was written
            return self._isolate(store, chunk)
        except Exception as exc:
            self._failed(exc)
        self._landed()
        self.stats._observe_write(time.perf_counter() - started)
        self.stats._rolled_up(prepared.snapshot, prepared.batch.overflow)
        self._recovered()
        return len(chunk), 0

    def _build(self, items: list[WriterItem], deltas: list[SelfDelta] | None = None) -> RollupBatch:
        """Rows and rollup deltas of `items`, plus their audit entries when the trail is on."""
        batch = self._builder.build(items, deltas or ())
        if self._audit:
            batch.audit = audit.entries_for(items)
        return batch

    def _isolate(self, store: Store, chunk: list[WriterItem]) -> tuple[int, int]:
        """Write a refused batch by halves until the records refused alone are found.

        A record is refused by its type of error (`_REFUSED`), never by how many others
        fail with it: a batch made only of bad records is dropped, not retried forever.
        Bisecting costs about 2*log2(n) transactions per bad record instead of n.

        Returns (committed, dropped as invalid), both from the head of `chunk` in order;
        the rest stays for the retry when the store becomes unavailable midway.
        """
        outcome = _Isolation()
        self._bisect(store, chunk, outcome)
        if outcome.invalid:
            self._log_once(
                f"invalid:{type(outcome.first_error).__name__}",
                "agentwatch: %d telemetry records refused by the store and dropped "
                '(counted in agentwatch_events_dropped_total{reason="invalid"}): %s',
                outcome.invalid,
                outcome.first_error,
            )
        return outcome.committed, outcome.invalid

    def _bisect(self, store: Store, items: list[WriterItem], outcome: _Isolation) -> bool:
        """Write both halves of a refused `items`, recursing into refused halves.

        Returns False to stop (store unavailable after some progress, or abandoned).
        """
        if len(items) <= 1:
            return self._attempt(store, items, outcome) != "stop"
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            result = self._attempt(store, half, outcome)
            if result == "stop" or (result == "refused" and not self._bisect(store, half, outcome)):
                return False
        return True

    def _attempt(self, store: Store, items: list[WriterItem], outcome: _Isolation) -> str:
        """Write `items` as one batch: "ok", "refused" (a lone record is then counted
        invalid), or "stop"; raises `_Failed` when the store fails before any progress."""
        try:
            batch = self._build(items)
        except Exception as exc:
            return self._refused(items, exc, outcome)
        prepared = _Prepared(new_batch_id(), len(items), batch, {})
        if not self._begin(prepared):
            return "stop"
        try:
            store.write_batch(batch, batch_id=prepared.batch_id)
        except StoreUnavailable as exc:
            if outcome.committed or outcome.invalid:
                return "stop"  # keep the rest (this batch in flight) for the retry
            self._failed(exc)
        except Exception as exc:
            self._landed()
            return self._refused(items, exc, outcome)
        self._landed()
        self.stats._rolled_up({}, batch.overflow)
        outcome.committed += len(items)
        return "ok"

    @staticmethod
    def _refused(items: list[WriterItem], exc: Exception, outcome: _Isolation) -> str:
        if len(items) == 1:
            outcome.invalid += 1
            outcome.first_error = outcome.first_error or exc
            return "invalid"
        return "refused"

    def _failed(self, exc: BaseException) -> NoReturn:
        """Count a failed attempt, log the problem once, reset the store, raise `_Failed`."""
        self.stats._write_failed()
        self._failures += 1
        self._log_once(
            f"{type(exc).__name__}:{exc}",
            "agentwatch: cannot write telemetry to the store (%s); keeping up to %d records "
            "in memory and retrying",
            exc,
            self._capacity,
        )
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        raise _Failed from exc

    def _recovered(self) -> None:
        if self._failures:
            logger.warning(
                "agentwatch: store writes recovered after %d failed attempts", self._failures
            )
            self._failures = 0

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        if key in self._logged or len(self._logged) >= _MAX_LOGGED_PROBLEMS:
            return
        self._logged.add(key)
        logger.warning(message, *args)

    def _shutdown(self) -> None:
        with self._lock:
            abandoned = self._abandoned
            left = 0 if abandoned else len(self._queue) + len(self._pending)
            self._queue.clear()
            self._pending.clear()
            self._resolve_dropped(left, "shutdown")
            inflight = self._inflight
        if left:
            self._log_shutdown_loss(left)
        if not abandoned and inflight is None and self._store is not None:
            if self.stats._has_unrolled():
                with contextlib.suppress(Exception):
                    self._write([])  # the last self-metric increments, while the store works
            with self._lock:
                abandoned = self._abandoned
                inflight = self._inflight
        if not abandoned:  # else close() accounted for everything
            self._spill(inflight)
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _spill(self, inflight: _Prepared | None) -> None:
        """Write what the store never got (drops, errors) to a loss file for the next writer.

        Counts carried by a batch in flight (it may have landed) are written as conditional
        on that batch; everything written here is marked rolled up, so it is never sent
        twice. Never raises: a loss file that cannot be written is logged.
        """
        try:
            sure, maybe = self.stats._take_for_spill(
                inflight.snapshot if inflight else None, inflight.size if inflight else 0
            )
            if not sure and not maybe:
                return
            url = self._spill_url
            if url is None:
                raise OSError("the store never opened, so its location is unknown")
            path = spill.write(
                url,
                new_batch_id(),
                sure,
                unless_batch=inflight.batch_id if inflight and maybe else None,
                conditional=maybe,
            )
        except Exception as exc:
            logger.warning(
                "agentwatch: cannot record telemetry losses for the store's metrics (%s); "
                "they are only counted in this process",
                exc,
            )
            return
        logger.info("agentwatch: losses recorded in %s for the next writer to count", path)


def _reset_in_child(ref: weakref.ref[BatchWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._after_fork()


def _close_at_exit(ref: weakref.ref[BatchWriter]) -> None:
    """Flush what the program submitted before it ended, within a bounded time.

    Waits up to `_EXIT_TIMEOUT` seconds while writes succeed, but only
    `_EXIT_TIMEOUT_FAILING` once the store has failed: a store that is down right now is
    unlikely to come back within the exit window, and the program must not hang.
    """
    writer = ref()
    if writer is None or writer._closed:
        return
    started = time.monotonic()
    while not writer.flush(0.05):
        elapsed = time.monotonic() - started
        if elapsed > _EXIT_TIMEOUT or (writer._failures and elapsed > _EXIT_TIMEOUT_FAILING):
            break
    writer.close(0.5)
