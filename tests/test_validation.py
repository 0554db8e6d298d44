"""One rule for bad values (validation.py): repaired per field, counted, never poisonous.

Hostile values go in through the public capture API (and litellm's hook, and a BatchWriter
used directly) and come out through the real components: the SQLite file or the PostgreSQL
schema behind the real BatchWriter, the in-process `/metrics` endpoint, `agentwatch serve`'s
`/metrics`, each scrape parsed by prometheus_client's text and OpenMetrics parsers.
"""

from __future__ import annotations

import enum
import math
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

import agentwatch
from agentwatch import contract, validation
from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Settings
from agentwatch.model import Event, Execution, ExecutionFinished, LateEvent
from agentwatch.rollups import RollupBuilder
from agentwatch.server import make_server, serve_in_thread
from agentwatch.store import Store, open_store
from agentwatch.writer import BatchWriter

SURROGATE = b"r-\xff".decode("utf-8", "surrogateescape")  # "r-\udcff"
REPAIRED = "r-\ufffd"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
NOW = time.time()


class Counted:
    """A `validation.Report` that remembers what it was told."""

    def __init__(self) -> None:
        self.fields: list[str] = []

    def __call__(self, field: str) -> None:
        self.fields.append(field)


@pytest.fixture
def runtime_store(backend_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[
    tuple[str, CollectorRegistry]
]:  # fmt: skip
    """The real runtime writing to a real store (each backend), with a fresh registry."""
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    registry = CollectorRegistry()
    agentwatch.configure(store_url=backend_url, registry=registry)
    yield backend_url, registry
    agentwatch.close()


def _scrape(url: str, accept: str | None = None) -> tuple[int, str]:
    headers = {"Accept": accept} if accept else {}
    response = requests.get(url, headers=headers, timeout=10)
    return response.status_code, response.text


def _parsed(text: str, openmetrics: bool) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    families = parse_openmetrics(text) if openmetrics else parse_text(text)
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def _rollup(store: Store, sample: str, **labels: str) -> float | None:
    for row in store.read_rollups():
        if row.sample == sample and row.labels == labels:
            return row.value
    return None


# -- the rule, field by field ---------------------------------------------------------------


def _event(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "kind": "llm_call", "name": "chat", "started_at": NOW, "duration": 0.5,
        "model": "gpt-4o-mini", "provider": "openai", "input_tokens": 10,
        "output_tokens": 20, "cost_usd": 0.01,
    }  # fmt: skip
    values.update(fields)
    return Event(**values)


@pytest.mark.parametrize(
    ("field", "bad", "repaired"),
    [
        ("name", SURROGATE, REPAIRED),
        ("name", "a\x00b", "a\ufffdb"),
        ("name", None, "unknown"),
        ("name", 42, "42"),
        ("model", "\ud800gpt", "\ufffdgpt"),
        ("provider", "open\x00ai", "open\ufffdai"),
        ("error_type", SURROGATE, REPAIRED),
        ("error_message", "boom \udcc3\x00", "boom \ufffd\ufffd"),
        ("input_tokens", -1000, 0),
        ("input_tokens", 10**12, 0),
        ("output_tokens", math.nan, 0),
        ("output_tokens", 2.5, 0),
        ("cached_tokens", True, 0),
        ("reasoning_tokens", "12", 0),
        ("cost_usd", -0.5, None),
        ("cost_usd", math.inf, None),
        ("cost_usd", math.nan, None),
        ("cost_usd", 10_000.0, None),
        ("duration", -1.0, None),
        ("duration", math.nan, None),
        ("duration", 31 * 86_400.0, None),
        ("time_to_first_token", math.inf, None),
    ],
)
def test_each_bad_event_field_is_repaired_and_counted_once(
    field: str, bad: Any, repaired: Any
) -> None:
    counted = Counted()
    event = validation.clean_event(_event(**{field: bad}), counted)
    assert getattr(event, field) == repaired
    assert counted.fields == [field]
    validation.clean_event(event, counted)  # idempotent: a clean record counts nothing
    assert counted.fields == [field]


@pytest.mark.parametrize(  # NOW moves: a fixed id keeps test ids equal across processes
    "bad", [math.nan, math.inf, -1.0, pytest.param(NOW * 1000, id="now-in-ms"), None, "yesterday"]
)
def test_an_invalid_event_start_becomes_now_minus_the_duration(bad: Any) -> None:
    counted = Counted()
    before = time.time()
    event = validation.clean_event(_event(started_at=bad, duration=2.0), counted)
    assert before - 2.0 <= event.started_at <= time.time() - 2.0
    assert counted.fields == ["started_at"]


def test_valid_values_pass_untouched_and_uncounted() -> None:
    class Model(enum.StrEnum):
        MINI = "gpt-4o-mini"

    counted = Counted()
    event = _event(name="ünïcødé ✓", model=Model.MINI, input_tokens=10.0, cost_usd=0,
                   duration=0.0, time_to_first_token=None, started_at=0.0)  # fmt: skip
    validation.clean_event(event, counted)
    assert counted.fields == []
    assert event.model == "gpt-4o-mini" and type(event.model) is str
    assert event.input_tokens == 10 and type(event.input_tokens) is int
    assert event.name == "ünïcødé ✓" and event.started_at == 0.0


def test_an_execution_keeps_a_consistent_time_range() -> None:
    counted = Counted()
    ex = Execution(id="e1", agent="a", started_at=math.nan, ended_at=NOW, status="completed")
    validation.clean_execution(ex, counted)
    assert (ex.started_at, ex.ended_at, counted.fields) == (NOW, NOW, ["started_at"])
    counted = Counted()
    ex = Execution(id="e2", agent="a", started_at=NOW, ended_at=NOW - 5, status="completed")
    validation.clean_execution(ex, counted)
    assert (ex.ended_at, ex.duration, counted.fields) == (NOW, 0.0, ["ended_at"])
    counted = Counted()
    ex = Execution(id="e3", agent="a", started_at=NOW, ended_at=math.inf, status="completed")
    validation.clean_execution(ex, counted)
    assert (ex.ended_at, counted.fields) == (NOW, ["ended_at"])


def test_payload_strings_and_keys_are_repaired_and_the_rest_kept() -> None:
    counted = Counted()
    value = {"ok": [1, 2.5, None, True], SURROGATE: {"deep": ["x\x00", "fine"]}}
    fixed = validation.payload(value, "attributes", counted)
    assert fixed == {"ok": [1, 2.5, None, True], REPAIRED: {"deep": ["x\ufffd", "fine"]}}
    assert counted.fields == ["attributes"]
    clean = {"a": ["b", {"c": 1}]}
    assert validation.payload(clean, "attributes", counted) is clean
    assert counted.fields == ["attributes"]


def test_every_counted_field_is_in_the_contract() -> None:
    counted = Counted()
    bad_event = _event(
        name=SURROGATE, agent=SURROGATE, model=SURROGATE, provider=SURROGATE,
        error_type=SURROGATE, error_message=SURROGATE, input_tokens=-1, output_tokens=-1,
        cached_tokens=-1, reasoning_tokens=-1, cost_usd=-1.0, duration=-1.0,
        time_to_first_token=-1.0, started_at=math.nan, execution_id=SURROGATE,
        attributes={"k": SURROGATE},
    )  # fmt: skip
    ex = Execution(
        id=SURROGATE, agent=SURROGATE, started_at=NOW, ended_at=math.nan, parent_id=None,
        error_type=SURROGATE, error_message=SURROGATE, arguments={"q": SURROGATE},
        attributes={SURROGATE: 1}, status="failed",
    )  # fmt: skip
    ex.events.append(bad_event)
    validation.clean_item(ExecutionFinished(ex), counted)
    assert set(counted.fields) == set(contract.INVALID_VALUE_FIELDS)


def test_the_rollup_builder_counts_a_repair_once_across_retried_builds() -> None:
    counted = Counted()
    builder = RollupBuilder(CardinalityGuard(100), report_invalid=counted)
    item = LateEvent(_event(input_tokens=-1000, attributes={"k": SURROGATE}))
    first = builder.build([item])
    second = builder.build([item])  # what the writer does after a failed transaction
    assert sorted(counted.fields) == ["attributes", "input_tokens"]
    assert first.rollups == second.rollups
    assert all(row[2] >= 0 for row in first.rollups)  # (sample, labels, value, exemplar...)


# -- through the real components ------------------------------------------------------------


def test_a_surrogate_agent_name_is_stored_and_never_breaks_the_scrape(
    runtime_store: tuple[str, CollectorRegistry],
) -> None:
    url, registry = runtime_store
    server, _thread = agentwatch.start_http_server(0, registry=registry)
    try:
        with agentwatch.track(SURROGATE):
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=5)
        for i in range(100):
            with agentwatch.track("after"):
                agentwatch.record_tool_call("search", duration=0.01 * i)
        assert agentwatch.flush(timeout=20) is True
        metrics_url = f"http://127.0.0.1:{server.server_port}/metrics"
        for accept, openmetrics in ((None, False), (OPENMETRICS, True)):
            status, text = _scrape(metrics_url, accept)
            assert status == 200
            samples = _parsed(text, openmetrics)
            key = frozenset({("agent", REPAIRED), ("status", "completed")})
            assert samples[("agentwatch_executions_total", key)] == 1
            key = frozenset({("field", "agent")})
            assert samples[("agentwatch_invalid_values_total", key)] == 1
    finally:
        server.shutdown()
        server.server_close()
    with open_store(url) as store:
        agents = [e["agent_name"] for e in store.get_executions(limit=None)]
        assert sorted(set(agents)) == ["after", REPAIRED] and len(agents) == 101
        assert _rollup(store, "agentwatch_invalid_values_total", field="agent") == 1
        assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") is None


