"""Opt-in budget enforcement: refused before any request, counted, scoped, never breaking the host.

Real parts: a real SQLite store (and the real PostgreSQL for the shared-store test), real
litellm code paths with `mock_response=`, the real background writer. The refresh thread is
given a long interval so each test drives the reads itself (`Enforcer.refresh()`): no sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch import runtime
from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import AttributionDimension, Budget
from agentwatch.enforcement import Enforcer
from agentwatch.errors import BudgetExceeded
from agentwatch.integrations.litellm import instrument_litellm, uninstrument_litellm
from agentwatch.integrations.litellm_budget import guard_installed
from agentwatch.model import Event, LateEvent
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, StoreUnavailable, open_store
from agentwatch.store_metrics import rollup_families

MESSAGES = [{"role": "user", "content": "hello"}]
DIMENSIONS = {"team": {}, "customer": {"litellm_user": True}}
TEAM = (AttributionDimension("team"), AttributionDimension("customer", litellm_user=True))


class Spy(CustomLogger):
    """Counts what litellm did for a call: its pre-request logging and its success hook."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_calls = 0
        self.successes = 0

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.pre_calls += 1

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.successes += 1

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.successes += 1


class Env:
    """A configured runtime over a real store, with litellm instrumented."""

    def __init__(self, url: str, registry: CollectorRegistry) -> None:
        self.url = url
        self.registry = registry

    @property
    def rt(self) -> runtime.Runtime:
        return runtime.get_runtime()

    @property
    def enforcer(self) -> Enforcer:
        enforcer = self.rt.enforcer
        assert enforcer is not None
        return enforcer

    def configure(self, *budgets: dict[str, Any], **settings: Any) -> Env:
        self.registry = CollectorRegistry()
        runtime.configure(
            registry=self.registry,
            store_url=self.url,
            attribution=DIMENSIONS,
            budgets=list(budgets),
            budget_refresh_interval=3600,
            flush_interval=0.05,
            **settings,
        )
        return self

    def seed(self, cost: float, **attribution: str) -> None:
        """Spend already in the store (another process, an earlier run)."""
        store = open_store(self.url)
        try:
            store.migrate()
            event = Event(
                kind="llm_call", name="gpt-4o-mini", started_at=_now(), model="gpt-4o-mini",
                provider="openai", cost_usd=cost, agent="elsewhere", attribution=attribution,
            )  # fmt: skip
            store.write_batch(RollupBuilder(CardinalityGuard(100), attribution=TEAM).build(
                [LateEvent(event)]
            ))  # fmt: skip
        finally:
            store.close()

    def value(self, name: str, labels: dict[str, str]) -> float | None:
        return self.registry.get_sample_value(name, labels)


def _now() -> float:
    return time.time()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    clean_environment(monkeypatch, tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spy = Spy()
    litellm.callbacks.append(spy)
    instrument_litellm()
    environment = Env(url, CollectorRegistry())
    environment.spy = spy  # type: ignore[attr-defined]
    yield environment
    # Every call that reached litellm's request path gets its hook before the integration
    # is removed: a hook fired later would leave the integration's bookkeeping behind.
    deadline = time.monotonic() + 10
    while spy.successes < spy.pre_calls and time.monotonic() < deadline:
        time.sleep(0.01)
    uninstrument_litellm()
    litellm.callbacks[:] = [cb for cb in litellm.callbacks if cb is not spy]
    runtime.close()


def _search_budget(limit: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"name": "search-daily", "period": "day", "limit_usd": limit, "team": "search",
            "enforce": True, **extra}  # fmt: skip


def _complete(**kwargs: Any) -> Any:
    return litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there", **kwargs
    )


# ----------------------------------------------------------------------------- litellm calls


