"""The monitoring mixin's configuration: every selector, threshold and window, defined once.

One `MixinConfig` drives the recording rules, the alerts, the Grafana dashboards, the Grafana
datasource provisioning and the Kubernetes manifests, so they always agree (a renamed recording
rule cannot leave a dashboard blank). The defaults below are the bundle committed in this
repository; `prometheus/mixin.yaml` is generated from them, with each field's `help` as a
comment. A user changes values by writing an *overlay*: a YAML file with only the keys they
change, merged over these defaults by `load_config()` (lists and maps are replaced, sections
are merged key by key).

Validation happens here, once, with a one-line `ConfigError` naming the file and the key;
the generators trust a `MixinConfig`.
"""

from __future__ import annotations

import re
import string
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from agentwatch import contract
from agentwatch.errors import ConfigError

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w|y)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"^{_MATCHER}(,{_MATCHER})*$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_K8S_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_K8S_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_RUNBOOK_FIELDS = frozenset({"console_url", "alertname", "anchor"})

#: Labels of agentwatch's own metrics: an aggregation label must not collide with them.
_METRIC_LABELS = frozenset(label for spec in contract.ALL_METRICS for label in spec.labels) | {
    "le",
    "quantile",
}


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `5m` or `1d` (one unit, as the mixin uses)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _help(text: str, key: str | None = None) -> dict[str, str]:
    """Field metadata: the comment written above the key in the generated mixin.yaml."""
    meta = {"help": " ".join(text.split())}
    if key is not None:
        meta["key"] = key
    return meta


@dataclass(frozen=True)
class BurnWindow:
    """One row of the multi-window multi-burn-rate table (Google SRE workbook, chapter 5)."""

    long: str
    short: str
    factor: float
    for_: str = field(metadata=_help("", key="for"))
    severity: str = "critical"


@dataclass(frozen=True)
class Slo:
    """An error-budget SLO: its target, the level it is judged at, the traffic it needs."""

    target: float = field(metadata=_help("Fraction of good events over 30 days (0 < target < 1)."))
    group_by: tuple[str, ...] = field(
        metadata=_help("Labels the SLO is judged per: one alert per value combination.")
    )
    min_events: int = field(
        default=10,
        metadata=_help(
            """Minimum number of events in a burn-rate alert's long window before it may fire.
            Below it the error ratio is noise: an agent doing 3 runs an hour has a 25% error
            ratio after one failure. With 10, one failure never pages (1/10 is under the
            14.4% fast-burn threshold of a 99% SLO) and two failures in an hour still do.
            Raise it for noisy agents, set 0 to judge every event."""
        ),
    )


@dataclass(frozen=True)
class Slos:
    """The two error-budget SLOs the alerts judge."""

    executions: Slo = field(
        default=Slo(target=0.99, group_by=("agent",)),
        metadata=_help(
            """Agent runs: 1% may fail, a 30-day budget of about 7 hours of total failure.
            Lower the target for agents that legitimately fail often (exploratory agents),
            raise it for customer-facing ones."""
        ),
    )
    llm_requests: Slo = field(
        default=Slo(target=0.995, group_by=("model", "provider")),
        metadata=_help(
            """LLM requests per model and provider: providers typically promise >= 99.5%;
            raise it if you retry upstream."""
        ),
    )


_DEFAULT_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "2m", "critical"),
    BurnWindow("6h", "30m", 6.0, "15m", "critical"),
    BurnWindow("1d", "2h", 3.0, "1h", "warning"),
    BurnWindow("3d", "6h", 1.0, "3h", "warning"),
)