def test_negative_tokens_never_make_a_counter_go_down(
    runtime_store: tuple[str, CollectorRegistry],
) -> None:
    url, registry = runtime_store
    labels = {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "type": "input"}
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=100)
    assert agentwatch.flush(timeout=10) is True
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=-1000)
    assert agentwatch.flush(timeout=10) is True

    assert registry.get_sample_value("agentwatch_llm_tokens_total", labels) == 100
    requests_labels = {**labels, "status": "success"}
    del requests_labels["type"]
    assert registry.get_sample_value("agentwatch_llm_requests_total", requests_labels) == 2
    field = {"field": "input_tokens"}
    assert registry.get_sample_value("agentwatch_invalid_values_total", field) == 1

    served = make_server(Settings(store_url=url), port=0)
    serve_in_thread(served)
    try:
        for accept, openmetrics in ((None, False), (OPENMETRICS, True)):
            status, text = _scrape(f"{served.url}/metrics", accept)
            assert status == 200
            samples = _parsed(text, openmetrics)  # the OpenMetrics parser rejects a negative
            key = frozenset(labels.items())
            assert samples[("agentwatch_llm_tokens_total", key)] == 100
            key = frozenset(requests_labels.items())
            assert samples[("agentwatch_llm_requests_total", key)] == 2
            key = frozenset(field.items())
            assert samples[("agentwatch_invalid_values_total", key)] == 1
            assert all(value >= 0 for value in samples.values())
    finally:
        served.shutdown()
        served.server_close()
        served.access.close()


