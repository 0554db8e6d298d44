"""The Prometheus part of the bundle: config and rules valid, tested, current, in contract.

`promtool` checks the config and rules and runs the unit tests in prometheus/tests/; the rest
reads the generated YAML to prove what promtool cannot: every alert is tested both firing and
silent, carries severity/summary/description/runbook_url with a matching runbook section, and
only reads metrics of the contract or recording rules the bundle defines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agentwatch import contract
from agentwatch.mixin import alerts, render
from agentwatch.mixin.config import from_mapping, load_config
from agentwatch.mixin.promql import metric_names
from agentwatch.mixin.rules import RuleGroup
from support.binaries import require_binary

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
#: Console routes alerts may link to (the console's contract, helpers' INTERFACES).
CONSOLE_ROUTES = re.compile(
    r"^/ui/(|runs|runs/[^/]+|agents/[^/]+|models/[^/]+|budgets/[^/]+|runbooks)$"
)


def _rules(kind: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if kind in r)
    return rules


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def test_promtool_accepts_the_prometheus_config_and_its_rule_files() -> None:
    done = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout


def test_promtool_accepts_every_rule_file() -> None:
    assert RULE_FILES, "no generated rule files"
    done = _promtool("check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    done = _promtool("test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_each_rule_file_has_its_own_unit_test_file() -> None:
    tested: set[str] = set()
    for path in TEST_FILES:
        tested |= {Path(f).name for f in yaml.safe_load(path.read_text())["rule_files"]}
    assert {p.name for p in RULE_FILES} <= tested


def test_committed_rules_match_the_generator_output() -> None:
    expected = render.prometheus_files(load_config())
    names = sorted(Path(p).name for p in expected if p.startswith(render.RULES_DIR))
    assert names == sorted(p.name for p in RULE_FILES)
    for relative, text in expected.items():
        committed = (REPO / relative).read_text(encoding="utf-8")
        assert committed == text, f"{relative} is stale: run python -m agentwatch.mixin generate"


def test_generated_files_say_they_are_generated() -> None:
    for path in RULE_FILES:
        assert "DO NOT EDIT" in path.read_text().splitlines()[0]


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in _rules("alert")}
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown staying silent"


def _runbook_anchors() -> set[str]:
    """GitHub-style anchors of the `## ` headings of docs/runbooks.md."""
    return {
        re.sub(r"[^a-z0-9_ -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }


def test_every_alert_has_severity_summary_description_and_links() -> None:
    config = load_config()
    for rule in _rules("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "console_url"}
        assert annotations["summary"] and "{{" not in annotations["summary"], name
        assert "{{" in annotations["description"], f"{name}: description is not templated"
        # Default: the console's runbook route, anchored at the alert name in lower case.
        assert annotations["runbook_url"] == f"{config.console_url}/ui/runbooks#{name.lower()}"
        console = annotations["console_url"]
        assert console.startswith(config.console_url + "/ui/"), console
        path = urlsplit(console.replace("{{", "").replace("}}", "")).path
        assert CONSOLE_ROUTES.match(path), f"{name}: {console} is no console route"


def test_every_alert_has_a_runbook_section() -> None:
    """The console serves docs/runbooks.md: each alert's anchor must exist there."""
    anchors = _runbook_anchors()
    names = {rule["alert"] for rule in _rules("alert")}
    assert names == set(alerts.alert_names(load_config()))
    for name in names:
        assert name.lower() in anchors, f"docs/runbooks.md has no section '## {name}'"


def test_alerts_link_to_the_console_page_of_what_fired() -> None:
    by_name = {r["alert"]: r["annotations"]["console_url"] for r in _rules("alert")}
    base = load_config().console_url
    assert by_name["AgentwatchExecutionErrorBudgetBurn"] == (
        f"{base}/ui/runs?agent={{{{ $labels.agent | urlquery }}}}&status=failed"
    )
    for name in ("AgentwatchBudgetNearLimit", "AgentwatchBudgetExhausted"):
        assert by_name[name] == f"{base}/ui/budgets/{{{{ $labels.budget | urlquery }}}}"
    assert by_name["AgentwatchLLMErrorBudgetBurn"].endswith(
        "/ui/models/{{ $labels.model | urlquery }}"
    )
    assert by_name["AgentwatchCostSpike"].endswith("/ui/agents/{{ $labels.agent | urlquery }}")


def test_runbook_url_is_a_mixin_setting(tmp_path: Path) -> None:
    config = from_mapping(
        {
            "console_url": "https://agents.example.com",
            "runbook_url": "https://wiki.example.com/runbooks/{alertname}#{anchor}",
        }
    )
    rules = [r.to_dict() for g in alerts.alert_groups(config) for r in g.rules]
    for rule in rules:
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == (
            f"https://wiki.example.com/runbooks/{name}#{name.lower()}"
        )
        assert rule["annotations"]["console_url"].startswith("https://agents.example.com/ui/")