@dataclass(frozen=True)
class Budgets:
    """Thresholds of the budget alerts (the budgets themselves live in agentwatch's config)."""

    warning_ratio: float = field(
        default=0.8,
        metadata=_help(
            """Fraction of the limit at which the warning fires. Lower it (0.7) for month
            budgets that need procurement lead time; raise it (0.9) for day budgets that
            reset soon anyway."""
        ),
    )
    critical_ratio: float = field(
        default=1.0, metadata=_help("Fraction of the limit at which the paging alert fires.")
    )
    for_: str = field(
        default="0m",
        metadata=_help(
            """Budget gauges are exact sums from the store and never decrease inside a
            period, so there is no noise to debounce: fire as soon as a scrape crosses the
            line. Raise it only to tolerate brief excursions.""",
            key="for",
        ),
    )
    forecast_window: str = field(
        default="6h",
        metadata=_help(
            """Spend rate used to extrapolate to the end of the period. Short windows react
            to a burst, long ones smooth daily cycles; 6h suits month budgets, 1h day
            budgets."""
        ),
    )
    forecast_for: str = field(
        default="30m",
        metadata=_help("How long the forecast must stay above the limit before the warning."),
    )
    refused_window: str = field(
        default="10m",
        metadata=_help(
            """Window over which any LLM call refused by an enforcing budget (enforce: true)
            fires the refusal warning: users of that scope are being turned away."""
        ),
    )


@dataclass(frozen=True)
class Latency:
    """The LLM latency alert."""

    llm_p95_seconds: float = field(
        default=10.0,
        metadata=_help(
            """p95 of LLM request duration (request to last token) above which a model is
            slow. 10s suits chat completions; raise it for reasoning or large-output
            models."""
        ),
    )
    min_request_rate: float = field(
        default=0.01,
        metadata=_help("Requests per second below which a model's p95 is too noisy to alert."),
    )
    for_: str = field(default="10m", metadata=_help("", key="for"))


@dataclass(frozen=True)
class CostSpike:
    """The cost spike alert: recent spend rate against a baseline."""

    window: str = field(default="15m", metadata=_help("Window of the recent spend rate."))
    baseline_window: str = field(
        default="1d", metadata=_help("Window the recent rate is averaged over as baseline.")
    )
    factor: float = field(
        default=3.0, metadata=_help("Fire when the recent rate exceeds factor x the baseline...")
    )
    min_usd_per_hour: float = field(
        default=0.5,
        metadata=_help(
            """... and is above this absolute spend, so cheap agents do not page on pennies.
            Raise it to your smallest cost worth a look."""
        ),
    )
    for_: str = field(default="10m", metadata=_help("", key="for"))


@dataclass(frozen=True)
class Health:
    """Alerts about agentwatch itself."""

    target_down_for: str = field(
        default="5m",
        metadata=_help("How long the scrape must fail before 'target down'; covers a restart."),
    )
    absent_for: str = field(
        default="10m",
        metadata=_help("How long the job may be missing from Prometheus before 'absent'."),
    )
    error_window: str = field(
        default="10m",
        metadata=_help("Window over which any dropped record or failed store write fires."),
    )
    store_down_for: str = field(
        default="5m",
        metadata=_help("How long `agentwatch serve` may fail to read the store."),
    )


@dataclass(frozen=True)
class Grafana:
    """Dashboards and the provisioned datasource."""

    datasource_uid: str = field(
        default="agentwatch-prometheus",
        metadata=_help(
            """uid of the provisioned Prometheus datasource, the default of every
            dashboard's datasource variable."""
        ),
    )
    datasource_name: str = field(
        default="Prometheus", metadata=_help("Name of the provisioned datasource.")
    )
    datasource_url: str = field(
        default="http://prometheus:9090",
        metadata=_help("URL of Prometheus as Grafana's server reaches it (the compose stack's)."),
    )
    scrape_interval: str = field(
        default="15s",
        metadata=_help(
            """Prometheus' scrape interval, given to Grafana so $__rate_interval covers at
            least 4 scrapes."""
        ),
    )
    refresh: str = field(default="30s", metadata=_help("Dashboard auto-refresh interval."))