class _Hostile(Exception):
    pass


def test_every_entry_point_repairs_text_and_keeps_the_whole_run(
    runtime_store: tuple[str, CollectorRegistry],
) -> None:
    url, registry = runtime_store
    agentwatch.configure(store_url=url, registry=registry, capture_arguments=True)

    @agentwatch.observe(name="tool\x00" + SURROGATE, kind="tool")
    def lookup(query: str) -> str:
        return query

    @agentwatch.observe(name="agent\x00")
    def agent(question: str) -> None:
        lookup(SURROGATE)
        agentwatch.record_llm_call(
            "model" + SURROGATE, provider="prov\x00", status="failure",
            error_type="Err" + SURROGATE, input_tokens=3, **{"k" + SURROGATE: "v\x00"},
        )  # fmt: skip
        agentwatch.record_tool_call("search" + SURROGATE, duration=0.1, note=SURROGATE)
        agentwatch.record_event("memory", "recall" + SURROGATE, hits=SURROGATE)
        raise _Hostile("message " + SURROGATE + "\x00 end")

    with pytest.raises(_Hostile), agentwatch.track("outer", tag=SURROGATE):
        agent(SURROGATE)
    assert agentwatch.flush(timeout=10) is True

    with open_store(url) as store:
        runs = {e["agent_name"]: e for e in store.get_executions(limit=None, kind=None)}
        assert set(runs) == {"outer", "agent\ufffd", "tool\ufffd" + REPAIRED}
        run = store.get_execution(runs["agent\ufffd"]["id"])
        assert run is not None
        assert run["status"] == "failed" and run["error_type"] == "_Hostile"
        assert run["error_message"] == "message " + REPAIRED + "\ufffd end"
        assert run["arguments"] == {"question": REPAIRED}
        assert runs["outer"]["attributes"] == {"tag": REPAIRED}
        events = {(e["kind"], e["name"]): e for e in run["events"]}
        llm = events[("llm_call", "model" + REPAIRED)]
        assert (llm["model"], llm["provider"]) == ("model" + REPAIRED, "prov\ufffd")
        assert llm["error_type"] == "Err" + REPAIRED and llm["input_tokens"] == 3
        assert llm["attributes"] == {"k" + REPAIRED: "v\ufffd"}
        assert events[("tool_call", "search" + REPAIRED)]["attributes"] == {"note": REPAIRED}
        assert events[("tool_call", "tool\ufffd" + REPAIRED)]["status"] == "success"
        assert events[("memory", "recall" + REPAIRED)]["attributes"] == {"hits": REPAIRED}
        assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") is None
        assert _rollup(store, "agentwatch_invalid_values_total", field="agent") == 2
        assert _rollup(store, "agentwatch_invalid_values_total", field="attributes") == 4
        assert _rollup(store, "agentwatch_invalid_values_total", field="arguments") == 2
    value = registry.get_sample_value
    assert value("agentwatch_llm_errors_total", {
        "agent": "agent\ufffd", "model": "model" + REPAIRED, "provider": "prov\ufffd",
        "error_type": "Err" + REPAIRED}) == 1  # fmt: skip
    assert value("agentwatch_invalid_values_total", {"field": "name"}) == 3
    assert value("agentwatch_invalid_values_total", {"field": "error_message"}) == 2


