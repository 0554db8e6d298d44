"""A real Prometheus scrapes a real `agentwatch serve`; values read back match the store."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

import agentwatch
from agentwatch.contract import LLM_DURATION_BUCKETS
from support.binaries import (
    Prometheus,
    run_agentwatch,
    start_agentwatch_serve,
    start_prometheus,
    wait_until,
)
from support.certs import PKI, make_pki

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
            # Prometheus interpolates inside the bucket that holds the 95th percentile rank;
            # the exact value of the stored call durations must fall in that bucket (or, as
            # the two rank conventions differ by one call, a neighbour). No absolute bound:
            # stored durations are real wall times and grow on a loaded machine.
            with sqlite3.connect(tmp_path / "telemetry.db") as conn:
                durations = sorted(
                    row[0]
                    for row in conn.execute(
                        "SELECT duration FROM events "
                        "WHERE kind = 'llm_call' AND duration IS NOT NULL"
                    )
                )
            assert len(durations) == stats["llm_calls"] > 0
            exact = durations[math.ceil(0.95 * len(durations)) - 1]
            bounds = (0.0, *LLM_DURATION_BUCKETS, math.inf)
            at = next(i for i in range(1, len(bounds)) if exact <= bounds[i])
            low, high = bounds[max(at - 2, 0)], bounds[min(at + 1, len(bounds) - 1)]
            assert low <= _scalar(p95) <= high, (exact, _scalar(p95))
            providers = {r["metric"]["provider"] for r in prom.query(
                "sum by (provider) (agentwatch_llm_requests_total)"
            )}  # fmt: skip
            assert {"openai", "anthropic", "gemini"} <= providers
            assert _scalar(prom.query('up{job="agentwatch"}')) == 1


def _secured_serve_setup(tmp_path: Path) -> tuple[str, PKI]:
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    run_agentwatch(["demo", "--store", store_url, "--runs", "8", "--no-serve"], tmp_path / "demo")
    return store_url, make_pki(tmp_path / "pki")


def _store_totals(store_url: str) -> dict[str, Any]:
    store = agentwatch.EventStore(store_url)
    try:
        return store.get_summary_stats()
    finally:
        store.close()


def _target_error(prom: Prometheus, job: str) -> str:
    target = next(t for t in prom.targets() if t["labels"]["job"] == job)
    return str(target.get("lastError", ""))


def test_prometheus_scrapes_serve_over_tls_with_basic_auth(tmp_path: Path) -> None:
    store_url, pki = _secured_serve_setup(tmp_path)
    password = "scrape-" + "x" * 12
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    with start_agentwatch_serve(store_url, tmp_path / "serve", web_config=web, ca=pki.ca) as serve:
        base = f"https://127.0.0.1:{serve.port}"
        # Without or with wrong credentials: 401. Plain HTTP to the TLS port: no answer.
        assert requests.get(base + "/metrics", verify=str(pki.ca), timeout=10).status_code == 401
        wrong = requests.get(base + "/metrics", auth=("prometheus", "nope"), verify=str(pki.ca),
                             timeout=10)  # fmt: skip
        assert wrong.status_code == 401
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{serve.port}/metrics", timeout=10)

        config = tmp_path / "prometheus.yml"
        target = f"static_configs: [{{targets: ['127.0.0.1:{serve.port}']}}]"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: agentwatch\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {pki.ca}}}\n"
            f"    basic_auth: {{username: prometheus, password: {password}}}\n"
            f"    {target}\n"
            "  - job_name: wrong-password\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {pki.ca}}}\n"
            "    basic_auth: {username: prometheus, password: guessed}\n"
            f"    {target}\n"
        )
        with start_prometheus(config, tmp_path / "prom") as prom:
            prom.wait_for_scrapes("agentwatch", count=2)
            stats = _store_totals(store_url)
            assert _scalar(prom.query('up{job="agentwatch"}')) == 1
            assert (
                _scalar(prom.query("sum(agentwatch_executions_total)")) == stats["total_executions"]
            )
            assert _scalar(prom.query("sum(agentwatch_llm_requests_total)")) == stats["llm_calls"]
            wait_until(
                lambda: prom.query('up{job="wrong-password"}'),
                timeout=30,
                what="a scrape of the wrong-password job",
                log=prom.log,
            )
            assert _scalar(prom.query('up{job="wrong-password"}')) == 0
            assert "401" in _target_error(prom, "wrong-password")
    assert password not in serve.log(), "the password never reaches serve's log"


def test_prometheus_scrapes_serve_with_a_required_client_certificate(tmp_path: Path) -> None:
    store_url, pki = _secured_serve_setup(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    )
    client = (pki.client_cert, pki.client_key)
    with start_agentwatch_serve(
        store_url, tmp_path / "serve", web_config=web, ca=pki.ca, client_cert=client
    ) as serve:
        config = tmp_path / "prometheus.yml"
        target = f"static_configs: [{{targets: ['127.0.0.1:{serve.port}']}}]"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: agentwatch\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {pki.ca}, cert_file: {pki.client_cert}, "
            f"key_file: {pki.client_key}}}\n"
            f"    {target}\n"
            "  - job_name: no-client-cert\n"
            "    scheme: https\n"
            f"    tls_config: {{ca_file: {pki.ca}}}\n"
            f"    {target}\n"
        )
        with start_prometheus(config, tmp_path / "prom") as prom:
            prom.wait_for_scrapes("agentwatch", count=2, timeout=60)
            stats = _store_totals(store_url)
            assert _scalar(prom.query('up{job="agentwatch"}')) == 1
            assert (
                _scalar(prom.query("sum(agentwatch_executions_total)")) == stats["total_executions"]
            )
            wait_until(
                lambda: prom.query('up{job="no-client-cert"}'),
                timeout=30,
                what="a scrape of the no-client-cert job",
                log=prom.log,
            )
            assert _scalar(prom.query('up{job="no-client-cert"}')) == 0
            error = _target_error(prom, "no-client-cert").lower()
            # TLS 1.3 refuses a missing client certificate after the handshake: the client
            # sees an alert, an EOF or a reset on its first read, depending on timing.
            assert any(w in error for w in ("certificate", "tls", "eof", "reset")), error
        # The handshake itself fails without a client certificate.
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(f"https://127.0.0.1:{serve.port}/healthz", verify=str(pki.ca), timeout=10)
        ok = requests.get(
            f"https://127.0.0.1:{serve.port}/metrics",
            cert=(str(pki.client_cert), str(pki.client_key)),
            verify=str(pki.ca),
            timeout=10,
        )
        assert ok.status_code == 200
