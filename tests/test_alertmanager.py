"""The Alertmanager part of the bundle: valid config, severity routing, inhibition, templates.

`amtool` checks the config and resolves routes; a real `prometheus-alertmanager` proves the
inhibition rules and renders the notification template into a Slack payload that a local
webhook receiver captures.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.binaries import (
    Alertmanager,
    WebhookReceiver,
    require_binary,
    start_alertmanager,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
ALERTMANAGER = REPO / "alertmanager"
CONFIG = ALERTMANAGER / "alertmanager.yml"
RUNBOOK = "http://127.0.0.1:9747/ui/runbooks"
CONSOLE = "http://127.0.0.1:9747/ui"
#: Labels that identify what an agentwatch alert is about (see the `by` clauses of the rules).
IDENTIFYING = ("budget", "agent", "model", "provider", "instance")


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("amtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ALERTMANAGER,
    )


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def _local_copy(tmp_path: Path, webhook_url: str, *, page_via_slack: bool = False) -> Path:
    """The bundle's config with every webhook (and Slack) sent to `webhook_url`."""
    config = _config()
    config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
    config["global"].pop("slack_api_url_file")
    config["global"]["slack_api_url"] = f"{webhook_url}/slack"
    if page_via_slack:
        critical = next(r for r in config["route"]["routes"] if r["receiver"] == "page")
        critical["receiver"] = "slack"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "job": "agentwatch", **labels},
        "annotations": {
            "summary": f"{name} summary.",
            "description": f"{name} for {labels}.",
            "runbook_url": f"{RUNBOOK}#{name.lower()}",
            "console_url": f"{CONSOLE}/budgets/{labels.get('budget', '')}",
        },
    }


def test_amtool_accepts_the_config_and_finds_the_template() -> None:
    done = _amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout
    assert len(list((ALERTMANAGER / "templates").glob("*.tmpl"))) == 1


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=AgentwatchBudgetExhausted", "severity=critical", "budget=team"], "page"),
        (["alertname=AgentwatchExecutionErrorBudgetBurn", "severity=critical"], "page"),
        (["alertname=AgentwatchBudgetNearLimit", "severity=warning", "budget=team"], "ticket"),
        (["alertname=AgentwatchTargetDown", "severity=warning"], "ticket"),
        (["alertname=SomethingElse"], "default"),
        (["alertname=SomethingElse", "severity=info"], "default"),
    ],
)
def test_alerts_route_to_page_or_ticket_by_severity(labels: list[str], receiver: str) -> None:
    done = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_notifications_group_by_alertname_and_what_the_alert_is_about() -> None:
    route = _config()["route"]
    assert route["receiver"] == "default"
    assert route["group_by"][0] == "alertname"
    assert set(IDENTIFYING) <= set(route["group_by"])
    # Sub-routes inherit it: none may regroup more coarsely.
    assert all("group_by" not in r for r in route["routes"])


def test_every_label_an_alert_keeps_is_a_grouping_label() -> None:
    """An alert's identity (the labels its expression keeps) must split notifications."""
    from agentwatch.mixin.alerts import alert_groups
    from agentwatch.mixin.config import load_config

    group_by = set(_config()["route"]["group_by"])
    window_labels = {"severity", "slo", "long", "short", "quantile", "reason", "backend", "period"}
    for group in alert_groups(load_config()):
        for rule in group.rules:
            kept = set()
            for clause in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule.expr):
                kept |= {label.strip() for label in clause.split(",")}
            for label in ("budget", "agent", "model", "provider"):
                if f"$labels.{label}" in rule.annotations["description"]:
                    kept.add(label)
            assert kept - window_labels <= group_by, (rule.alert, kept - group_by)


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def test_pages_notify_faster_and_repeat_more_often_than_tickets() -> None:
    route = _config()["route"]
    page = next(r for r in route["routes"] if r["receiver"] == "page")
    ticket = next(r for r in route["routes"] if r["receiver"] == "ticket")
    assert _seconds(page["group_wait"]) < _seconds(ticket["group_wait"]) <= 300
    assert 3600 <= _seconds(page["repeat_interval"]) < _seconds(ticket["repeat_interval"])
    assert _seconds(route["group_interval"]) >= 60