def test_absurd_numbers_are_repaired_per_field_and_the_rest_is_stored(
    runtime_store: tuple[str, CollectorRegistry],
) -> None:
    url, registry = runtime_store
    with agentwatch.track("numbers") as run:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10**12, output_tokens=7,
            cost_usd=1e9, duration=-5.0, time_to_first_token=math.inf,
            started_at=math.nan,
        )  # fmt: skip
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=11, started_at=NOW * 1000,
            cost_usd=math.nan, duration=0.25,
        )  # fmt: skip
        agentwatch.record_tool_call("search", duration=math.nan, started_at=math.inf)
    assert agentwatch.flush(timeout=10) is True

    with open_store(url) as store:
        stored = store.get_execution(run.id)
        assert stored is not None and stored["status"] == "completed"
        first, second, tool = stored["events"]
        assert (first["input_tokens"], first["output_tokens"]) == (0, 7)
        assert first["duration"] is None and first["time_to_first_token"] is None
        assert abs(first["started_at"] - time.time()) < 600
        # an absurd reported cost is dropped and the call priced from its (valid) tokens
        assert first["cost_usd"] == pytest.approx(7 * 0.6e-6)
        assert abs(second["started_at"] - (time.time() - 0.25)) < 600
        assert second["cost_usd"] == pytest.approx(11 * 0.15e-6)
        assert tool["duration"] is None and abs(tool["started_at"] - time.time()) < 600
        assert stored["metrics"]["input_tokens"] == 11 and stored["metrics"]["llm_calls"] == 2
        counts = {
            row.labels["field"]: row.value
            for row in store.read_rollups()
            if row.sample == "agentwatch_invalid_values_total"
        }
        assert counts == {
            "input_tokens": 1, "cost_usd": 2, "duration": 2, "time_to_first_token": 1,
            "started_at": 3,
        }  # fmt: skip
        assert all(math.isfinite(row.value) and row.value >= 0 for row in store.read_rollups())
    samples = [s for family in registry.collect() for s in family.samples]
    assert all(math.isfinite(s.value) and s.value >= 0 for s in samples)


