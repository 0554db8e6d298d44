"""Kubernetes manifests: a PrometheusRule, a ServiceMonitor and Grafana dashboard ConfigMaps.

For clusters running prometheus-operator (kube-prometheus-stack) and Grafana's dashboard
sidecar. Generated from the same `MixinConfig` as the plain files, so the rules are the same
groups and the ServiceMonitor gives agentwatch's targets the `job` label the mixin selects.
tests/test_kubernetes.py validates them against the CRDs' OpenAPI schemas.
"""

from __future__ import annotations

from typing import Any

from agentwatch.mixin.config import MixinConfig
from agentwatch.mixin.rules import RuleGroup

API_VERSION = "monitoring.coreos.com/v1"
NAME = "agentwatch"


def _metadata(config: MixinConfig, name: str, extra: dict[str, str]) -> dict[str, Any]:
    k = config.kubernetes
    return {"name": name, "namespace": k.namespace, "labels": {**k.labels, **extra}}


def prometheus_rule(config: MixinConfig, groups: list[RuleGroup]) -> dict[str, Any]:
    """One PrometheusRule holding every recording and alerting group."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(config, NAME, config.kubernetes.rule_labels),
        "spec": {"groups": [g.to_dict() for g in groups]},
    }


def service_monitor(config: MixinConfig) -> dict[str, Any]:
    """Scrapes the Service in front of `agentwatch serve`.

    The operator names the job after the Service; the relabeling sets it to the mixin's
    `job_name` instead, so `selector: job="agentwatch"` keeps matching whatever the Service
    is called.
    """
    k = config.kubernetes
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(k.service_selector)},
        "endpoints": [
            {
                "port": k.port,
                "path": "/metrics",
                "interval": k.scrape_interval,
                "scrapeTimeout": k.scrape_timeout,
                "relabelings": [
                    {"action": "replace", "targetLabel": "job", "replacement": config.job_name}
                ],
            }
        ],
    }
    if k.service_namespaces:
        spec["namespaceSelector"] = {"matchNames": list(k.service_namespaces)}
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": _metadata(config, NAME, k.monitor_labels),
        "spec": spec,
    }


def dashboard_config_maps(config: MixinConfig, dashboards: dict[str, str]) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard, labelled for Grafana's dashboard sidecar.

    One per dashboard keeps each well under `kubectl apply`'s 256 KiB annotation limit.
    """
    k = config.kubernetes
    maps = []
    for file_name, text in sorted(dashboards.items()):
        stem = file_name.removesuffix(".json")
        metadata = _metadata(config, f"{stem}-dashboard", k.dashboard_labels)
        if k.dashboard_annotations:
            metadata["annotations"] = dict(k.dashboard_annotations)
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata,
                "data": {file_name: text},
            }
        )
    return maps


def kustomization(files: list[str]) -> dict[str, Any]:
    """`kubectl apply -k kubernetes/` applies every manifest."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files,
    }