def test_a_spent_scope_refuses_litellm_calls_before_any_request(env: Env) -> None:
    env.configure(_search_budget(1.0))
    env.seed(1.25, team="search")
    env.enforcer.refresh()
    spy: Spy = env.spy  # type: ignore[attr-defined]
    with agentwatch.track("ranker", team="search"), pytest.raises(BudgetExceeded) as info:
        _complete()
    refused = info.value
    assert (refused.budget, refused.limit_usd, refused.period) == ("search-daily", 1.0, "day")
    assert refused.spend_usd == pytest.approx(1.25)
    assert refused.scope == {"team": "search"}
    message = str(refused)
    assert "'search-daily'" in message and "$1.25 spent of $1.00" in message
    assert "team=search" in message
    assert spy.pre_calls == 0 and spy.successes == 0  # nothing reached litellm's request path

    with agentwatch.track("ranker", team="ads"):  # another team keeps working
        response = _complete()
    assert response.choices[0].message.content == "hello there"
    assert spy.pre_calls == 1


def test_acompletion_and_metadata_scoped_calls_are_refused_too(env: Env) -> None:
    env.configure(_search_budget(1.0))
    env.seed(2.0, team="search")
    env.enforcer.refresh()

    async def main() -> None:
        with pytest.raises(BudgetExceeded):
            await litellm.acompletion(
                model="gpt-4o-mini", messages=MESSAGES, mock_response="x",
                metadata={"team": "search"},
            )  # fmt: skip
        await litellm.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")
        # litellm runs the allowed call's success hook as a task on this loop: let it finish
        # before asyncio.run cancels it (the fixture otherwise waits 10 s for it at teardown).
        spy = env.spy  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while spy.successes < spy.pre_calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    with pytest.raises(BudgetExceeded):  # outside any run, from metadata
        _complete(metadata={"team": "search"})
    with pytest.raises(BudgetExceeded):  # embeddings cost money too
        litellm.embedding(model="text-embedding-3-small", input=["x"], mock_response=[0.1],
                          metadata={"team": "search"})  # fmt: skip


def test_refusals_are_counted_in_process_and_in_the_store_not_as_requests(env: Env) -> None:
    env.configure(_search_budget(1.0))
    env.seed(1.0, team="search")
    env.enforcer.refresh()
    for _ in range(2):
        with agentwatch.track("ranker", team="search"), pytest.raises(BudgetExceeded):
            _complete()
    assert agentwatch.flush()
    labels = {"budget": "search-daily", "agent": "ranker", "model": "gpt-4o-mini",
              "provider": "openai"}  # fmt: skip
    assert env.value("agentwatch_llm_refused_requests_total", labels) == 2
    assert env.value("agentwatch_llm_requests_total", {
        "agent": "ranker", "model": "gpt-4o-mini", "provider": "openai", "status": "failure",
        "team": "search", "customer": ""}) is None  # fmt: skip
    store = open_store(env.url, create=False)
    try:
        families = {f.name: f for f in rollup_families(store.read_rollups())}
    finally:
        store.close()
    (sample,) = families["agentwatch_llm_refused_requests"].samples[:1]
    assert sample.labels == labels and sample.value == 2


def test_own_unwritten_spend_counts_at_once_inside_a_long_run(env: Env) -> None:
    """The runaway loop at 3 a.m.: one run that never ends, nothing written yet."""
    env.configure(_search_budget(0.0001))
    env.enforcer.refresh()
    made = 0
    with agentwatch.track("loop", team="search"), pytest.raises(BudgetExceeded):
        for _ in range(100):
            _complete()
            made += 1
            litellm_hooks_done(env, made)
    assert 1 <= made < 100
    cost = 1.35e-05  # litellm's price of each mocked gpt-4o-mini call
    assert made == pytest.approx(0.0001 / cost, abs=1.5)


def litellm_hooks_done(env: Env, calls: int) -> None:
    """litellm records a sync call on its logging thread: wait until it was counted."""
    deadline = time.monotonic() + 5
    labels = {"agent": "loop", "model": "gpt-4o-mini", "provider": "openai",
              "status": "success", "team": "search", "customer": ""}  # fmt: skip
    while time.monotonic() < deadline:
        if (env.value("agentwatch_llm_requests_total", labels) or 0) >= calls:
            return
        time.sleep(0.005)


def test_written_spend_is_counted_once(env: Env) -> None:
    env.configure(_search_budget(100.0))
    env.enforcer.refresh()
    with agentwatch.track("ranker", team="search"):
        for _ in range(3):
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", cost_usd=1.0)
    state = env.enforcer.states[0]
    assert env.enforcer.estimate(state, _now())[0] == pytest.approx(3.0)  # unwritten
    assert agentwatch.flush()
    assert env.enforcer.estimate(state, _now())[0] == pytest.approx(3.0)  # written since
    env.enforcer.refresh()
    assert env.enforcer.estimate(state, _now())[0] == pytest.approx(3.0)  # read back