def test_a_writer_used_directly_repairs_what_it_is_given(
    backend_url: str,
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), flush_interval=0.0)
    ex = Execution(
        id="exec_direct", agent=SURROGATE, started_at=NOW, ended_at=NOW + 1,
        status="completed", attributes={"k": "\x00"},
    )  # fmt: skip
    ex.events.append(_event(input_tokens=-1000, cost_usd=math.nan, model="m\x00"))
    late = _event(execution_id="exec_direct", agent=SURROGATE, duration=math.inf,
                  output_tokens=-5, started_at=math.nan)  # fmt: skip
    try:
        assert writer.submit(ExecutionFinished(ex)) and writer.submit(LateEvent(late))
        assert writer.flush(timeout=10) is True
        writer.submit(ExecutionFinished(Execution(id="exec_next", agent="a", started_at=NOW,
                                                  ended_at=NOW, status="completed")))  # fmt: skip
        assert writer.flush(timeout=10) is True
        assert writer.stats.dropped()["invalid"] == 0
        assert writer.stats.invalid_values() == {
            "agent": 2, "attributes": 1, "input_tokens": 1, "cost_usd": 1, "model": 1,
            "duration": 1, "output_tokens": 1, "started_at": 1,
        }  # fmt: skip
    finally:
        writer.close()
    with open_store(backend_url) as store:
        stored = store.get_execution("exec_direct")
        assert stored is not None and stored["agent_name"] == REPAIRED
        assert stored["attributes"] == {"k": "\ufffd"}
        # the run's own call counts 0 input tokens (was -1000), the late one its 10
        assert stored["metrics"]["input_tokens"] == 10 and stored["metrics"]["llm_calls"] == 2
        assert _rollup(store, "agentwatch_invalid_values_total", field="agent") == 2
        assert all(math.isfinite(row.value) and row.value >= 0 for row in store.read_rollups())


def test_a_hostile_litellm_payload_goes_through_the_same_rule(
    runtime_store: tuple[str, CollectorRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from agentwatch.integrations.litellm import instrument_litellm, uninstrument_litellm

    url, registry = runtime_store
    logger = instrument_litellm()
    seen: list[tuple[dict[str, Any], Any]] = []
    record = logger.record

    def keep(kwargs: dict[str, Any], response_obj: Any) -> None:
        seen.append((kwargs, response_obj))
        record(kwargs, response_obj)

    monkeypatch.setattr(logger, "record", keep)
    labels = {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "type": "input"}
    try:
        messages = [{"role": "user", "content": "hello"}]
        litellm.completion(model="gpt-4o-mini", messages=messages, mock_response="hi")
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agentwatch.flush(timeout=10) is True
        kwargs, response = seen[0]
        real = dict(kwargs["standard_logging_object"])
        before = registry.get_sample_value("agentwatch_llm_tokens_total", labels)
        assert before is not None and before > 0
        hostile = {
            **real, "id": f"hostile-{uuid.uuid4()}", "prompt_tokens": -1000,
            "completion_tokens": math.nan, "response_cost": math.nan,
            "startTime": math.nan, "endTime": math.nan, "custom_llm_provider": "open\x00ai",
        }  # fmt: skip
        record({**kwargs, "litellm_call_id": hostile["id"],
                "standard_logging_object": hostile}, response)  # fmt: skip
        hostile_model = {**real, "id": f"hostile-{uuid.uuid4()}", "model": SURROGATE}
        record({**kwargs, "litellm_call_id": hostile_model["id"],
                "standard_logging_object": hostile_model}, response)  # fmt: skip
        assert agentwatch.flush(timeout=10) is True
    finally:
        uninstrument_litellm()

    assert registry.get_sample_value("agentwatch_llm_tokens_total", labels) == before
    count = registry.get_sample_value
    for field, n in (("input_tokens", 1), ("output_tokens", 1), ("cost_usd", 1),
                     ("started_at", 1), ("provider", 1), ("name", 1), ("model", 1)):  # fmt: skip
        assert count("agentwatch_invalid_values_total", {"field": field}) == n, field
    with open_store(url) as store:
        calls = [e for e in store.get_events(limit=None) if e["kind"] == "llm_call"]
        assert len(calls) == 3
        assert {c["model"] for c in calls} == {"gpt-4o-mini", REPAIRED}
        assert all(c["input_tokens"] >= 0 and math.isfinite(c["started_at"]) for c in calls)
        assert _rollup(store, "agentwatch_llm_tokens_total", **labels) == before
        assert _rollup(store, "agentwatch_invalid_values_total", field="input_tokens") == 1