def test_runbooks_have_meaning_causes_and_actions_for_each_alert() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_name = {s.splitlines()[0].strip(): s for s in sections}
    for name in {rule["alert"] for rule in _rules("alert")}:
        body = by_name[name]
        for part in ("Meaning", "Likely causes", "What to do"):
            assert f"**{part}**" in body, f"{name}: runbook lacks '{part}'"


def test_rules_read_only_contract_metrics_and_bundle_recordings() -> None:
    recorded = {rule["record"] for rule in _rules("record")}
    allowed = contract.all_sample_names() | recorded | {"up"}
    for rule in _rules("record") + _rules("alert"):
        names = metric_names(rule["expr"])
        assert names, f"no metric found in {rule['expr']!r}"
        unknown = names - allowed
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_the_contract_check_rejects_an_invented_metric() -> None:
    from agentwatch.mixin.rules import Recording

    bogus = [RuleGroup("x", (Recording("a:b:c", "rate(agentwatch_nope[5m])"),))]
    with pytest.raises(ValueError, match="agentwatch_nope"):
        render.check_names(load_config(), bogus)


def test_recording_rule_names_follow_level_metric_operations() -> None:
    pattern = re.compile(r"^[a-z_]+:agentwatch_[a-z_]+:[a-z0-9_]+$")
    for rule in _rules("record"):
        name = rule["record"]
        if name.startswith("gen_ai_"):
            continue  # OpenTelemetry names, kept verbatim on purpose
        assert pattern.match(name), name


def test_genai_compatibility_rules_expose_the_otel_names() -> None:
    recorded = {rule["record"] for rule in _rules("record")}
    assert {
        "gen_ai_client_token_usage_sum",
        "gen_ai_client_token_usage_count",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_sum",
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_invoke_agent_duration_seconds_bucket",
        "gen_ai_invoke_agent_duration_seconds_sum",
        "gen_ai_invoke_agent_duration_seconds_count",
        "gen_ai_execute_tool_duration_seconds_bucket",
        "gen_ai_execute_tool_duration_seconds_sum",
        "gen_ai_execute_tool_duration_seconds_count",
    } <= recorded
    operations = {
        r["record"].split("_duration")[0]: r["labels"]["gen_ai_operation_name"]
        for r in _rules("record")
        if r["record"].endswith("_duration_seconds_count")
    }
    assert operations == {
        "gen_ai_client_operation": "chat",
        "gen_ai_invoke_agent": "invoke_agent",
        "gen_ai_execute_tool": "execute_tool",
    }


def test_rules_select_agentwatch_series_through_the_mixin_selector() -> None:
    mixin = load_config()
    raw_reads = 0
    for rule in _rules("record") + _rules("alert"):
        for match in re.finditer(r"\b(agentwatch_[a-z_]+|up)\{([^}]*)\}", rule["expr"]):
            raw_reads += 1
            assert mixin.selector in match.group(2), rule["expr"]
        assert not re.search(r"\b(agentwatch_[a-z_]+)\b(?![{:_])", rule["expr"]), rule["expr"]
    assert raw_reads > 20


def test_burn_rate_alerts_use_the_configured_slo_windows_and_traffic_guard() -> None:
    mixin = load_config()
    burn = [r for r in _rules("alert") if r["alert"].endswith("ErrorBudgetBurn")]
    assert len(burn) == 2 * len(mixin.burn_rate_windows)
    for rule in burn:
        slo = getattr(mixin.slos, rule["labels"]["slo"])
        row = next(
            w
            for w in mixin.burn_rate_windows
            if (w.long, w.short) == (rule["labels"]["long"], rule["labels"]["short"])
        )
        assert f"({row.factor:g} * (1 - {slo.target:g}))" in rule["expr"]
        assert rule["labels"]["severity"] == row.severity
        assert rule.get("for") == row.for_
        # The minimum-traffic guard: enough events in the long window.
        assert re.search(rf":rate{row.long} \* \d+ >= {slo.min_events}$", rule["expr"]), rule[
            "expr"
        ]