def test_the_guard_is_installed_with_the_integration_and_removed_with_it(env: Env) -> None:
    assert guard_installed()
    uninstrument_litellm()
    assert not guard_installed()
    instrument_litellm()
    assert guard_installed()


# --------------------------------------------------------------------- other clients, scopes


def test_check_budget_guards_other_clients_by_scope(env: Env) -> None:
    env.configure(
        _search_budget(1.0),
        {"name": "acme", "period": "day", "limit_usd": 5.0, "customer": "acme", "enforce": True},
        {"name": "alert-only", "period": "day", "limit_usd": 0.5},
    )
    env.seed(1.0, team="search", customer="acme")
    env.enforcer.refresh()
    with pytest.raises(BudgetExceeded, match="search-daily"):
        agentwatch.check_budget("my-model", provider="vllm", team="search")
    agentwatch.check_budget("my-model", provider="vllm", team="ads")  # alert-only never refuses
    agentwatch.check_budget("my-model", provider="vllm", customer="acme")
    with agentwatch.track("job", team="search"), pytest.raises(BudgetExceeded):
        agentwatch.check_budget("my-model", provider="vllm")
    assert (
        env.value(
            "agentwatch_llm_refused_requests_total",
            {"budget": "search-daily", "agent": "job", "model": "my-model", "provider": "vllm"},
        )
        == 1
    )


def test_budgets_scoped_by_model_match_litellms_model_names(env: Env) -> None:
    env.configure({"name": "gemini", "period": "day", "limit_usd": 0.5, "provider": "gemini",
                   "model": "gemini-2.5-flash", "enforce": True})  # fmt: skip
    env.seed(0.0)
    store = open_store(env.url)
    event = Event(kind="llm_call", name="g", started_at=_now(), model="gemini-2.5-flash",
                  provider="gemini", cost_usd=1.0, agent="x")  # fmt: skip
    store.write_batch(RollupBuilder(CardinalityGuard(100)).build([LateEvent(event)]))
    store.close()
    env.enforcer.refresh()
    with pytest.raises(BudgetExceeded):
        litellm.completion(model="gemini/gemini-2.5-flash", messages=MESSAGES, mock_response="x")
    _complete()  # another model


def test_no_enforcing_budget_means_no_enforcer_and_no_check(env: Env) -> None:
    env.configure({"name": "watch-only", "period": "day", "limit_usd": 0.0})
    assert env.rt.enforcer is None
    _complete()
    agentwatch.check_budget("m")


# --------------------------------------------------------------------- failures of enforcement


def _enforcer(budget: Budget, opener: Any, clock: Any, errors: list[str]) -> Enforcer:
    return Enforcer(
        (budget,), "sqlite:////nonexistent/x.db", refresh_interval=1.0,
        report_error=lambda component, exc: errors.append(component),
        open_store=opener, clock=clock, background=False,
    )  # fmt: skip


def test_an_unreadable_store_means_not_enforced_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(url: str) -> Store:
        raise StoreUnavailable("connection refused")

    now = [1_000_000.0]
    errors: list[str] = []
    budget = Budget("b", "day", 0.0, enforce=True)
    enforcer = _enforcer(budget, down, lambda: now[0], errors)
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        assert enforcer.refresh() is False
        assert enforcer.refresh() is False
        enforcer.check("a", "m", "p", {})  # never read: not enforced, the call goes through
        enforcer.check("a", "m", "p", {})
    assert errors == ["budget_enforcement", "budget_enforcement"]  # every failed read
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the store" in line for line in lines) == 1
    assert sum("is not enforced" in line for line in lines) == 1

    closed = _enforcer(Budget("c", "day", 100.0, enforce=True, fail_closed=True), down,
                       lambda: now[0], errors)  # fmt: skip
    closed.refresh()
    with pytest.raises(BudgetExceeded, match="cannot be checked") as info:
        closed.check("a", "m", "p", {})
    assert info.value.unavailable