@dataclass(frozen=True)
class Kubernetes:
    """prometheus-operator and Grafana-sidecar manifests (kubernetes/)."""

    namespace: str = field(
        default="monitoring",
        metadata=_help("Namespace of the PrometheusRule, ServiceMonitor and ConfigMaps."),
    )
    labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/part-of": "agentwatch"},
        metadata=_help("Labels on every generated object."),
    )
    rule_labels: dict[str, str] = field(
        default_factory=dict,
        metadata=_help(
            """Extra labels the Prometheus object's ruleSelector expects on PrometheusRules
            (kube-prometheus-stack: {release: <helm release name>})."""
        ),
    )
    monitor_labels: dict[str, str] = field(
        default_factory=dict,
        metadata=_help(
            """Extra labels the Prometheus object's serviceMonitorSelector expects
            (kube-prometheus-stack: {release: <helm release name>})."""
        ),
    )
    service_selector: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "agentwatch"},
        metadata=_help("Labels of the Service in front of `agentwatch serve`."),
    )
    service_namespaces: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "Namespaces to look for that Service in; empty: the ServiceMonitor's namespace."
        ),
    )
    port: str = field(
        default="metrics",
        metadata=_help("Name of the Service port that exposes agentwatch serve's 9747."),
    )
    scrape_interval: str = field(default="15s", metadata=_help("Scrape interval."))
    scrape_timeout: str = field(
        default="12s",
        metadata=_help(
            "Budget gauges are computed from the store at scrape time: allow it a moment."
        ),
    )
    dashboard_labels: dict[str, str] = field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        metadata=_help(
            """Labels the Grafana dashboard sidecar watches for (kube-prometheus-stack and
            the Grafana Helm chart: grafana_dashboard: "1")."""
        ),
    )
    dashboard_annotations: dict[str, str] = field(
        default_factory=lambda: {"grafana_folder": "agentwatch"},
        metadata=_help(
            """Annotations on the dashboard ConfigMaps; grafana_folder names the folder
            when the sidecar's folderAnnotation is set to it."""
        ),
    )


@dataclass(frozen=True)
class MixinConfig:
    """The whole mixin. Field `help` texts become comments of prometheus/mixin.yaml."""

    selector: str = field(
        default='job="agentwatch"',
        metadata=_help(
            """Label matchers (without braces) that select agentwatch's series in rules,
            alerts and dashboards. Change it when your scrape job has another name, or to
            narrow to one environment, e.g. 'job="agentwatch",env="prod"'."""
        ),
    )
    job_name: str = field(
        default="agentwatch",
        metadata=_help(
            """Scrape job name: the compose stack's prometheus.yml and the Kubernetes
            ServiceMonitor give agentwatch's targets this job label."""
        ),
    )
    aggregation_labels: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            """Labels kept in every aggregation (recording rules, alerts) and offered as
            dashboard variables. Add e.g. [cluster] when one Prometheus sees several
            agentwatch deployments that must not be summed together. Each label multiplies
            the recorded series; the recording-rule names start with it."""
        ),
    )
    attribution: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            """The attribution dimensions agentwatch's config declares (attribution: team,
            project, customer, ...). Each gets recording rules of spend, tokens and requests
            by its value and a dashboard row of spend and tokens by it. Each value is one
            more series per rule: list only dimensions of a few hundred values at most."""
        ),
    )
    rate_window: str = field(
        default="5m",
        metadata=_help(
            """Window of the recording rules the current-value panels and the latency alert
            read (rate5m & co.). Must cover at least 4 scrape intervals."""
        ),
    )
    slos: Slos = field(
        default_factory=Slos,
        metadata=_help("Error-budget SLOs, alerted with multi-window multi-burn-rate alerts."),
    )
    burn_rate_windows: tuple[BurnWindow, ...] = field(
        default=_DEFAULT_WINDOWS,
        metadata=_help(
            """(long, short, factor, for, severity). A factor of 14.4 over 1h spends 2% of a
            30-day budget; 6 over 6h spends 5%; 3 over 1d and 1 over 3d spend 10%. Pages
            (critical) for fast burns, tickets (warning) for slow ones. Change only with the
            SRE workbook's table at hand."""
        ),
    )
    budgets: Budgets = field(default_factory=Budgets, metadata=_help("Budget alerts."))
    latency: Latency = field(default_factory=Latency, metadata=_help("LLM latency alert."))
    cost_spike: CostSpike = field(default_factory=CostSpike, metadata=_help("Cost spikes."))
    health: Health = field(default_factory=Health, metadata=_help("Pipeline health alerts."))
    console_url: str = field(
        default="http://127.0.0.1:9747",
        metadata=_help(
            """Base URL of the agentwatch console, as a browser reaches it (agentwatch serve's
            --web.external-url). Alerts link to the runs that fired them and dashboards to
            runs, models and budgets under it."""
        ),
    )
    runbook_url: str = field(
        default="{console_url}/ui/runbooks#{anchor}",
        metadata=_help(
            """Every alert's runbook_url. Placeholders: {console_url}, {alertname} and
            {anchor} (the alert name in lower case, the heading anchor of docs/runbooks.md).
            Point it at your wiki or your fork, e.g.
            https://github.com/you/agentwatch/blob/main/docs/runbooks.md#{anchor}."""
        ),
    )
    genai_provider_names: dict[str, str] = field(
        default_factory=lambda: {
            "azure": "azure.ai.openai",
            "azure_ai": "azure.ai.inference",
            "bedrock": "aws.bedrock",
            "gemini": "gcp.gemini",
            "mistral": "mistral_ai",
            "vertex_ai": "gcp.vertex_ai",
            "watsonx": "ibm.watsonx.ai",
            "xai": "x_ai",
        },
        metadata=_help(
            """LiteLLM provider names -> OpenTelemetry gen_ai.provider.name values, used by
            the GenAI recording rules. Providers not listed keep their LiteLLM name."""
        ),
    )
    grafana: Grafana = field(default_factory=Grafana, metadata=_help("Grafana."))
    kubernetes: Kubernetes = field(default_factory=Kubernetes, metadata=_help("Kubernetes."))

    def runbook(self, alertname: str) -> str:
        """The runbook URL of one alert."""
        return self.runbook_url.format(
            console_url=self.console_url, alertname=alertname, anchor=alertname.lower()
        )


