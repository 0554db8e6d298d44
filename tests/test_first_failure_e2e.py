"""End to end: a real Prometheus sees the very first failure of a new agent and a new model.

`rate()` and `increase()` take a series' first sample as its start, not as an increase: a
`status="failed"` series that appeared at 1 would keep the error-ratio rules at 0 until a
second failure. agentwatch exposes the failure series of a new label set at 0 from its first
success (`contract.ZERO_FILLED_STATUSES`). Real parts only: `@observe` and `record_llm_call`
feed the in-process registry (served by prometheus_client's own HTTP server) and, through
the background writer, a SQLite store that a separate `agentwatch serve` process exposes; a
real Prometheus (1 s scrape and rule evaluation) scrapes both and runs the bundle's
committed recording rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

import agentwatch
from agentwatch.store import open_store
from support.binaries import (
    Prometheus,
    free_port,
    start_agentwatch_serve,
    start_prometheus,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
RECORDING_RULES = REPO / "prometheus" / "rules" / "agentwatch-recording.yml"
#: The job name the committed rules select (`job="agentwatch"`): serve's.
SERVE_JOB = "agentwatch"
PROCESS_JOB = "inprocess"

pytestmark = pytest.mark.slow


@contextmanager
def _in_process_metrics(registry: CollectorRegistry) -> Iterator[int]:
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _prometheus_config(path: Path, serve_port: int, process_port: int) -> Path:
    jobs = {SERVE_JOB: serve_port, PROCESS_JOB: process_port}
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RECORDING_RULES)],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    for job, port in jobs.items()
                ],
            }
        )
    )
    return path


def _by_job(prom: Prometheus, expr: str) -> dict[str, float]:
    return {r["metric"].get("job", ""): float(r["value"][1]) for r in prom.query(expr)}


def _both_jobs_at_least(prom: Prometheus, expr: str, minimum: float) -> dict[str, float] | None:
    values = _by_job(prom, expr)
    if set(values) >= {SERVE_JOB, PROCESS_JOB} and all(v >= minimum for v in values.values()):
        return values
    return None


@pytest.mark.timeout(120)
def test_prometheus_sees_the_first_failure_of_a_new_agent_and_model(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    with open_store(store_url) as store:
        store.migrate()  # as `agentwatch init` does: serve only reads a store that exists
    registry = CollectorRegistry()
    agentwatch.configure(store_url=store_url, registry=registry)

    @agentwatch.observe(name="fresh")
    def fresh(fail: bool) -> None:
        agentwatch.record_llm_call(
            "brand-new", provider="openai", input_tokens=3, output_tokens=2, cost_usd=0.01,
            status="failure" if fail else "success",
        )  # fmt: skip
        if fail:
            raise RuntimeError("the first failure")

    @agentwatch.observe(name="unlucky")
    def unlucky() -> None:
        raise RuntimeError("fails from its very first run")

    failed = 'agentwatch_executions_total{agent="fresh",status="failed"}'
    call_failed = 'agentwatch_llm_requests_total{model="brand-new",status="failure"}'
    try:
        with (
            _in_process_metrics(registry) as process_port,
            start_agentwatch_serve(store_url, tmp_path / "serve") as serve,
            start_prometheus(
                _prometheus_config(tmp_path / "prometheus.yml", serve.port, process_port),
                tmp_path / "prom",
            ) as prom,
        ):
            fresh(False)
            assert agentwatch.flush(timeout=10)
            # Both expositions show the failure series at 0 before any failure, for at
            # least two scrapes: the 0 is in Prometheus before the failure is.
            wait_until(
                lambda: _both_jobs_at_least(prom, f"count_over_time({failed}[1m])", 2),
                timeout=30,
                what="two scrapes of the zero failure series from both jobs",
                log=prom.log,
            )
            assert set(_by_job(prom, failed).values()) == {0.0}
            assert set(_by_job(prom, f"sum by (job) ({call_failed})").values()) == {0.0}

            with pytest.raises(RuntimeError):
                fresh(True)
            with pytest.raises(RuntimeError):
                unlucky()
            assert agentwatch.flush(timeout=10)

            increase = wait_until(
                lambda: _both_jobs_at_least(prom, f"increase({failed}[1m])", 0.5),
                timeout=30,
                what="increase() of the failed series after the first failure, both jobs",
                log=prom.log,
            )
            assert all(v > 0 for v in increase.values()), increase
            calls = wait_until(
                lambda: _both_jobs_at_least(
                    prom, f"sum by (job) (increase({call_failed}[1m]))", 0.5
                ),
                timeout=30,
                what="increase() of the new model's failed requests, both jobs",
                log=prom.log,
            )
            assert all(v > 0 for v in calls.values()), calls

            # The committed error-ratio rule (what the burn-rate alerts read) sees it too.
            ratio = wait_until(
                lambda: (
                    [
                        float(r["value"][1])
                        for r in prom.query(
                            'agent:agentwatch_executions_errors:ratio_rate5m{agent="fresh"} > 0'
                        )
                    ]
                    or None
                ),
                timeout=30,
                what="the error ratio of the new agent above 0",
                log=prom.log,
            )
            assert 0 < ratio[0] <= 1

            # What zero-filling cannot do: an agent whose very first run fails has no
            # earlier sample, so its failure series starts at 1 and increase() misses it.
            # Its completed series exists at 0 for the run that will succeed.
            series = 'agentwatch_executions_total{agent="unlucky",status="%s"}'
            completed = _by_job(prom, series % "completed")
            assert completed == {SERVE_JOB: 0.0, PROCESS_JOB: 0.0}
            wait_until(
                lambda: _both_jobs_at_least(prom, f"count_over_time({series % 'failed'}[1m])", 2),
                timeout=30,
                what="two scrapes of the unlucky agent's failed series from both jobs",
                log=prom.log,
            )
            first_is_one = _by_job(prom, f"increase({series % 'failed'}[1m])")
            assert first_is_one == {SERVE_JOB: 0.0, PROCESS_JOB: 0.0}
    finally:
        agentwatch.close()
