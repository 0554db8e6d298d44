"""A real Prometheus scrapes a real `agentwatch serve`; values read back match the store."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentwatch
from support.binaries import run_agentwatch, start_agentwatch_serve, start_prometheus

pytestmark = pytest.mark.slow


def _scalar(result: list[dict[str, object]]) -> float:
    assert len(result) == 1, result
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def test_prometheus_reads_back_what_the_store_holds(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    run_agentwatch(["demo", "--store", store_url, "--runs", "24", "--no-serve"], tmp_path / "demo")

    with start_agentwatch_serve(store_url, tmp_path / "serve") as serve:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: agentwatch\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{serve.port}']}}]\n"
        )
        with start_prometheus(config, tmp_path / "prom") as prom:
            prom.wait_for_scrapes("agentwatch", count=2)

            store = agentwatch.EventStore(store_url)
            stats = store.get_summary_stats()
            store.close()

            executions = _scalar(prom.query("sum(agentwatch_executions_total)"))
            failed = _scalar(prom.query('sum(agentwatch_executions_total{status="failed"})'))
            cost = _scalar(prom.query("sum(agentwatch_llm_cost_usd_total)"))
            llm_calls = _scalar(prom.query("sum(agentwatch_llm_requests_total)"))
            assert executions == stats["total_executions"]
            assert failed == stats["failed"] > 0
            assert cost == pytest.approx(stats["total_cost"], rel=1e-9)
            assert llm_calls == stats["llm_calls"]
            p95 = prom.query(
                "histogram_quantile(0.95, sum by (le) "
                "(agentwatch_llm_request_duration_seconds_bucket))"
            )
            assert 0.0 < _scalar(p95) < 2.0, "demo delays are between 50 ms and 600 ms"
            providers = {r["metric"]["provider"] for r in prom.query(
                "sum by (provider) (agentwatch_llm_requests_total)"
            )}  # fmt: skip
            assert {"openai", "anthropic", "gemini"} <= providers
            assert _scalar(prom.query('up{job="agentwatch"}')) == 1
