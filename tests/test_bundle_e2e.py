"""End to end: a demo workload overspends a tiny budget and the page reaches a webhook.

Real parts only: `agentwatch demo` writes a workload to a SQLite store, `agentwatch serve`
exposes it with the budgets of a config file, a real Prometheus (1s scrape and evaluation)
runs the bundle's committed rule files, a real Alertmanager runs the bundle's committed
routing and inhibition, and a webhook receiver run by this test gets the notification.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.binaries import (
    WebhookReceiver,
    run_agentwatch,
    start_agentwatch_serve,
    start_alertmanager,
    start_prometheus,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER = REPO / "alertmanager"

pytestmark = pytest.mark.slow

# The demo's 10 runs cost about a thousandth of a dollar: "tiny" is overspent, "roomy" is not.
_CONFIG = """\
budgets:
  - {name: tiny, period: day, limit_usd: 0.0001, timezone: UTC}
  - {name: roomy, period: month, limit_usd: 1000, timezone: UTC}
"""


def _alertmanager_config(tmp_path: Path, webhook_base: str) -> Path:
    """The committed alertmanager.yml with its webhooks pointed at the test's receiver."""
    config: dict[str, Any] = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_base}/{receiver['name']}"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _prometheus_config(tmp_path: Path, serve_port: int, alertmanager_port: int) -> Path:
    path = tmp_path / "prometheus.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in RULE_FILES],
                "alerting": {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                    ]
                },
                "scrape_configs": [
                    {
                        "job_name": "agentwatch",
                        "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}],
                    }
                ],
            }
        )
    )
    return path


def _page_alerts(hooks: WebhookReceiver) -> list[dict[str, Any]]:
    return [
        alert
        for body in hooks.received()
        if body["_path"].endswith("/page")
        for alert in body["alerts"]
    ]


@pytest.mark.timeout(150)
def test_overspent_budget_pages_through_prometheus_and_alertmanager(tmp_path: Path) -> None:
    started = time.monotonic()
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    config = tmp_path / "agentwatch.yaml"
    config.write_text(_CONFIG)
    run_agentwatch(
        ["demo", "--store", store_url, "--config", str(config), "--runs", "10", "--no-serve"],
        tmp_path / "demo",
    )

    with (
        WebhookReceiver() as hooks,
        start_alertmanager(
            _alertmanager_config(tmp_path, hooks.url.rsplit("/", 1)[0]), tmp_path / "am"
        ) as am,
        start_agentwatch_serve(store_url, tmp_path / "serve", config=config) as serve,
        start_prometheus(
            _prometheus_config(tmp_path, serve.port, am.port), tmp_path / "prom"
        ) as prom,
    ):
        page = wait_until(
            lambda: (
                [
                    a
                    for a in _page_alerts(hooks)
                    if a["labels"]["alertname"] == "AgentwatchBudgetExhausted"
                ]
                or None
            ),
            timeout=60,
            what="the AgentwatchBudgetExhausted page at the webhook",
            log=lambda: prom.log() + "\n--- alertmanager ---\n" + am.log(),
        )
        alert = page[0]
        assert alert["status"] == "firing"
        assert alert["labels"] == {
            "alertname": "AgentwatchBudgetExhausted",
            "severity": "critical",
            "budget": "tiny",
            "period": "day",
            "job": "agentwatch",
            "instance": f"127.0.0.1:{serve.port}",
        }
        annotations = alert["annotations"]
        assert annotations["summary"] == "An LLM spend budget has reached its limit."
        # The console serves the runbooks and the page of the budget that fired.
        assert annotations["runbook_url"] == (
            "http://127.0.0.1:9747/ui/runbooks#agentwatchbudgetexhausted"
        )
        assert annotations["console_url"] == "http://127.0.0.1:9747/ui/budgets/tiny"
        match = re.fullmatch(
            r"Budget tiny \(day\) has spent ([\d.]+)% of its limit this period; "
            r"further LLM calls overspend it\.",
            annotations["description"],
        )
        assert match, annotations["description"]
        # The percentage is the store's exact spend over the configured limit.
        spend = float(prom.query('agentwatch_budget_spend_usd{budget="tiny"}')[0]["value"][1])
        assert spend > 0.0001
        assert float(match.group(1)) == pytest.approx(spend / 0.0001 * 100, rel=1e-3)

        # Only the overspent budget paged; its 80% warning is inhibited by the critical.
        assert {a["labels"]["budget"] for a in _page_alerts(hooks)} == {"tiny"}
        states = wait_until(
            lambda: (
                {
                    a["labels"]["alertname"]: a["status"]["state"]
                    for a in am.alerts(budget="tiny")
                    if a["labels"]["alertname"] == "AgentwatchBudgetNearLimit"
                }
                or None
            ),
            timeout=20,
            what="the near-limit warning of budget tiny in Alertmanager",
            log=am.log,
        )
        assert states == {"AgentwatchBudgetNearLimit": "suppressed"}
        assert not am.alerts(budget="roomy")
    assert time.monotonic() - started < 150
