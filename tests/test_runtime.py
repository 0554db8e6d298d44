"""The process runtime with the real BatchWriter and SQLite: nothing accepted is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch import context, runtime
from agentwatch.store import open_store


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    clean_environment(monkeypatch, tmp_path)
    yield f"sqlite:///{tmp_path / 'store' / 'telemetry.db'}"
    runtime.close()


def _execution(url: str, execution_id: str) -> dict[str, object]:
    store = open_store(url)
    try:
        found = store.get_execution(execution_id)
    finally:
        store.close()
    assert found is not None, f"{execution_id} not in the store"
    return found


def test_runs_and_their_calls_reach_the_store(store_url: str) -> None:
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)

    @agentwatch.observe
    def researcher() -> str:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=20
        )
        agentwatch.record_tool_call("search", duration=0.01)
        return context.current_execution_id() or ""

    run_id = researcher()
    assert agentwatch.flush(timeout=10)
    stored = _execution(store_url, run_id)
    assert stored["agent_name"] == "researcher" and stored["status"] == "completed"
    metrics = stored["metrics"]
    assert isinstance(metrics, dict)
    assert (metrics["llm_calls"], metrics["tool_calls"], metrics["input_tokens"]) == (1, 1, 10)
    assert metrics["total_cost"] == pytest.approx(10 * 0.15e-6 + 20 * 0.6e-6)
    # the self-metrics read the real writer's stats
    assert registry.get_sample_value("agentwatch_queue_capacity") == 10_000
    assert (
        registry.get_sample_value(
            "agentwatch_store_write_duration_seconds_count", {"backend": "sqlite"}
        )
        or 0
    ) >= 1
    assert (
        registry.get_sample_value("agentwatch_store_write_errors_total", {"backend": "sqlite"})
        == 0.0
    )


def test_late_event_lands_on_its_execution_in_the_store(store_url: str) -> None:
    agentwatch.configure(store_url=store_url, registry=CollectorRegistry())
    with agentwatch.track("quick") as run:
        frame = context.current_frame()
    assert frame is not None
    token = context.push(frame)  # a litellm async hook, running after the run ended
    try:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", output_tokens=100)
    finally:
        context.pop(token)
    assert agentwatch.flush(timeout=10)
    stored = _execution(store_url, run.id)
    events = stored["events"]
    assert isinstance(events, list) and [e["kind"] for e in events] == ["llm_call"]
    metrics = stored["metrics"]
    assert isinstance(metrics, dict) and metrics["output_tokens"] == 100
    assert metrics["total_cost"] == pytest.approx(100 * 0.6e-6)


@pytest.mark.slow
def test_unwritable_store_never_breaks_the_agent_and_drops_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store directory should be")
    registry = CollectorRegistry()
    agentwatch.configure(
        store_url=f"sqlite:///{blocker / 'telemetry.db'}", registry=registry, queue_size=10
    )
    try:

        @agentwatch.observe
        def agent(i: int) -> int:
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=i)
            return i * 2

        assert [agent(i) for i in range(30)] == [i * 2 for i in range(30)]
        assert agentwatch.flush(timeout=3) is False
        assert (
            registry.get_sample_value(
                "agentwatch_executions_total", {"agent": "agent", "status": "completed"}
            )
            == 30.0
        )
        dropped = sum(
            registry.get_sample_value("agentwatch_events_dropped_total", {"reason": r}) or 0
            for r in ("queue_full", "store_error", "shutdown")
        )
        assert dropped >= 20  # at most queue_size (10) records can still be waiting
    finally:
        runtime.close(timeout=1)


def test_configure_closes_the_old_writer_without_losing_records(
    store_url: str, tmp_path: Path
) -> None:
    agentwatch.configure(store_url=store_url, registry=CollectorRegistry())
    with agentwatch.track("before-reconfigure") as run:
        pass
    agentwatch.configure(
        store_url=f"sqlite:///{tmp_path / 'other.db'}", registry=CollectorRegistry()
    )
    assert _execution(store_url, run.id)["agent_name"] == "before-reconfigure"


def test_configure_keeps_metric_values_on_the_same_registry(store_url: str) -> None:
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=1)
    agentwatch.configure(store_url=store_url, capture_arguments=True)
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=1)
    assert (
        registry.get_sample_value(
            "agentwatch_llm_requests_total",
            {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "status": "success"},
        )
        == 2.0
    )


def test_start_http_server_serves_the_registry_on_localhost(store_url: str) -> None:
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=3)
    server, thread = agentwatch.start_http_server(0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        assert 'agentwatch_llm_tokens_total{agent="none",model="gpt-4o-mini"' in body
        assert "agentwatch_build_info" in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_multiprocess_deployment_warns_and_strict_refuses(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agentwatch.configure(store_url=store_url, registry=CollectorRegistry())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/prom-multiproc")
    with pytest.raises(runtime.MultiProcessMetricsError, match="agentwatch serve"):
        runtime.start_http_server(0, strict=True)
    with pytest.warns(runtime.ForkedWorkerWarning, match="10595"):
        server, thread = runtime.start_http_server(0)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_knows_it_is_a_worker(store_url: str) -> None:
    agentwatch.configure(store_url=store_url, registry=CollectorRegistry())
    assert runtime.worker_reason() is None
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            reason = runtime.worker_reason() or ""
            os.write(write_end, reason.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    reason = os.read(read_end, 1000).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert reason.startswith("this process was forked from pid")


def _run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["AGENTWATCH_HOME"] = str(tmp_path)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )


def _count(url: str) -> int:
    store = open_store(url)
    try:
        store.migrate()
        return store.count_executions()
    finally:
        store.close()


@pytest.mark.slow
def test_records_are_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = _run_script(
        tmp_path,
        f"""
        import agentwatch
        agentwatch.configure(store_url={url!r})
        for i in range(25):
            with agentwatch.track("short-script"):
                agentwatch.record_llm_call("gpt-4o-mini", input_tokens=i)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert _count(url) == 25


