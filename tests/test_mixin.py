"""The monitoring mixin package: one config, one command, nothing stale, nothing heavy.

`agentwatch.mixin` turns one typed `MixinConfig` (defaults, plus a user's YAML overlay)
into every rule, dashboard and manifest of the bundle. These tests pin how an overlay
merges, that bad input is one line, that the committed files are what the generator writes,
that the generator stays out of `import agentwatch`, and the PromQL reader the contract and
linter checks rely on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from agentwatch.errors import ConfigError
from agentwatch.mixin.config import MixinConfig, from_mapping, load_config, to_yaml
from agentwatch.mixin.promql import metric_names, selectors
from agentwatch.mixin.render import render_all

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentwatch.mixin", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


# --------------------------------------------------------------------------------------------
# Committed output
# --------------------------------------------------------------------------------------------


def test_every_committed_generated_file_is_current() -> None:
    """The staleness check: edit the generator or its defaults, forget to regenerate, fail."""
    for relative, text in render_all(load_config()).items():
        path = REPO / relative
        assert path.exists(), f"{relative} is missing: run python -m agentwatch.mixin generate"
        assert path.read_text(encoding="utf-8") == text, (
            f"{relative} is stale: run python -m agentwatch.mixin generate"
        )


@pytest.mark.slow
def test_generate_check_reports_a_stale_file_and_exits_1(tmp_path: Path) -> None:
    assert _run("generate", "--out", str(tmp_path)).returncode == 0
    assert _run("generate", "--check", "--out", str(tmp_path)).returncode == 0
    rules = tmp_path / "prometheus" / "rules" / "agentwatch-alerts.yml"
    rules.write_text(rules.read_text() + "# edited by hand\n")
    done = _run("generate", "--check", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "prometheus/rules/agentwatch-alerts.yml" in done.stderr
    assert rules.read_text().endswith("# edited by hand\n")  # --check writes nothing


@pytest.mark.slow
def test_generate_writes_every_part_of_the_bundle(tmp_path: Path) -> None:
    done = _run("generate", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(render_all(load_config()))
    assert {Path(p).parts[0] for p in written} == {"prometheus", "grafana", "kubernetes"}


def test_the_committed_mixin_yaml_loads_back_to_the_defaults() -> None:
    """prometheus/mixin.yaml is the effective config; as an overlay it changes nothing."""
    assert load_config(REPO / "prometheus" / "mixin.yaml") == MixinConfig()


def test_show_prints_the_effective_config(tmp_path: Path) -> None:
    overlay = tmp_path / "mixin.yaml"
    overlay.write_text("aggregation_labels: [cluster]\n")
    done = _run("show", "--mixin", str(overlay))
    assert done.returncode == 0, done.stderr
    assert "aggregation_labels: [cluster]" in done.stdout
    assert load_config(overlay) == replace(MixinConfig(), aggregation_labels=("cluster",))


# --------------------------------------------------------------------------------------------
# Overlays and validation
# --------------------------------------------------------------------------------------------


def test_an_overlay_changes_only_the_keys_it_names() -> None:
    config = from_mapping({"slos": {"executions": {"target": 0.98}}, "budgets": {"for": "5m"}})
    defaults = MixinConfig()
    assert config.slos.executions.target == 0.98
    assert config.slos.executions.group_by == defaults.slos.executions.group_by
    assert config.slos.llm_requests == defaults.slos.llm_requests
    assert config.budgets.for_ == "5m"
    assert config.budgets.warning_ratio == defaults.budgets.warning_ratio
    assert config.latency == defaults.latency


def test_an_overlay_replaces_lists_and_maps_whole() -> None:
    config = from_mapping(
        {
            "genai_provider_names": {"bedrock": "aws.bedrock"},
            "burn_rate_windows": [
                {"long": "1h", "short": "5m", "factor": 14.4, "for": "2m", "severity": "critical"}
            ],
        }
    )
    assert config.genai_provider_names == {"bedrock": "aws.bedrock"}
    assert len(config.burn_rate_windows) == 1 and config.burn_rate_windows[0].for_ == "2m"


def test_an_empty_overlay_is_the_defaults(tmp_path: Path) -> None:
    overlay = tmp_path / "mixin.yaml"
    overlay.write_text("# nothing to change\n")
    assert load_config(overlay) == MixinConfig()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"selector": "job=agentwatch"}, "selector"),
        ({"selector": 'job="a"} or vector(1) or up{x="'}, "selector"),
        ({"aggregation_labels": ["__name__"]}, "aggregation_labels"),
        ({"aggregation_labels": ["cluster", "cluster"]}, "listed twice"),
        ({"slos": {"executions": {"group_by": ["model"]}}}, "slos.executions.group_by"),
        ({"slos": {"executions": {"min_events": -1}}}, "min_events"),
        ({"slos": {"executions": {"min_events": 2.5}}}, "expected an integer"),
        ({"slos": {"executions": {"target": True}}}, "expected a number"),
        ({"budgets": {"warning_ratio": 1.2}}, "budgets"),
        ({"cost_spike": {"window": "2d"}}, "cost_spike"),
        ({"console_url": "javascript:alert(1)"}, "console_url"),
        ({"console_url": "http://x/?q=1"}, "console_url"),
        ({"runbook_url": "{console_url.__class__}"}, "runbook_url"),
        ({"runbook_url": "ftp://x/{anchor}"}, "runbook_url"),
        ({"kubernetes": {"namespace": "Not_A_Namespace"}}, "kubernetes.namespace"),
        ({"kubernetes": {"rule_labels": {"release": "has space"}}}, "kubernetes.rule_labels"),
        ({"kubernetes": {"scrape_timeout": "1m"}}, "scrape_timeout"),
        ({"burn_rate_windows": []}, "non-empty list"),
        ({"burn_rate_windows": [{"long": "1h"}]}, "missing"),
        ({"latency": "fast"}, "expected a mapping"),
        ({"latency": {"llm_p95": 3}}, "unknown key 'llm_p95'"),
    ],
)
def test_a_bad_value_is_refused_with_its_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        from_mapping(raw, "my-mixin.yaml")
    assert str(caught.value).startswith("my-mixin.yaml")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [("key: [unclosed", "not valid YAML"), ("- a\n- b\n", "expected a mapping")],
)
def test_an_unreadable_overlay_is_one_line_and_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    overlay = tmp_path / "mixin.yaml"
    overlay.write_text(content)
    done = _run("generate", "--mixin", str(overlay), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_missing_overlay_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _run("generate", "--mixin", str(tmp_path / "nope.yaml"), "--out", str(tmp_path))
    assert done.returncode == 2 and "cannot read the mixin file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_an_unwritable_output_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where a directory should be")
    done = _run("generate", "--out", str(blocker / "sub"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot" in done.stderr and "Traceback" not in done.stderr


def test_the_mixin_yaml_is_commented_from_the_field_help() -> None:
    text = to_yaml(MixinConfig())
    assert text.startswith("# GENERATED")
    assert "# Minimum number of events in a burn-rate alert's long window" in text
    assert "min_events: 10" in text


# --------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(out.stdout.split())


def test_import_agentwatch_loads_no_generator() -> None:
    modules = _modules_after("import agentwatch")
    assert not {m for m in modules if m.startswith(("agentwatch.mixin", "grafana_foundation"))}


def test_rules_generate_without_the_grafana_sdk() -> None:
    """The dev/mixin extra is only needed for dashboards."""
    modules = _modules_after(
        "from agentwatch.mixin.config import load_config\n"
        "from agentwatch.mixin.render import prometheus_files\n"
        "prometheus_files(load_config())"
    )
    assert "agentwatch.mixin.rules" in modules
    assert not {m for m in modules if m.startswith("grafana_foundation_sdk")}


def test_no_generator_edits_sys_path_or_loads_files_by_path() -> None:
    for path in (REPO / "exporter" / "agentwatch" / "mixin").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text and "spec_from_file_location" not in text, path.name
    assert not list(REPO.glob("prometheus/*.py")) and not list(REPO.glob("grafana/*.py"))


# --------------------------------------------------------------------------------------------
# PromQL reader
# --------------------------------------------------------------------------------------------


def test_selectors_report_name_matchers_range_and_enclosing_function() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job=~"$job",le!="+Inf"}'
        "[$__rate_interval])))\n/ on (job) group_left () b:c:rate5m"
    )
    found = selectors(expr)
    assert [s.name for s in found] == ["a_bucket", "b:c:rate5m"]
    assert found[0].matchers == (("job", "=~", "$job"), ("le", "!=", "+Inf"))
    assert found[0].range == "$__rate_interval" and found[0].function == "rate"
    assert found[1].range is None and found[1].function is None


def test_selectors_are_not_fooled_by_strings_labels_and_keywords() -> None:
    expr = (
        'label_replace(sum(x_total{a="rate(y_total[5m])"}) or vector(0), "dst", "$1", '
        '"src", "(.*)") and on (agent) z offset 5m unless bool time()'
    )
    assert metric_names(expr) == {"x_total", "z"}
    x = selectors(expr)[0]
    assert x.function == "sum" and x.range is None  # a raw counter: the linter rule fails it


def test_subqueries_and_nested_calls_keep_the_innermost_function() -> None:
    (inner,) = selectors("max_over_time(rate(x_total[5m])[1h:1m])")
    assert inner.function == "rate" and inner.range == "5m"


@pytest.mark.slow
def test_the_overlays_in_the_docs_are_valid() -> None:
    text = (REPO / "docs" / "existing-stack.md").read_text(encoding="utf-8")
    overlays = re.findall(r"cat > [\w-]+\.yaml <<'YAML'\n(.*?)\nYAML\n", text, flags=re.DOTALL)
    assert len(overlays) >= 2
    for overlay in overlays:
        config = from_mapping(yaml.safe_load(overlay), "docs/existing-stack.md")
        render_all(config)  # and every file generates from it
