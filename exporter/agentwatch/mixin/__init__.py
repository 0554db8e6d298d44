"""The agentwatch monitoring mixin: Prometheus rules, alerts, Grafana dashboards, Kubernetes.

One typed `MixinConfig` (config.py) drives every generated file; `python -m agentwatch.mixin
generate` writes them (`--check` fails when the committed ones are stale):

- rules.py: recording rules (rates, ratios, percentiles, SLO windows, OpenTelemetry names);
- alerts.py: alerting rules with runbook and console links;
- dashboards.py, panels.py: the Grafana dashboards and their building blocks (need
  grafana-foundation-sdk, the `mixin` extra);
- provisioning.py, kubernetes.py: Grafana datasource, PrometheusRule, ServiceMonitor,
  dashboard ConfigMaps;
- promql.py: selector builders, and the tokenizer the contract checks use.

Nothing here is imported by `import agentwatch`.
"""

from __future__ import annotations

from agentwatch.mixin.config import MixinConfig, load_config

__all__ = ["MixinConfig", "load_config"]