@pytest.mark.slow
def test_sigterm_flushes_then_terminates_like_the_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'term.db'}"
    done = _run_script(
        tmp_path,
        f"""
        import os, signal
        import agentwatch
        agentwatch.configure(store_url={url!r}, flush_interval=60)
        for i in range(5):
            with agentwatch.track("terminated"):
                pass
        os.kill(os.getpid(), signal.SIGTERM)
        """,
    )
    assert done.returncode == -signal.SIGTERM
    assert _count(url) == 5


@pytest.mark.slow
def test_sigterm_while_a_record_is_being_queued_still_flushes_and_exits(
    tmp_path: Path,
) -> None:
    """The signal can land while the main thread holds the writer's queue lock (inside
    `submit`); the handler's flush must not deadlock on it."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    done = _run_script(
        tmp_path,
        f"""
        import os, signal
        import agentwatch
        from agentwatch import runtime
        agentwatch.configure(store_url={url!r}, flush_interval=60)
        for i in range(5):
            with agentwatch.track("interrupted"):
                pass
        with runtime.get_runtime().writer._lock:  # as if interrupted inside submit()
            os.kill(os.getpid(), signal.SIGTERM)
        """,
    )
    assert done.returncode == -signal.SIGTERM
    assert _count(url) == 5


@pytest.mark.slow
def test_sigterm_chains_the_programs_own_handler(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chain.db'}"
    done = _run_script(
        tmp_path,
        f"""
        import os, signal, sys
        def mine(signum, frame):
            print("user handler ran")
            sys.exit(3)
        signal.signal(signal.SIGTERM, mine)
        import agentwatch
        agentwatch.configure(store_url={url!r}, flush_interval=60)
        with agentwatch.track("chained"):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        """,
    )
    assert done.returncode == 3 and "user handler ran" in done.stdout
    assert _count(url) == 1


_SELF = {
    "agentwatch_events_dropped",
    "agentwatch_store_write_errors",
    "agentwatch_cardinality_overflow",
    "agentwatch_internal_errors",
    "agentwatch_invalid_values",
}


def test_in_process_metrics_agree_with_the_store_rollups(store_url: str) -> None:
    """`/metrics` of the process and of `agentwatch serve` must tell the same story."""
    from agentwatch.contract import ROLLUP_METRICS

    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)

    @agentwatch.observe
    def agent(i: int) -> None:
        agentwatch.record_llm_call(
            "gpt-4o-mini",
            provider="openai",
            input_tokens=10 * i,
            output_tokens=i,
            cached_tokens=i,
            duration=0.1 * i,
            time_to_first_token=0.01 * i if i % 2 else None,
        )
        agentwatch.record_llm_call(
            "private-model", status="failure", error_type="RateLimitError", duration=0.2
        )
        agentwatch.record_tool_call("search", duration=0.05 * i, status="success")
        if i == 3:
            raise ValueError("third run fails")

    for i in range(1, 6):
        with contextlib.suppress(ValueError):
            agent(i)
    agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=7)
    assert agentwatch.flush(timeout=10)

    families = {spec.name for spec in ROLLUP_METRICS} - _SELF
    in_process = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name in families
        for s in family.samples
        if not s.name.endswith("_created")
    }
    from agentwatch.store_metrics import rollup_families

    store = open_store(store_url)
    try:
        # What serve exposes from the rollups (with the outcome series completed at 0).
        rollups = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in rollup_families(store.read_rollups())
            if family.name in families
            for s in family.samples
        }
    finally:
        store.close()
    assert rollups.keys() == in_process.keys()
    outcomes = ("agentwatch_executions_total", "agentwatch_llm_requests_total")
    zeros = {
        (labels["agent"], labels["model"], labels["status"])
        for (name, pairs), value in in_process.items()
        if name in outcomes and not value and (labels := dict(pairs))
    }
    assert zeros == {
        ("agent", "gpt-4o-mini", "failure"),
        ("agent", "private-model", "success"),
        ("none", "gpt-4o-mini", "failure"),
    }, "both expositions show the same outcome series at 0"
    for key, value in in_process.items():
        assert rollups[key] == pytest.approx(value), key


def test_observed_tools_are_not_agent_executions_in_either_exposition(store_url: str) -> None:
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)

    @agentwatch.observe(kind="tool")
    def search() -> None:
        return None

    @agentwatch.observe
    def agent() -> None:
        search()

    agent()
    assert agentwatch.flush(timeout=10)
    labels = {"agent": "search", "status": "completed"}
    assert registry.get_sample_value("agentwatch_executions_total", labels) is None
    store = open_store(store_url)
    try:
        rows = [
            r
            for r in store.read_rollups()
            if r.sample == "agentwatch_executions_total" and r.labels == labels
        ]
    finally:
        store.close()
    assert rows == []


def test_contained_errors_are_counted_through_the_writer_and_rolled_up(store_url: str) -> None:
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)
    with agentwatch.track("bad-values"):
        agentwatch.record_llm_call("gpt-4o-mini", status="weird")  # type: ignore[arg-type]
    assert agentwatch.flush(timeout=10)
    labels = {"component": "invalid_argument"}
    assert registry.get_sample_value("agentwatch_internal_errors_total", labels) == 1.0
    store = open_store(store_url)
    try:
        rolled = [
            r.value
            for r in store.read_rollups()
            if r.sample == "agentwatch_internal_errors_total" and r.labels == labels
        ]
    finally:
        store.close()
    assert rolled == [1.0]


def test_a_run_open_across_configure_lands_in_the_new_store(store_url: str, tmp_path: Path) -> None:
    agentwatch.configure(store_url=store_url, registry=CollectorRegistry())
    new_url = f"sqlite:///{tmp_path / 'new.db'}"
    with agentwatch.track("spanning") as run:
        agentwatch.configure(store_url=new_url)
    assert agentwatch.flush(timeout=10)
    assert _execution(new_url, run.id)["status"] == "completed"
