"""Budget enforcement: refuse new LLM calls in a budget's scope once its period's spend is spent.

Opt-in per budget (`enforce: true`). With `instrument_litellm()`, every litellm call is checked
before any request leaves the process and raises `agentwatch.BudgetExceeded` when refused;
`agentwatch.check_budget(...)` does the same for any other client. Refused calls are counted
in `agentwatch_llm_refused_requests_total{budget,agent,model,provider}` (in-process, and in
the store for `agentwatch serve`).

What a process counts as a budget's spend in the current calendar period:

    store spend          the exact sum the store holds (refreshed every
                         `budget_refresh_interval` seconds by a background thread)
  + others' unwritten    what other enforcing processes recorded but not written yet (each
                         publishes it in `budget_pending` at every refresh and after each of
                         its writes; rows older than `10 x interval` are ignored)
  + own written since    this process' spend the store took after the last refresh started
  + own unwritten        this process' spend not in the store yet: calls inside runs still
                         open (a run's calls are written when it ends), records in its queue

Its own spend counts the moment a call is recorded; the other processes' within about two
refresh intervals. Hence the documented worst-case overshoot, for N processes sharing a
budget: what all of them together spend in `2 x budget_refresh_interval` (plus one store
query), plus the cost of the calls already in flight when the limit is reached (a call is
checked before its cost is known: at most one per concurrent caller). Counting is
conservative in between: a write can be seen twice for a moment, never not at all, so a call
may be refused at most that early, never let through late.

Enforcement never breaks the host on its own failure: a store that cannot be read means the
budget is not enforced (one log line, `agentwatch_internal_errors_total{component=
"budget_enforcement"}` counts the failed reads), unless the budget says `fail_closed: true`,
which refuses its calls until the store answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentwatch.budgets import in_scope, period_bounds, store_spend
from agentwatch.config import Budget
from agentwatch.errors import BudgetExceeded, StoreNotFound
from agentwatch.rollups import EVENT_COLUMNS, RollupBatch

if TYPE_CHECKING:
    from agentwatch.model import Event
    from agentwatch.store.base import Store

logger = logging.getLogger("agentwatch")

#: Longest a first check waits for the first read of the store (once per process).
FIRST_READ_WAIT = 5.0
#: Pending rows of other processes are ignored once older than this many refresh intervals.
PENDING_TTL_INTERVALS = 10
#: Pending rows are deleted from the store once this old (a process that died).
PENDING_RETENTION = 86_400.0

_AGENT, _KIND, _STARTED, _MODEL, _PROVIDER, _COST, _ATTRIBUTION = (
    EVENT_COLUMNS.index(name)
    for name in ("agent", "kind", "started_at", "model", "provider", "cost_usd", "attribution")
)


@dataclass(slots=True)
class _Snapshot:
    """What one refresh read: the period, the store's spend, others' unwritten spend."""

    period_start: float
    store: float
    others: float
    own_committed_at_start: float
    taken_at: float


class _BudgetState:
    """One enforcing budget's counters in this process (guarded by the enforcer's lock)."""

    __slots__ = (
        "budget", "committed", "end", "pending", "published", "published_start", "snapshot",
        "start", "unenforced_logged",
    )  # fmt: skip

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.start = self.end = 0.0
        self.pending: dict[float, float] = {}  # period start -> own spend not written yet
        self.committed: dict[float, float] = {}  # period start -> own spend written
        self.snapshot: _Snapshot | None = None
        self.published = 0.0
        self.published_start = 0.0
        self.unenforced_logged = False

    def period_of(self, ts: float) -> float:
        """Start of the budget's period containing `ts` (the current one is cached)."""
        if self.start <= ts < self.end:
            return self.start
        start, end = period_bounds(self.budget, ts)
        if end > self.end:
            self.start, self.end = start, end
        return start


