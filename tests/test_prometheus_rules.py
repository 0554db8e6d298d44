"""The Prometheus part of the bundle: config and rules valid, tested, current, in contract.

`promtool` checks the config and rules and runs the unit tests in prometheus/tests/; the rest
reads the generated YAML to prove what promtool cannot: every alert is tested both firing and
silent, carries severity/summary/description/runbook_url with a matching runbook section, and
only reads metrics of the contract or recording rules the bundle defines.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agentwatch import contract
from support.binaries import require_binary

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


generator = _load("agentwatch_generate_rules", PROMETHEUS / "generate_rules.py")
promql = _load("agentwatch_promql", PROMETHEUS / "promql.py")


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
    expected = generator.render(generator.load_mixin())
    assert sorted(expected) == sorted(p.name for p in RULE_FILES)
    for name, text in expected.items():
        committed = (PROMETHEUS / "rules" / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"prometheus/rules/{name} is stale: run python prometheus/generate_rules.py"
        )


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


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in _rules("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and "{{" not in annotations["summary"], name
        assert "{{" in annotations["description"], f"{name}: description is not templated"
        url = annotations["runbook_url"]
        assert url.endswith(f"docs/runbooks.md#{name.lower()}"), url
        assert name.lower() in headings, f"docs/runbooks.md has no section '## {name}'"


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
        names = promql.metric_names(rule["expr"])
        assert names, f"no metric found in {rule['expr']!r}"
        unknown = names - allowed
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_the_contract_check_rejects_an_invented_metric() -> None:
    mixin = generator.load_mixin()
    bogus = [{"name": "x", "rules": [{"record": "a:b:c", "expr": "rate(agentwatch_nope[5m])"}]}]
    with pytest.raises(ValueError, match="agentwatch_nope"):
        generator.check_names(mixin, bogus)


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
    } <= recorded


def test_rules_select_agentwatch_series_through_the_mixin_selector() -> None:
    mixin = generator.load_mixin()
    raw_reads = 0
    for rule in _rules("record") + _rules("alert"):
        for match in re.finditer(r"\b(agentwatch_[a-z_]+|up)\{([^}]*)\}", rule["expr"]):
            raw_reads += 1
            assert mixin.selector in match.group(2), rule["expr"]
        assert not re.search(r"\b(agentwatch_[a-z_]+)\b(?![{:_])", rule["expr"]), rule["expr"]
    assert raw_reads > 20


def test_burn_rate_alerts_use_the_configured_slo_and_windows() -> None:
    mixin = generator.load_mixin()
    burn = [r for r in _rules("alert") if r["alert"].endswith("ErrorBudgetBurn")]
    assert len(burn) == len(mixin.slos) * len(mixin.burn_windows)
    for rule in burn:
        slo = mixin.slos[rule["labels"]["slo"]]
        row = next(
            w
            for w in mixin.burn_windows
            if (w.long, w.short) == (rule["labels"]["long"], rule["labels"]["short"])
        )
        assert f"({row.factor:g} * (1 - {slo.target:g}))" in rule["expr"]
        assert rule["labels"]["severity"] == row.severity
        assert rule.get("for") == row.for_


def test_promtool_rejects_a_rule_test_that_expects_the_wrong_alert(tmp_path: Path) -> None:
    """Guards the guard: a wrong expectation makes promtool fail, so the suite can fail."""
    broken = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    broken["rule_files"] = [str(p) for p in RULE_FILES]
    case = broken["tests"][0]
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
    assert scrape["scrape_configs"][0]["job_name"] == generator.load_mixin().job_name


def test_generator_writes_rules_for_a_custom_mixin(tmp_path: Path) -> None:
    """The documented `--mixin ... --out ...` path: a renamed job changes every selector."""
    custom = (
        (PROMETHEUS / "mixin.yaml")
        .read_text()
        .replace("selector: 'job=\"agentwatch\"'", 'selector: \'job="llm-agents",env="prod"\'')
    )
    assert custom != (PROMETHEUS / "mixin.yaml").read_text()
    mixin = tmp_path / "mixin.yaml"
    mixin.write_text(custom)
    done = subprocess.run(
        [sys.executable, str(PROMETHEUS / "generate_rules.py"), "--mixin", str(mixin),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = sorted((tmp_path / "out").glob("*.yml"))
    assert [p.name for p in written] == [p.name for p in RULE_FILES]
    text = "".join(p.read_text() for p in written)
    assert 'job="llm-agents",env="prod"' in text and 'job="agentwatch"' not in text
    check = _promtool("check", "rules", *map(str, written))
    assert check.returncode == 0, check.stdout + check.stderr