@pytest.mark.slow
def test_without_the_traffic_guard_a_quiet_agent_would_page(tmp_path: Path) -> None:
    """Guards the guard: the promtool case of the quiet agent fails once min_events is 0."""
    out = tmp_path / "nomin"
    overlay = tmp_path / "mixin.yaml"
    overlay.write_text("slos: {executions: {min_events: 0}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "agentwatch.mixin", "generate", "--mixin", str(overlay),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    test = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    test["rule_files"] = [str(p) for p in sorted((out / "prometheus" / "rules").glob("*.yml"))]
    test["tests"] = [c for c in test["tests"] if 'agent="quiet"' in str(c["input_series"])]
    assert len(test["tests"]) == 1
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool("test", "rules", str(path))
    assert result.returncode != 0
    assert 'agent="quiet"' in result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_rejects_a_rule_test_that_expects_the_wrong_alert(tmp_path: Path) -> None:
    """Guards the guard: a wrong expectation makes promtool fail, so the suite can fail."""
    broken = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    broken["rule_files"] = [str(p) for p in RULE_FILES]
    case = broken["tests"][0]
    broken["tests"] = [case]  # one case is enough, and fast
    case["alert_rule_test"] = [
        {"eval_time": "20m", "alertname": "AgentwatchBudgetNearLimit", "exp_alerts": [{}]}
    ]
    path = tmp_path / "broken_test.yml"
    path.write_text(yaml.safe_dump(broken))
    done = _promtool("test", "rules", str(path))
    assert done.returncode != 0


def _doc_yaml_blocks(name: str) -> list[Any]:
    text = (REPO / "docs" / name).read_text(encoding="utf-8")
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)]


def test_existing_stack_scrape_job_and_rule_files_pass_promtool(tmp_path: Path) -> None:
    blocks = _doc_yaml_blocks("existing-stack.md")
    scrape = next(b for b in blocks if "scrape_configs" in b)
    rule_files = next(b for b in blocks if "rule_files" in b)
    assert rule_files["rule_files"] == ["/etc/prometheus/rules/agentwatch-*.yml"]
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for path in RULE_FILES:
        (rules_dir / path.name).write_text(path.read_text())
    config = {**scrape, "rule_files": [str(rules_dir / "agentwatch-*.yml")]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout
    assert scrape["scrape_configs"][0]["job_name"] == load_config().job_name


def _generate(tmp_path: Path, overlay: str) -> list[Path]:
    mixin = tmp_path / "mixin.yaml"
    mixin.write_text(overlay)
    done = subprocess.run(
        [sys.executable, "-m", "agentwatch.mixin", "generate", "--mixin", str(mixin),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return sorted((tmp_path / "out" / "prometheus" / "rules").glob("*.yml"))


@pytest.mark.slow
def test_generator_writes_rules_for_a_custom_selector(tmp_path: Path) -> None:
    """The documented `--mixin ... --out ...` path: a renamed job changes every selector."""
    written = _generate(tmp_path, """selector: 'job="llm-agents",env="prod"'\n""")
    assert [p.name for p in written] == [p.name for p in RULE_FILES]
    text = "".join(p.read_text() for p in written)
    assert 'job="llm-agents",env="prod"' in text and 'job="agentwatch"' not in text
    check = _promtool("check", "rules", *map(str, written))
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_aggregation_labels_rename_recordings_and_the_alerts_follow(tmp_path: Path) -> None:
    written = _generate(tmp_path, "aggregation_labels: [cluster]\n")
    check = _promtool("check", "rules", *map(str, written))
    assert check.returncode == 0, check.stdout + check.stderr
    groups = [g for p in written for g in yaml.safe_load(p.read_text())["groups"]]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    assert "cluster_agent:agentwatch_executions:rate5m" in recorded
    assert not any(n.startswith("agent:") for n in recorded)
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        # Every recording an alert reads exists under its new name.
        assert metric_names(rule["expr"]) <= recorded | contract.all_sample_names() | {"up"}
        if rule["alert"].endswith("ErrorBudgetBurn") or rule["alert"] == "AgentwatchCostSpike":
            assert "cluster" in rule["expr"] or "cluster_" in rule["expr"], rule["expr"]


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("slos: {executions: {target: 1.5}}", "slos.executions.target"),
        ("rate_window: five minutes", "rate_window"),
        ("aggregation_labels: [agent]", "aggregation_labels"),
        ("runbook_url: 'https://x/{secret}'", "runbook_url"),
        ("burn_rate_windows: [{long: 5m, short: 1h, factor: 1, for: 1m, severity: page}]",
         "burn_rate_windows"),
        ("selektor: x", "unknown key 'selektor'"),
        ("[1, 2]", "expected a mapping"),
    ],
)  # fmt: skip
def test_a_bad_mixin_is_one_clear_line_and_exit_2(
    tmp_path: Path, overlay: str, message: str
) -> None:
    mixin = tmp_path / "mixin.yaml"
    mixin.write_text(overlay + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "agentwatch.mixin", "generate", "--mixin", str(mixin),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and str(mixin) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