# --------------------------------------------------------------------------------------------
# Loading an overlay
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


def load_config(path: Path | None = None) -> MixinConfig:
    """The defaults, with the overlay file at `path` (if any) merged over them.

    Raises:
        ConfigError: the file is unreadable, not YAML, or a key is unknown or invalid
            (one line naming the file and the key).
    """
    if path is None:
        return validate(MixinConfig(), "defaults")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mixin file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of mixin keys, got {type(raw).__name__}")
    return validate(_merge(MixinConfig(), raw, f"{path}"), str(path))


def from_mapping(raw: Mapping[str, Any], where: str = "mixin") -> MixinConfig:
    """The defaults with `raw` merged over them (what `load_config` does with a file)."""
    return validate(_merge(MixinConfig(), raw, where), where)


def _key(f: Any) -> str:
    return str(f.metadata.get("key", f.name))


def _merge(base: T, raw: Mapping[str, Any], where: str) -> T:
    assert is_dataclass(base) and not isinstance(base, type)
    hints = get_type_hints(type(base))
    by_key = {_key(f): f for f in fields(base)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        f = by_key.get(str(key))
        if f is None:
            known = ", ".join(sorted(by_key))
            raise ConfigError(f"{where}: unknown key {key!r} (known: {known})")
        changes[f.name] = _convert(getattr(base, f.name), hints[f.name], value, f"{where}.{key}")
    return replace(base, **changes)


def _convert(current: Any, hint: Any, value: Any, where: str) -> Any:
    if is_dataclass(current):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _merge(current, value, where)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint == tuple[str, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(_convert("", str, item, f"{where}[{i}]") for i, item in enumerate(value))
    if hint == dict[str, str]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of strings, got {value!r}")
        return {str(k): _convert("", str, v, f"{where}.{k}") for k, v in value.items()}
    if hint == tuple[BurnWindow, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty list of windows, got {value!r}")
        rows = []
        for i, row in enumerate(value):
            if not isinstance(row, Mapping):
                raise ConfigError(f"{where}[{i}]: expected a mapping, got {row!r}")
            missing = {"long", "short", "factor", "for", "severity"} - set(row)
            if missing:
                raise ConfigError(f"{where}[{i}]: missing {', '.join(sorted(missing))}")
            template = BurnWindow("1h", "5m", 1.0, "0m", "warning")
            rows.append(_merge(template, row, f"{where}[{i}]"))
        return tuple(rows)
    raise AssertionError(f"unhandled mixin field type {hint!r}")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate(config: MixinConfig, where: str) -> MixinConfig:
    """Check every value; return the config unchanged.

    Raises:
        ConfigError: one line naming `where` and the offending key.
    """

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{where}: {key}: {message}")

    def duration(key: str, value: str) -> None:
        if not _DURATION.match(value):
            fail(key, f"expected a Prometheus duration like 5m or 1h, got {value!r}")

    def positive(key: str, value: float) -> None:
        if not value > 0:
            fail(key, f"must be positive, got {value:g}")

    if not _SELECTOR.match(config.selector):
        fail("selector", f'expected label matchers like job="agentwatch", got {config.selector!r}')
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", config.job_name):
        fail("job_name", f"expected a job name like agentwatch, got {config.job_name!r}")
    for label in config.aggregation_labels:
        if not _LABEL.match(label) or label.startswith("__"):
            fail("aggregation_labels", f"{label!r} is not a label name")
        if label in _METRIC_LABELS:
            fail("aggregation_labels", f"{label!r} is already a label of agentwatch's metrics")
    if len(set(config.aggregation_labels)) != len(config.aggregation_labels):
        fail("aggregation_labels", "a label is listed twice")
    for label in config.attribution:
        if not _LABEL.match(label) or label.startswith("__"):
            fail("attribution", f"{label!r} is not a label name")
        if label in _METRIC_LABELS or label in config.aggregation_labels:
            fail("attribution", f"{label!r} is already a label of agentwatch's metrics")
    if len(set(config.attribution)) != len(config.attribution):
        fail("attribution", "a dimension is listed twice")
    duration("rate_window", config.rate_window)
    if seconds(config.rate_window) < 60:
        fail("rate_window", "must be at least 1m (4 scrapes of 15s)")
    for name in ("executions", "llm_requests"):
        slo: Slo = getattr(config.slos, name)
        if not 0.0 < slo.target < 1.0:
            fail(f"slos.{name}.target", f"must be between 0 and 1, got {slo.target:g}")
        if not slo.group_by:
            fail(f"slos.{name}.group_by", "needs at least one label")
        metric = contract.EXECUTIONS if name == "executions" else contract.LLM_REQUESTS
        for label in slo.group_by:
            if label not in metric.labels or label == "status":
                fail(f"slos.{name}.group_by", f"{label!r} is not a label of {metric.name}")
        if slo.min_events < 0:
            fail(f"slos.{name}.min_events", f"must be 0 or more, got {slo.min_events}")
    for i, row in enumerate(config.burn_rate_windows):
        key = f"burn_rate_windows[{i}]"
        for attr in ("long", "short", "for_"):
            duration(f"{key}.{attr.rstrip('_')}", getattr(row, attr))
        if seconds(row.short) >= seconds(row.long):
            fail(key, f"short window {row.short} must be shorter than long window {row.long}")
        positive(f"{key}.factor", row.factor)
        if row.severity not in ("critical", "warning"):
            fail(f"{key}.severity", f"must be critical or warning, got {row.severity!r}")
    b = config.budgets
    if not 0 < b.warning_ratio < b.critical_ratio:
        fail("budgets", "need 0 < warning_ratio < critical_ratio")
    for key, value in (
        ("budgets.for", b.for_),
        ("budgets.forecast_window", b.forecast_window),
        ("budgets.forecast_for", b.forecast_for),
        ("budgets.refused_window", b.refused_window),
        ("latency.for", config.latency.for_),
        ("cost_spike.window", config.cost_spike.window),
        ("cost_spike.baseline_window", config.cost_spike.baseline_window),
        ("cost_spike.for", config.cost_spike.for_),
        ("health.target_down_for", config.health.target_down_for),
        ("health.absent_for", config.health.absent_for),
        ("health.error_window", config.health.error_window),
        ("health.store_down_for", config.health.store_down_for),
        ("grafana.scrape_interval", config.grafana.scrape_interval),
        ("grafana.refresh", config.grafana.refresh),
        ("kubernetes.scrape_interval", config.kubernetes.scrape_interval),
        ("kubernetes.scrape_timeout", config.kubernetes.scrape_timeout),
    ):
        duration(key, value)
    positive("latency.llm_p95_seconds", config.latency.llm_p95_seconds)
    positive("latency.min_request_rate", config.latency.min_request_rate)
    positive("cost_spike.factor", config.cost_spike.factor)
    if seconds(config.cost_spike.window) >= seconds(config.cost_spike.baseline_window):
        fail("cost_spike", "window must be shorter than baseline_window")
    if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", config.console_url):
        fail("console_url", f"expected an http(s) URL without query, got {config.console_url!r}")
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(config.runbook_url) if f}
    except ValueError:
        used = {"{"}
    if not used <= _RUNBOOK_FIELDS:
        fail("runbook_url", f"placeholders may be {sorted(_RUNBOOK_FIELDS)}, got {sorted(used)}")
    if not re.match(r"^(https?://|\{console_url\})", config.runbook_url):
        fail("runbook_url", "must start with http(s):// or {console_url}")
    k = config.kubernetes
    for key, value in (
        ("kubernetes.namespace", k.namespace),
        *[("kubernetes.service_namespaces", n) for n in k.service_namespaces],
    ):
        if not _K8S_NAME.match(value) or len(value) > 63:
            fail(key, f"{value!r} is not a Kubernetes namespace name")
    for key, labels in (
        ("kubernetes.labels", k.labels),
        ("kubernetes.rule_labels", k.rule_labels),
        ("kubernetes.monitor_labels", k.monitor_labels),
        ("kubernetes.service_selector", k.service_selector),
        ("kubernetes.dashboard_labels", k.dashboard_labels),
    ):
        for name, value in labels.items():
            if not _K8S_LABEL_KEY.match(name) or not _K8S_LABEL_VALUE.match(value):
                fail(key, f"{name}: {value!r} is not a valid Kubernetes label")
    if not k.service_selector:
        fail("kubernetes.service_selector", "needs at least one label")
    if seconds(k.scrape_timeout) > seconds(k.scrape_interval):
        fail("kubernetes.scrape_timeout", "must not exceed scrape_interval")
    return config


# --------------------------------------------------------------------------------------------
# The generated, commented mixin.yaml
# --------------------------------------------------------------------------------------------

_YAML_HEADER = """\
# GENERATED by `python -m agentwatch.mixin generate` from agentwatch/mixin/config.py.
# DO NOT EDIT: this is the configuration the rules, alerts, dashboards and Kubernetes manifests
# next to it were generated with. To change a value for your stack, write a file with only the
# keys you change (it is merged over these values; lists and maps are replaced), e.g.
#
#     aggregation_labels: [cluster]
#     slos: {executions: {target: 0.98}}
#
# then: python -m agentwatch.mixin generate --mixin your-mixin.yaml --out DIR
# (docs/existing-stack.md). The promtool tests in prometheus/tests/ pin these values.
"""


def to_yaml(config: MixinConfig) -> str:
    """The effective configuration as commented YAML (each field's help above its key)."""
    return _YAML_HEADER + "\n" + "\n".join(_emit(config, 0)) + "\n"


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(
        value, default_flow_style=True, width=10_000, allow_unicode=True, sort_keys=False
    )
    return text.strip().removesuffix("...").strip()


def _emit(obj: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        help_text = f.metadata.get("help", "")
        if help_text:
            if lines and indent == 0:
                lines.append("")
            wrapped = textwrap.wrap(help_text, width=96 - indent - 2, break_on_hyphens=False)
            lines.extend(f"{pad}# {line}" for line in wrapped)
        key = _key(f)
        if is_dataclass(value):
            lines.append(f"{pad}{key}:")
            lines.extend(_emit(value, indent + 2))
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):
            lines.append(f"{pad}{key}:")
            for row in value:
                row_map = {_key(rf): getattr(row, rf.name) for rf in fields(row)}
                lines.append(f"{pad}  - {_scalar(row_map)}")
        elif isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  {_scalar(k)}: {_scalar(v)}" for k, v in value.items())
        else:
            plain = list(value) if isinstance(value, tuple) else value
            lines.append(f"{pad}{key}: {_scalar(plain)}")
    return lines


def field_default(cls: type[Any], name: str) -> Any:
    """The default of a dataclass field (for documentation tests)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(name)
