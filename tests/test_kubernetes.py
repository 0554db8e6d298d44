"""kubernetes/: PrometheusRule, ServiceMonitor and Grafana dashboard ConfigMaps.

No cluster runs here: the manifests are validated against the OpenAPI schemas of the
prometheus-operator CRDs, vendored in tests/schemas/ with their release and source, with the
`jsonschema` package; the rule groups go through `promtool`; the ConfigMaps are checked for
what Kubernetes and Grafana's dashboard sidecar require.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agentwatch.mixin.config import MixinConfig, from_mapping, load_config
from agentwatch.mixin.render import render_all
from support.binaries import require_binary

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: `kubectl apply` keeps the object in an annotation; annotations total at most 256 KiB.
LAST_APPLIED_LIMIT = 262_144
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _schema(plural: str) -> dict[str, Any]:
    text = (SCHEMAS / f"monitoring.coreos.com_{plural}.v1.schema.yaml").read_text()
    assert "Source: https://github.com/prometheus-operator/prometheus-operator/blob/v" in text
    schema: dict[str, Any] = yaml.safe_load(text)
    return schema


def _validator(plural: str) -> jsonschema.protocols.Validator:
    schema = _schema(plural)
    # A valid schema (check_schema() would also compile every `pattern` as a Python regex, and
    # the CRD's Go-flavoured `^(?i)(abort|warn)?$` is not one; no manifest here uses it).
    meta = jsonschema.Draft7Validator(jsonschema.Draft7Validator.META_SCHEMA)
    assert not list(meta.iter_errors(schema))
    return jsonschema.Draft7Validator(schema)


def _documents(name: str, files: dict[str, str] | None = None) -> list[dict[str, Any]]:
    text = (KUBERNETES / name).read_text() if files is None else files[f"kubernetes/{name}"]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _errors(plural: str, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(plural).iter_errors(document)
    ]


# --------------------------------------------------------------------------------------------
# The committed manifests
# --------------------------------------------------------------------------------------------


def test_the_folder_holds_the_generated_manifests_and_a_kustomization() -> None:
    names = sorted(p.name for p in KUBERNETES.glob("*.yaml"))
    assert names == [
        "grafana-dashboards.yaml",
        "kustomization.yaml",
        "prometheusrule.yaml",
        "servicemonitor.yaml",
    ]
    (kustomization,) = _documents("kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [n for n in names if n != "kustomization.yaml"]
    for name in names:
        assert "DO NOT EDIT" in (KUBERNETES / name).read_text().splitlines()[0]


def test_prometheus_rule_validates_against_the_crd_schema() -> None:
    (rule,) = _documents("prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert _errors("prometheusrules", rule) == []
    assert DNS_1123.match(rule["metadata"]["name"])
    assert rule["metadata"]["namespace"] == load_config().kubernetes.namespace


def test_prometheus_rule_holds_exactly_the_rule_files_groups() -> None:
    (rule,) = _documents("prometheusrule.yaml")
    groups = [
        group
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert sorted(rule["spec"]["groups"], key=lambda g: g["name"]) == sorted(
        groups, key=lambda g: g["name"]
    )


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    import subprocess

    (rule,) = _documents("prometheusrule.yaml")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_service_monitor_validates_and_labels_targets_with_the_mixin_job() -> None:
    config = load_config()
    (monitor,) = _documents("servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert _errors("servicemonitors", monitor) == []
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"] == config.kubernetes.service_selector
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == config.kubernetes.port and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "12s"
    # The mixin selector is job="agentwatch": the operator would name the job after the
    # Service, so the relabeling pins it.
    assert {"action": "replace", "targetLabel": "job", "replacement": config.job_name} in (
        endpoint["relabelings"]
    )
    assert f'job="{config.job_name}"' in config.selector


def test_dashboard_config_maps_are_what_the_grafana_sidecar_loads() -> None:
    config = load_config()
    maps = _documents("grafana-dashboards.yaml")
    committed = {p.name: p.read_text() for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    assert len(maps) == len(committed) == 3
    seen = {}
    for config_map in maps:
        assert (config_map["apiVersion"], config_map["kind"]) == ("v1", "ConfigMap")
        metadata = config_map["metadata"]
        assert DNS_1123.match(metadata["name"]) and len(metadata["name"]) <= 253
        assert metadata["namespace"] == config.kubernetes.namespace
        assert metadata["labels"]["grafana_dashboard"] == "1"
        assert metadata["annotations"] == {"grafana_folder": "agentwatch"}
        ((key, text),) = config_map["data"].items()
        assert CONFIG_MAP_KEY.match(key) and key.endswith(".json")
        json.loads(text)
        seen[key] = text
        size = len(json.dumps(config_map).encode())
        assert size < LAST_APPLIED_LIMIT, f"{key}: {size} bytes breaks kubectl apply"
    assert seen == committed


# --------------------------------------------------------------------------------------------
# Another config, and the validation biting
# --------------------------------------------------------------------------------------------


def _custom() -> MixinConfig:
    return from_mapping(
        {
            "aggregation_labels": ["cluster"],
            "job_name": "llm-agents",
            "selector": 'job="llm-agents",namespace="ai"',
            "kubernetes": {
                "namespace": "observability",
                "rule_labels": {"release": "kube-prometheus-stack"},
                "monitor_labels": {"release": "kube-prometheus-stack"},
                "service_namespaces": ["ai"],
                "scrape_interval": "30s",
                "scrape_timeout": "25s",
            },
        }
    )


@pytest.mark.slow
def test_a_custom_config_flows_into_valid_manifests() -> None:
    files = render_all(_custom())
    (rule,) = _documents("prometheusrule.yaml", files)
    (monitor,) = _documents("servicemonitor.yaml", files)
    assert _errors("prometheusrules", rule) == []
    assert _errors("servicemonitors", monitor) == []
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "observability"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ai"]}
    assert monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == "llm-agents"
    records = {r.get("record") for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "cluster_agent:agentwatch_executions:rate5m" in records
    for config_map in _documents("grafana-dashboards.yaml", files):
        assert "$cluster" in next(iter(config_map["data"].values()))


@pytest.mark.parametrize(
    ("plural", "edit", "where"),
    [
        (
            "prometheusrules",
            lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": "five minutes"}),
            "for",
        ),
        ("prometheusrules", lambda d: d["spec"]["groups"][0].pop("name"), "name"),
        (
            "servicemonitors",
            lambda d: d["spec"]["endpoints"][0].update({"scrapeTimeout": "12 seconds"}),
            "scrapeTimeout",
        ),
        (
            "servicemonitors",
            lambda d: d["spec"]["endpoints"][0]["relabelings"][0].update({"action": "rename"}),
            "action",
        ),
    ],
)
def test_the_schemas_reject_a_broken_manifest(plural: str, edit: Any, where: str) -> None:
    """Guards the guard: the vendored schemas do catch mistakes."""
    name = "prometheusrule.yaml" if plural == "prometheusrules" else "servicemonitor.yaml"
    (document,) = _documents(name)
    if plural == "prometheusrules":  # a rule with `for`, to break
        group = next(g for g in document["spec"]["groups"] if any("for" in r for r in g["rules"]))
        document["spec"]["groups"] = [group]
        group["rules"] = [next(r for r in group["rules"] if "for" in r)]
    edit(document)
    errors = _errors(plural, document)
    assert errors and any(where in e for e in errors), errors