def owner_id() -> str:
    """This process' name in `budget_pending`: host, pid and a random part."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Enforcer:
    """The enforcing budgets of one process: local counters, a refresh thread, the check.

    Thread-safe. `spent` runs on the hot path of every recorded LLM call (a dict update
    per matching budget), `committed` in the writer thread after each write, `check`
    before each call (no I/O: it reads what the refresh thread last read).

    Args:
        budgets: the budgets with `enforce: true`.
        store_url: the store every process writes to.
        refresh_interval: seconds between two reads of the store's spend.
        report_error: counts a failed read (`Runtime.internal_error`).
        open_store: opens the store (tests inject failures).
        clock: Unix time (tests move it).
        background: read the store on a thread of its own every `refresh_interval` seconds;
            False leaves every read to the caller (`refresh()`), for deterministic tests.
    """

    def __init__(
        self,
        budgets: tuple[Budget, ...],
        store_url: str,
        *,
        refresh_interval: float = 5.0,
        report_error: Callable[[str, BaseException | None], None] | None = None,
        open_store: Callable[[str], Store] | None = None,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.states = tuple(_BudgetState(b) for b in budgets)
        self.url = store_url
        self.interval = refresh_interval
        self.stale_after = max(3 * refresh_interval, refresh_interval + 5.0)
        self.owner = owner_id()
        self._report = report_error
        self._opener = open_store
        self._clock = clock
        self._background = background
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._store: Store | None = None
        self._failing = False
        self._stopped_waiting = False
        self._last_prune = 0.0
        self.needs_model = any(s.budget.model or s.budget.provider for s in self.states)
        self._needs_attribution = any(s.budget.attributes for s in self.states)

    # -- recording (hot path and writer thread) --------------------------------------------
    def spent(self, event: Event) -> None:
        """Count a recorded LLM call's cost as this process' unwritten spend."""
        cost = event.cost_usd
        if not cost:
            return
        for state in self.states:
            budget = state.budget
            if not in_scope(budget, event.agent, event.model, event.provider, event.attribution):
                continue
            with self._lock:
                start = state.period_of(event.started_at)
                state.pending[start] = state.pending.get(start, 0.0) + cost

    def committed(self, batch: RollupBatch) -> None:
        """A batch of this process reached the store: move its spend from unwritten to written.

        Called by the store after the commit (`Store.add_commit_listener`). Never raises.
        """
        moved = False
        try:
            for row in (*batch.events, *batch.late_events, *batch.sampled_events):
                cost = row[_COST]
                if not cost or row[_KIND] != "llm_call":
                    continue
                attribution: Mapping[str, str] = {}
                if self._needs_attribution and row[_ATTRIBUTION] not in (None, "{}"):
                    attribution = json.loads(row[_ATTRIBUTION])
                for state in self.states:
                    budget = state.budget
                    if not in_scope(budget, row[_AGENT], row[_MODEL], row[_PROVIDER], attribution):
                        continue
                    with self._lock:
                        start = state.period_of(row[_STARTED])
                        state.pending[start] = max(0.0, state.pending.get(start, 0.0) - cost)
                        state.committed[start] = state.committed.get(start, 0.0) + cost
                    moved = True
        except Exception as exc:  # pragma: no cover - defensive: never fail the writer
            self._error(exc)
        if moved:
            self._wake.set()  # publish the smaller unwritten amount without waiting

    # -- the check --------------------------------------------------------------------------
    def check(
        self,
        agent: str,
        model: str | None,
        provider: str | None,
        attribution: Mapping[str, str],
    ) -> None:
        """Raise `BudgetExceeded` when a budget in scope of this call is spent.

        Raises:
            BudgetExceeded: the first enforcing budget in scope whose current period's
                spend reached its limit (or, `fail_closed`, whose spend cannot be read).
        """
        self._ensure_thread()
        now = self._clock()
        for state in self.states:
            budget = state.budget
            if not in_scope(budget, agent, model, provider, attribution):
                continue
            if not self._ready.is_set() and not self._stopped_waiting:
                # Once per process: the first read is under way (the thread starts with
                # the runtime); a store that hangs must not delay every call.
                self._stopped_waiting = not self._ready.wait(FIRST_READ_WAIT)
            spend, fresh = self.estimate(state, now)
            if not fresh:
                if budget.fail_closed:
                    raise BudgetExceeded(
                        budget.name, budget.limit_usd, spend, budget.period, budget.scope(),
                        unavailable=True,
                    )  # fmt: skip
                self._unenforced(state)
                continue
            if spend >= budget.limit_usd:
                raise BudgetExceeded(
                    budget.name, budget.limit_usd, spend, budget.period, budget.scope()
                )

    def estimate(self, state: _BudgetState, now: float) -> tuple[float, bool]:
        """The budget's spend in the current period as this process sees it, and whether
        the store part is fresh (read within `stale_after` seconds)."""
        with self._lock:
            start = state.period_of(now)
            pending = state.pending.get(start, 0.0)
            committed = state.committed.get(start, 0.0)
            snapshot = state.snapshot
        fresh = snapshot is not None and now - snapshot.taken_at <= self.stale_after
        if snapshot is not None and snapshot.period_start == start:
            base = snapshot.store + snapshot.others + committed - snapshot.own_committed_at_start
        else:  # a new period began since the last read: only what this process wrote
            base = committed
        return max(0.0, base) + pending, fresh

    def _unenforced(self, state: _BudgetState) -> None:
        if state.unenforced_logged:
            return
        state.unenforced_logged = True
        logger.warning(
            "agentwatch: budget %r is not enforced: its spend could not be read from the store "
            "for more than %.0f s; calls in its scope go through until it can "
            "(set fail_closed: true to refuse them instead)",
            state.budget.name,
            self.stale_after,
        )

    # -- the refresh thread --------------------------------------------------------------------
    def start(self) -> None:
        """Start the refresh thread (also started by the first check)."""
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if not self._background or (self._thread is not None and self._pid == os.getpid()):
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # forked: the parent's counters are not ours
                self._reset_after_fork()
            thread = threading.Thread(target=self._run, name="agentwatch-budgets", daemon=True)
            self._thread = thread
            thread.start()

    def _reset_after_fork(self) -> None:
        self._pid = os.getpid()
        self.owner = owner_id()
        self._store = None  # the parent's connection: abandoned, never closed here
        self._ready = threading.Event()
        self._wake = threading.Event()
        for state in self.states:
            state.pending.clear()
            state.committed.clear()
            state.snapshot = None
            state.published = 0.0

    def _run(self) -> None:
        next_read = 0.0
        while not self._stopped.is_set():
            delay = max(0.0, next_read - time.monotonic())
            if delay:
                self._wake.wait(delay)
            self._wake.clear()
            if self._stopped.is_set():
                break
            if time.monotonic() >= next_read:
                self.refresh()
                next_read = time.monotonic() + self.interval
            else:
                self._publish()

    def refresh(self) -> bool:
        """Read every budget's spend from the store and publish this process' unwritten spend.

        Returns False (and counts, logs once) when the store cannot be read.
        """
        now = self._clock()
        try:
            try:
                store = self._open()
            except StoreNotFound:
                store = None
            if store is None:  # no store yet: nothing was ever written
                for state in self.states:
                    start, _ = period_bounds(state.budget, now)
                    with self._lock:
                        committed = state.committed.get(start, 0.0)
                    state.snapshot = _Snapshot(start, 0.0, 0.0, committed, now)
            else:
                for state in self.states:
                    self._refresh_one(store, state, now)
                if now - self._last_prune > 3600:
                    store.forget_pending(older_than=now - PENDING_RETENTION)
                    self._last_prune = now
        except Exception as exc:
            self._failed(exc)
            return False
        finally:
            self._ready.set()
        if self._failing:
            self._failing = False
            logger.warning("agentwatch: budget enforcement reads the store again")
            for state in self.states:
                state.unenforced_logged = False
        return True

    def _refresh_one(self, store: Store, state: _BudgetState, now: float) -> None:
        budget = state.budget
        start, end = period_bounds(budget, now)
        with self._lock:
            # Taken before the reads: a write landing in between is counted twice for a
            # moment (refuse a little early), never missed (let through late).
            committed = state.committed.get(start, 0.0)
            pending = state.pending.get(start, 0.0)
            for counts in (state.pending, state.committed):  # past periods are done
                for old in [p for p in counts if p < start]:
                    del counts[old]
        self._publish_one(store, state, start, pending, now)
        others = store.others_pending(
            budget.name, start, self.owner, now - PENDING_TTL_INTERVALS * self.interval
        )
        spend = store_spend(store, budget, start, end)
        state.snapshot = _Snapshot(start, spend, others, committed, now)

    def _publish(self) -> None:
        """Publish changed unwritten amounts (after this process' writes)."""
        now = self._clock()
        try:
            try:
                store = self._open()
            except StoreNotFound:
                return
            if store is None:
                return
            for state in self.states:
                with self._lock:
                    start = state.period_of(now)
                    pending = state.pending.get(start, 0.0)
                self._publish_one(store, state, start, pending, now)
        except Exception as exc:
            self._failed(exc)

    def _publish_one(
        self, store: Store, state: _BudgetState, start: float, pending: float, now: float
    ) -> None:
        if pending == state.published == 0.0 and state.published_start in (0.0, start):
            return  # nothing unwritten, nothing published: idle processes write nothing
        store.publish_pending(self.owner, state.budget.name, start, pending, now)
        state.published, state.published_start = pending, start

    def _open(self) -> Store | None:
        store = self._store
        if store is not None:
            return store
        if self._opener is not None:
            store = self._opener(self.url)
        else:
            from agentwatch.store import open_store

            store = open_store(self.url, create=False)
        try:
            store.migrate()
        except BaseException:
            with contextlib.suppress(Exception):
                store.close()
            raise
        self._store = store
        return store

    def _failed(self, exc: BaseException) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        self._error(exc)
        if not self._failing:
            self._failing = True
            logger.warning(
                "agentwatch: budget enforcement cannot read the store (%s); budgets are not "
                "enforced once their last read is %.0f s old, except fail_closed ones, which "
                "refuse calls until it answers",
                type(exc).__name__,
                self.stale_after,
            )

    def _error(self, exc: BaseException) -> None:
        if self._report is not None:
            with contextlib.suppress(Exception):
                self._report("budget_enforcement", exc)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and withdraw this process' published unwritten spend."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)
        store, self._store = self._store, None
        if store is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                if any(s.published for s in self.states):
                    store.forget_pending(owner=self.owner)
            with contextlib.suppress(Exception):
                store.close()


def make_enforcer(
    budgets: tuple[Budget, ...],
    store_url: str,
    refresh_interval: float,
    report_error: Callable[[str, BaseException | None], None] | None,
) -> Enforcer | None:
    """The process' enforcer, or None when no budget enforces (the common case)."""
    enforcing = tuple(b for b in budgets if b.enforce)
    if not enforcing:
        return None
    return Enforcer(
        enforcing, store_url, refresh_interval=refresh_interval, report_error=report_error
    )


def _caller() -> tuple[str, dict[str, str]]:
    """The agent label and attribution of calls made here (the innermost run's)."""
    from agentwatch import context

    frame = context.current_frame()
    if frame is None:
        return "none", {}
    return frame.agent, frame.execution.attribution


def check_budget(
    model: str | None = None,
    *,
    provider: str | None = None,
    agent: str | None = None,
    **attributes: Any,
) -> None:
    """Refuse an LLM call about to be made if an enforcing budget in its scope is spent.

    For clients litellm does not see (with `instrument_litellm()` litellm calls are checked
    already). The call's scope is its model and provider, the current run's agent and
    attribution values, overridden by `agent` and `attributes` (`team="search"`). Budgets
    without `enforce: true` never refuse; a budget whose spend cannot be read lets the call
    through (logged once) unless it is `fail_closed`.

    Raises:
        BudgetExceeded: the call must not be made; the refusal is counted in
            `agentwatch_llm_refused_requests_total`.

    Example:
        >>> agentwatch.check_budget("my-model", provider="vllm", team="search")
        >>> response = my_client.generate(...)
    """
    from agentwatch.runtime import get_runtime

    rt = get_runtime()
    enforcer = rt.enforcer
    if enforcer is None or not rt.enabled:
        return
    who = agent or "none"
    try:
        frame_agent, values = _caller()
        who = agent or frame_agent
        if attributes and rt.attribution:
            values = rt.attribution.resolve(values, attributes, rt.metrics.count_invalid_value)
        enforcer.check(who, model, provider, values)
    except BudgetExceeded as refused:
        count_refusal(rt, refused, who, model, provider)
        raise
    except Exception as exc:  # enforcement must never break the host on its own failure
        rt.internal_error("budget_enforcement", exc)


def count_refusal(
    rt: Any, refused: BudgetExceeded, agent: str, model: str | None, provider: str | None
) -> None:
    """Count a refused call in-process and in the store (`agentwatch_llm_refused_requests`)."""
    from agentwatch.metrics import UNKNOWN
    from agentwatch.model import Refusal

    try:
        labels = (refused.budget, agent, model or UNKNOWN, provider or UNKNOWN)
        rt.metrics.observe_refusal(*labels)
        rt.submit(Refusal(*labels))
    except Exception as exc:
        rt.internal_error("budget_enforcement", exc)