def test_a_stale_read_stops_enforcing_and_a_new_read_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    store.migrate()
    store.close()
    now = [1_000_000.0]
    healthy = [True]

    def opener(target: str) -> Store:
        if not healthy[0]:
            raise StoreUnavailable("down")
        return open_store(target, create=False)

    errors: list[str] = []
    enforcer = _enforcer(Budget("b", "day", 0.0, enforce=True), opener, lambda: now[0], errors)
    enforcer.url = url
    assert enforcer.refresh()
    with pytest.raises(BudgetExceeded):
        enforcer.check("a", None, None, {})
    healthy[0] = False
    enforcer._store = None  # the connection broke
    now[0] += enforcer.stale_after + 1
    assert not enforcer.refresh()
    enforcer.check("a", None, None, {})  # stale: not enforced
    healthy[0] = True
    assert enforcer.refresh()
    with pytest.raises(BudgetExceeded):
        enforcer.check("a", None, None, {})
    enforcer.close()


def test_an_error_inside_the_check_never_breaks_the_call(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.configure(_search_budget(1.0))

    def broken(*args: Any) -> None:
        raise RuntimeError("bug in enforcement")

    monkeypatch.setattr(env.enforcer, "check", broken)
    with agentwatch.track("job", team="search"):
        assert _complete().choices[0].message.content == "hello there"
    agentwatch.check_budget("m", team="search")
    assert agentwatch.flush()  # contained errors reach the store's rollups with a batch
    store = open_store(env.url, create=False)
    try:
        rows = {(r.sample, tuple(sorted(r.labels.items()))): r.value for r in store.read_rollups()}
    finally:
        store.close()
    key = ("agentwatch_internal_errors_total", (("component", "budget_enforcement"),))
    assert rows.get(key) == 2


# ---------------------------------------------------------------- several processes, one store


def test_another_processs_unwritten_spend_is_counted(backend_url: str) -> None:
    """Two enforcers (two processes' worth: distinct owners, connections, counters) share a
    $10 budget; each recorded spend the store does not hold yet (an open run)."""
    store = open_store(backend_url)
    store.migrate()
    store.close()
    budget = Budget("shared", "day", 10.0, attributes=(("team", "search"),), enforce=True)
    first = Enforcer((budget,), backend_url, refresh_interval=60, background=False)
    second = Enforcer((budget,), backend_url, refresh_interval=60, background=False)
    try:
        first.spent(_event(6.0))
        second.spent(_event(3.0))
        assert first.refresh() and second.refresh() and first.refresh()
        second.check("a", "m", "p", {"team": "search"})  # 6 + 3 < 10
        second.spent(_event(1.5))
        with pytest.raises(BudgetExceeded):  # its own spend counts at once: 6 + 4.5
            second.check("a", "m", "p", {"team": "search"})
        first.check("a", "m", "p", {"team": "search"})  # not published yet: 6 + 3
        assert second.refresh() and first.refresh()
        with pytest.raises(BudgetExceeded):  # once published and read: 6 + 4.5
            first.check("a", "m", "p", {"team": "search"})
        first.check("a", "m", "p", {"team": "ads"})
    finally:
        first.close()
        second.close()
    reopened = open_store(backend_url, create=False)
    try:
        assert reopened.others_pending("shared", first.states[0].start, "nobody", 0) == 0
    finally:
        reopened.close()


def _event(cost: float) -> Event:
    return Event(kind="llm_call", name="m", started_at=_now(), model="m", provider="p",
                 cost_usd=cost, agent="a", attribution={"team": "search"})  # fmt: skip


def test_a_new_period_starts_from_what_this_process_wrote_in_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    store.migrate()
    store.close()
    day = 86_400.0
    now = [100 * day + 3_600]
    budget = Budget("d", "day", 5.0, enforce=True)
    enforcer = Enforcer((budget,), url, refresh_interval=60, clock=lambda: now[0], background=False)
    try:
        event = _event(6.0)
        event.started_at = now[0]
        enforcer.spent(event)
        assert enforcer.refresh()
        with pytest.raises(BudgetExceeded):
            enforcer.check("a", "m", "p", {})
        now[0] = 101 * day + 60  # midnight passed, no read since
        enforcer.check("a", "m", "p", {})
    finally:
        enforcer.close()