def test_slack_and_email_receivers_are_ready_to_enable() -> None:
    receivers = {r["name"]: r for r in _config()["receivers"]}
    assert receivers["default"]["webhook_configs"], "the default receiver must be a webhook"
    slack = receivers["slack"]["slack_configs"][0]
    assert "agentwatch.title" in slack["title"] and "agentwatch.text" in slack["text"]
    email = receivers["email"]["email_configs"][0]
    assert "agentwatch.email.html" in email["html"]
    assert _config()["global"]["smtp_smarthost"]


@pytest.mark.parametrize(
    "definition",
    ["agentwatch.title", "agentwatch.text", "agentwatch.color", "agentwatch.email.html"],
)
def test_every_template_definition_renders(definition: str) -> None:
    done = _amtool(
        "template",
        "render",
        f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
        f'--template.text={{{{ template "{definition}" . }}}}',
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()


@pytest.mark.slow
def test_critical_budget_alert_inhibits_the_warning_of_the_same_budget_only(
    tmp_path: Path,
) -> None:
    with WebhookReceiver() as hooks:
        config = _local_copy(tmp_path, hooks.url.rsplit("/", 1)[0])
        with start_alertmanager(config, tmp_path / "am") as am:
            am.post_alerts(
                [
                    _alert("AgentwatchBudgetExhausted", "critical", budget="team", period="month"),
                    _alert("AgentwatchBudgetNearLimit", "warning", budget="team", period="month"),
                    _alert(
                        "AgentwatchBudgetForecastExceeded", "warning", budget="team", period="month"
                    ),
                    _alert("AgentwatchBudgetNearLimit", "warning", budget="other", period="month"),
                ]
            )
            states = wait_until(
                lambda: _states(am) if len(_states(am)) == 4 else None,
                timeout=20,
                what="4 alerts in Alertmanager",
                log=am.log,
            )
            assert states[("AgentwatchBudgetExhausted", "team")] == "active"
            assert states[("AgentwatchBudgetNearLimit", "team")] == "suppressed"
            assert states[("AgentwatchBudgetForecastExceeded", "team")] == "suppressed"
            assert states[("AgentwatchBudgetNearLimit", "other")] == "active"
            # The page (group_wait 10s) reaches its webhook with the critical alert only.
            page = wait_until(
                lambda: [b for b in hooks.received() if b["_path"].endswith("/page")] or None,
                timeout=30,
                what="the page notification",
                log=am.log,
            )
            names = {a["labels"]["alertname"] for a in page[0]["alerts"]}
            assert names == {"AgentwatchBudgetExhausted"}


def _states(am: Alertmanager) -> dict[tuple[str, str], str]:
    return {
        (a["labels"]["alertname"], a["labels"].get("budget", "")): a["status"]["state"]
        for a in am.alerts()
    }


@pytest.mark.slow
def test_page_burn_rate_alert_inhibits_the_ticket_of_the_same_agent(tmp_path: Path) -> None:
    with WebhookReceiver() as hooks:
        config = _local_copy(tmp_path, hooks.url.rsplit("/", 1)[0])
        with start_alertmanager(config, tmp_path / "am") as am:
            burn = "AgentwatchExecutionErrorBudgetBurn"
            am.post_alerts(
                [
                    _alert(burn, "critical", slo="executions", agent="planner", long="1h"),
                    _alert(burn, "warning", slo="executions", agent="planner", long="1d"),
                    _alert(burn, "warning", slo="executions", agent="writer", long="1d"),
                ]
            )

            def by_agent_severity() -> dict[tuple[str, str], str] | None:
                alerts = am.alerts()
                if len(alerts) != 3:
                    return None
                return {
                    (a["labels"]["agent"], a["labels"]["severity"]): a["status"]["state"]
                    for a in alerts
                }

            states = wait_until(by_agent_severity, timeout=20, what="3 alerts", log=am.log)
            assert states == {
                ("planner", "critical"): "active",
                ("planner", "warning"): "suppressed",
                ("writer", "warning"): "active",
            }


@pytest.mark.slow
def test_slack_notification_renders_the_agentwatch_template(tmp_path: Path) -> None:
    with WebhookReceiver() as hooks:
        config = _local_copy(tmp_path, hooks.url.rsplit("/", 1)[0], page_via_slack=True)
        with start_alertmanager(config, tmp_path / "am") as am:
            started = time.time()
            am.post_alerts(
                [_alert("AgentwatchBudgetExhausted", "critical", budget="team", period="day")]
            )
            slack = wait_until(
                lambda: [b for b in hooks.received() if b["_path"].endswith("/slack")] or None,
                timeout=30,
                what="the Slack notification",
                log=am.log,
            )
            assert time.time() - started < 30
    attachment = slack[0]["attachments"][0]
    assert slack[0]["channel"] == "#agent-alerts"
    assert attachment["title"] == ("[FIRING:1] AgentwatchBudgetExhausted budget=team (critical)")
    assert attachment["color"] == "danger"
    text = attachment["text"]
    assert "FIRING: AgentwatchBudgetExhausted summary." in text
    assert "AgentwatchBudgetExhausted for {" in text
    assert "budget=team" in text and "period=day" in text and "severity=critical" in text
    assert f"Runbook: {RUNBOOK}#agentwatchbudgetexhausted" in text
    assert f"Console: {CONSOLE}/budgets/team" in text
    runbook, console = attachment["actions"]
    assert runbook["url"] == f"{RUNBOOK}#agentwatchbudgetexhausted"
    assert console["url"] == f"{CONSOLE}/budgets/team"


@pytest.mark.slow
def test_one_notification_group_per_actionable_thing(tmp_path: Path) -> None:
    """Two models failing at two providers, two budgets, two agents: six notifications."""
    with WebhookReceiver() as hooks:
        config = _local_copy(tmp_path, hooks.url.rsplit("/", 1)[0])
        with start_alertmanager(config, tmp_path / "am") as am:
            llm = "AgentwatchLLMErrorBudgetBurn"
            runs = "AgentwatchExecutionErrorBudgetBurn"
            am.post_alerts(
                [
                    _alert(llm, "critical", slo="llm_requests", model="gpt-4o",
                           provider="openai", long="1h"),
                    _alert(llm, "critical", slo="llm_requests", model="gpt-4o",
                           provider="openai", long="6h"),
                    _alert(llm, "critical", slo="llm_requests", model="gpt-4o",
                           provider="azure", long="1h"),
                    _alert(llm, "critical", slo="llm_requests", model="claude-3-5-haiku",
                           provider="anthropic", long="1h"),
                    _alert("AgentwatchBudgetNearLimit", "warning", budget="team", period="day"),
                    _alert("AgentwatchBudgetNearLimit", "warning", budget="org", period="month"),
                    _alert(runs, "critical", slo="executions", agent="planner", long="1h"),
                    _alert(runs, "critical", slo="executions", agent="planner", long="6h"),
                ]
            )  # fmt: skip

            def groups() -> list[dict[str, Any]] | None:
                found = [g for g in am.get("/api/v2/alerts/groups") if g["alerts"]]
                return found if sum(len(g["alerts"]) for g in found) == 8 else None

            found = wait_until(groups, timeout=20, what="8 grouped alerts", log=am.log)
    assert len(found) == 6
    for group in found:
        identities = {
            tuple(a["labels"].get(k) for k in ("alertname", *IDENTIFYING)) for a in group["alerts"]
        }
        assert len(identities) == 1, group["labels"]
    sizes = sorted(len(g["alerts"]) for g in found)
    assert sizes == [1, 1, 1, 1, 2, 2]  # the 1h and 6h windows of one model / agent together


@pytest.mark.slow
def test_the_committed_config_starts_a_real_alertmanager_unchanged(tmp_path: Path) -> None:
    """No secret file is needed to start: Slack's URL file is read only when Slack is used."""
    with start_alertmanager(CONFIG, tmp_path / "am") as am:
        status = am.get("/api/v2/status")
        assert "agentwatch.tmpl" not in status["config"]["original"]  # glob, not expanded
        assert status["cluster"]["status"] in {"ready", "disabled"}


def test_existing_stack_alertmanager_snippet_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "existing-stack.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)]
    snippet = next(b for b in blocks if "inhibit_rules" in b)
    config = {
        "route": {"receiver": "default", **snippet["route"]},
        "inhibit_rules": snippet["inhibit_rules"],
        "receivers": [{"name": n} for n in ("default", "your-pager", "your-ticket-queue")],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    assert _amtool("check-config", str(path)).returncode == 0
    for severity, receiver in (("critical", "your-pager"), ("warning", "your-ticket-queue")):
        done = _amtool(
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            "alertname=AgentwatchBudgetExhausted",
            f"severity={severity}",
        )
        assert done.stdout.strip() == receiver, done.stdout + done.stderr
    assert snippet["inhibit_rules"] == _config()["inhibit_rules"][:2]
    (agentwatch_route,) = snippet["route"]["routes"]
    assert agentwatch_route["group_by"] == _config()["route"]["group_by"]
