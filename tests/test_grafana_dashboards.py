"""The Grafana part of the bundle: provisioning, dashboard structure, linter rules, live data.

Fast tests load the dashboards (the committed JSON for the default mixin config, freshly
generated JSON for a second config with `aggregation_labels: [cluster]`, another job and the
attribution dimensions `team` and `customer`) and
check what Grafana needs, the rules of Grafana's dashboard-linter (with each exception
justified where it is made), that no variable is silently ignored, and the exemplar and
console links. The slow tests run a real `agentwatch demo` workload twice, serve it with
`agentwatch serve`, let two real Prometheus servers (1s scrape and rule evaluation), one per
mixin config with that config's rules, scrape it, then execute every panel and variable
query, variables substituted, and require data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from agentwatch.mixin import dashboards as generator
from agentwatch.mixin.config import MixinConfig, from_mapping, load_config
from agentwatch.mixin.promql import Selector, metric_names, selectors
from agentwatch.mixin.provisioning import exemplar_url
from agentwatch.mixin.render import render_all
from agentwatch.mixin.rules import allowed_names, recording_groups
from support.binaries import (
    Prometheus,
    run_agentwatch,
    start_agentwatch_serve,
    start_prometheus,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "agentwatch.yaml"

#: The second, non-default mixin config every structural and live test also runs against.
CLUSTER_OVERLAY: dict[str, Any] = {
    "aggregation_labels": ["cluster"],
    "attribution": ["team", "customer"],
    "selector": 'job="llm-agents"',
    "job_name": "llm-agents",
    "rate_window": "2m",
}
CONFIGS: dict[str, MixinConfig] = {
    "default": load_config(),
    "cluster": from_mapping(CLUSTER_OVERLAY, "cluster overlay"),
}


def _generated(config: MixinConfig) -> dict[str, str]:
    return render_all(config)


_FILES = {name: _generated(config) for name, config in CONFIGS.items()}


def _dashboards(config: str = "default") -> dict[str, dict[str, Any]]:
    if config == "default":  # what is committed, not what the generator would write
        return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARD_FILES}
    return {
        Path(path).name: json.loads(text)
        for path, text in _FILES[config].items()
        if path.startswith("grafana/dashboards/")
    }


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _all_boards() -> list[tuple[str, str, dict[str, Any]]]:
    return [(c, name, b) for c in CONFIGS for name, b in _dashboards(c).items()]


BOARD_IDS = [f"{c}:{name}" for c, name, _ in _all_boards()]


def _targets(config: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(test id, panel, target) for every panel target of every dashboard of `config`."""
    found = []
    for name, board in _dashboards(config).items():
        for panel in _panels(board):
            for target in panel["targets"]:
                found.append((f"{config}:{name}:{panel['title']}:{target['refId']}", panel, target))
    return found


def _variables(config: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, board in _dashboards(config).items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                found.append((f"{config}:{name}:{variable['name']}", variable))
    return found


def _board_variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def _provisioned() -> dict[str, Any]:
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(datasources) == 1
    source: dict[str, Any] = datasources[0]
    return source


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


def test_three_dashboards_are_committed() -> None:
    assert [p.name for p in DASHBOARD_FILES] == [
        "agentwatch-agents.json",
        "agentwatch-cost.json",
        "agentwatch-llm.json",
    ]


def test_committed_dashboards_match_the_generator_output() -> None:
    for name, text in generator.render(CONFIGS["default"]).items():
        committed = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"grafana/dashboards/{name} is stale: run python -m agentwatch.mixin generate"
        )


def test_dashboards_default_to_the_provisioned_datasource_uid() -> None:
    assert _provisioned()["uid"] == CONFIGS["default"].grafana.datasource_uid


@pytest.mark.parametrize(("config", "name", "board"), _all_boards(), ids=BOARD_IDS)
def test_dashboard_has_what_grafana_needs(config: str, name: str, board: dict[str, Any]) -> None:
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), board["uid"]
    assert board["title"].startswith("agentwatch: ")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 39
    assert "agentwatch" in board["tags"]
    assert "do not edit" in board["description"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    boards = _dashboards().values()
    assert len({b["uid"] for b in boards}) == len({b["title"] for b in boards}) == 3


def test_multi_series_panels_name_their_series_in_the_legend() -> None:
    for board in _dashboards().values():
        for panel in _panels(board):
            if panel["type"] in ("timeseries", "bargauge"):
                for target in panel["targets"]:
                    assert "{{" in target.get("legendFormat", ""), panel["title"]


@pytest.mark.parametrize("config", CONFIGS)
def test_queries_read_only_contract_metrics_and_bundle_recordings(config: str) -> None:
    allowed = allowed_names(CONFIGS[config])
    exprs = [t["expr"] for _, _, t in _targets(config)]
    for _, variable in _variables(config):
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        exprs.append(match.group(1))
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= allowed, f"{expr!r} reads {names - allowed}"


def test_cost_and_llm_dashboards_offer_agent_model_and_provider() -> None:
    for name in ("agentwatch-cost.json", "agentwatch-llm.json"):
        variables = _board_variables(_dashboards()[name])
        assert {"agent", "model", "provider"} <= set(variables), name
    assert "agent" in _board_variables(_dashboards()["agentwatch-agents.json"])


def test_each_attribution_dimension_gets_a_row_of_spend_and_tokens() -> None:
    """The default mixin lists no dimension; the cluster overlay lists team and customer."""
    assert not [p for p in _panels(_dashboards()["agentwatch-cost.json"]) if "team" in p["title"]]
    board = _dashboards("cluster")["agentwatch-cost.json"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert "Spend and tokens by team" in rows and "Spend and tokens by customer" in rows
    for dimension in ("team", "customer"):
        titles = {p["title"] for p in _panels(board) if dimension in p["title"]}
        assert titles == {
            f"Top {dimension} values by spend in range",
            f"Spend rate by {dimension}",
            f"Token rate by {dimension}",
        }
    recorded = {
        rule.record
        for group in recording_groups(CONFIGS["cluster"])
        for rule in group.rules
        if group.name == "agentwatch.attribution"
    }
    assert "cluster_team:agentwatch_llm_cost_usd:rate2m" in recorded
    assert "cluster_customer_type:agentwatch_llm_tokens:rate2m" in recorded


def test_spend_rates_say_usd_per_hour() -> None:
    spend = [
        p
        for p in _panels(_dashboards()["agentwatch-cost.json"])
        if p["title"].startswith("Spend rate")
    ]
    assert len(spend) == 3
    for panel in spend:
        assert panel["fieldConfig"]["defaults"]["unit"] == generator.USD_PER_HOUR, panel["title"]
        assert all("* 3600" in t["expr"] for t in panel["targets"]), panel["title"]


# --------------------------------------------------------------------------------------------
# Grafana dashboard-linter rules (github.com/grafana/dashboard-linter, lint/rule_*.go)
# --------------------------------------------------------------------------------------------

#: panel-units-rule accepts Grafana's built-in units (the ones these dashboards use).
LINTER_UNITS = {"none", "short", "percentunit", "currencyUSD", "s", "dtdurations", "ops", "reqps"}
#: Units outside the linter's list, and why.
UNIT_EXCEPTIONS = {
    # Grafana has no money-per-time unit: currencyUSD would drop the "/h" the value means.
    generator.USD_PER_HOUR: "custom suffix unit for a spend rate",
}


@pytest.mark.parametrize(("config", "name", "board"), _all_boards(), ids=BOARD_IDS)
def test_template_variables_follow_the_linter(
    config: str, name: str, board: dict[str, Any]
) -> None:
    variables = _board_variables(board)
    # template-datasource-rule
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["label"] == "Data source"
    assert datasource["current"]["value"] == CONFIGS[config].grafana.datasource_uid
    # template-job-rule, template-instance-rule (and the same for each aggregation label,
    # the linter's optional cluster variable)
    for label in (*CONFIGS[config].aggregation_labels, "job", "instance"):
        variable = variables[label]
        assert variable["type"] == "query", label
        assert variable["datasource"]["uid"] == "${datasource}", label
        assert variable["label"] == label.title(), label
        assert variable["multi"] is True and variable["includeAll"] is True, label
        assert variable["allValue"] == ".+", label
    for variable in variables.values():
        if variable["type"] != "query":
            continue
        # template-on-time-change-reload-rule
        assert variable["refresh"] == 2, variable["name"]
        # template-label-promql-rule
        assert re.fullmatch(r"label_values\(\w+\{[^{}]+\}, \w+\)", variable["query"]["query"])
        assert variable["allValue"] == ".+" and variable["multi"], variable["name"]


@pytest.mark.parametrize(("config", "name", "board"), _all_boards(), ids=BOARD_IDS)
def test_panels_follow_the_linter(config: str, name: str, board: dict[str, Any]) -> None:
    for panel in _panels(board):
        title = panel["title"]
        # panel-datasource-rule
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        # panel-title-description-rule
        assert title.strip() and panel.get("description", "").strip(), title
        # panel-units-rule
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in LINTER_UNITS or unit in UNIT_EXCEPTIONS, f"{title}: unit {unit!r}"
        # panel-no-targets-rule
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", title
            assert target["expr"].strip(), title


def _recorded_without_scope(config: MixinConfig) -> set[str]:
    """Recording rules that aggregate job and instance away (budget ones keep every label)."""
    kept = {"job", "instance"} & set(config.aggregation_labels)
    names = set()
    for group in recording_groups(config):
        for rule in group.rules:
            name = getattr(rule, "record", "")
            if name and not name.startswith("budget:") and not kept:
                names.add(name)
    return names


def _target_selectors(config: str) -> list[tuple[str, Selector]]:
    return [(i, s) for i, _, t in _targets(config) for s in selectors(t["expr"])]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_selector_picks_job_instance_and_the_aggregation_labels(config: str) -> None:
    """target-job-rule and target-instance-rule.

    Exception: selectors of recording rules that sum over job and instance (the SLO burn
    rates) cannot filter on labels they no longer have; the mixin `selector` chose the job
    when the rule was evaluated, and the panel's description says $job / $instance do not
    apply. Listing job or instance in aggregation_labels keeps them, and then they filter.
    """
    mixin = CONFIGS[config]
    aggregated = _recorded_without_scope(mixin)
    checked = 0
    for test_id, selector in _target_selectors(config):
        for label in mixin.aggregation_labels:
            assert selector.matcher(label) == ("=~", f"${label}"), (test_id, selector)
        if selector.name in aggregated:
            continue
        checked += 1
        assert ("job", "=~", "$job") in selector.matchers, (test_id, selector)
        assert ("instance", "=~", "$instance") in selector.matchers, (test_id, selector)
        # The mixin selector is kept too: "All" = .+ must not widen to other jobs.
        for name, op, value in _matchers(mixin.selector):
            assert (name, op, value) in selector.matchers, (test_id, selector)
    assert checked > 50


def _matchers(selector: str) -> list[tuple[str, str, str]]:
    return [
        (m.group(1), m.group(2), m.group(3))
        for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector)
    ]


@pytest.mark.parametrize("config", CONFIGS)
def test_counters_are_read_only_through_rate_or_increase(config: str) -> None:
    """target-counter-agg-rule: no `_total` series is shown or summed raw."""
    for test_id, selector in _target_selectors(config):
        if selector.name.endswith("_total"):
            assert selector.range is not None, (test_id, selector)
            assert selector.function in {"rate", "irate", "increase"}, (test_id, selector)


@pytest.mark.parametrize("config", CONFIGS)
def test_rates_use_rate_interval_and_totals_the_range(config: str) -> None:
    """target-rate-interval-rule, and the range-aware policy of agentwatch/mixin/dashboards.py.

    rate() always runs over $__rate_interval; increase() over $__range (a whole-range total);
    recording rules with a fixed window are only read through max_over_time(...
    [$__rate_interval]) so a step longer than the window keeps its worst value.
    """
    for test_id, selector in _target_selectors(config):
        if selector.range is None:
            continue
        if selector.function in {"rate", "irate"}:
            assert selector.range == "$__rate_interval", (test_id, selector)
        elif selector.function == "increase":
            assert selector.range == "$__range", (test_id, selector)
        else:
            assert selector.function == "max_over_time", (test_id, selector)
            assert selector.range == "$__rate_interval", (test_id, selector)
            assert ":ratio_rate" in selector.name, (test_id, selector)


@pytest.mark.parametrize("config", CONFIGS)
def test_time_series_do_not_sample_five_minute_recordings(config: str) -> None:
    """A 5m recording plotted on a 30-day range shows one 5m value per ~40-minute step."""
    short = CONFIGS[config].rate_window
    for test_id, panel, target in _targets(config):
        if panel["type"] != "timeseries":
            continue
        for selector in selectors(target["expr"]):
            assert not selector.name.endswith(f":rate{short}"), (test_id, selector)


@pytest.mark.parametrize(("config", "name", "board"), _all_boards(), ids=BOARD_IDS)
def test_no_variable_is_ignored_silently(config: str, name: str, board: dict[str, Any]) -> None:
    """A panel whose metric lacks a variable's label says so; 'all agents' in the title."""
    variables = [v for v in _board_variables(board) if v != "datasource"]
    ignored_somewhere = set()
    for panel in _panels(board):
        text = " ".join(t["expr"] for t in panel["targets"])
        for variable in variables:
            if f"${variable}" in text:
                continue
            ignored_somewhere.add(variable)
            assert f"Not filtered by ${variable}:" in panel["description"], panel["title"]
            budgets = "{{budget}}" in " ".join(t.get("legendFormat", "") for t in panel["targets"])
            if variable == "agent" and not budgets:  # a budget has its own scope
                assert "(all agents)" in panel["title"], panel["title"]
    if name == "agentwatch-llm.json":
        assert "agent" in ignored_somewhere  # latency histograms have no agent label


def test_generator_refuses_a_panel_that_ignores_a_variable_silently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bogus(config: MixinConfig) -> Any:
        board, f = generator.new_board(
            config, "x", "agentwatch: x", "x", [], [("agent", "agentwatch_executions_total")]
        )
        expr = f"sum(rate(agentwatch_tool_call_duration_seconds_count{f.raw(only=())}[5m]))"
        board.stat("Tool calls", "Per second.", generator.Target(expr), "ops")
        return board

    monkeypatch.setattr(generator, "DASHBOARDS", {"bogus.json": bogus})
    with pytest.raises(ValueError, match=r"ignores \$agent without saying why"):
        generator.build(CONFIGS["default"])


def test_generator_refuses_a_panel_that_reads_an_invented_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def bogus(config: MixinConfig) -> Any:
        board, _ = generator.new_board(config, "x", "agentwatch: x", "x", [], [])
        expr = 'sum(rate(agentwatch_made_up_total{job=~"$job",instance=~"$instance"}[5m]))'
        board.stat("x", "x", generator.Target(expr), "short")
        return board

    monkeypatch.setattr(generator, "DASHBOARDS", {"bogus.json": bogus})
    with pytest.raises(ValueError, match="agentwatch_made_up_total"):
        generator.build(CONFIGS["default"])


# --------------------------------------------------------------------------------------------
# Exemplars and console links
# --------------------------------------------------------------------------------------------

CONSOLE_PATH = re.compile(r"^/ui/(runs|agents/[^/]+|models/[^/]+|budgets/[^/]+)$")
LINK_VARIABLE = re.compile(r"\$\{([^}]+)\}")
#: Label values are attacker-controllable strings: every one is percent-encoded in a URL.
ALLOWED_LINK_VARIABLES = re.compile(
    r"^(__from:date:iso|__to:date:iso|__field\.labels\.(agent|model|budget|error_type)"
    r":percentencode)$"
)


def test_latency_panels_show_exemplars_and_grafana_links_them_to_the_run() -> None:
    config = CONFIGS["default"]
    latency = [
        p
        for board in _dashboards().values()
        for p in _panels(board)
        if p["type"] == "timeseries" and "histogram_quantile" in p["targets"][0]["expr"]
    ]
    assert len(latency) == 4
    for panel in latency:
        assert any(t.get("exemplar") for t in panel["targets"]), panel["title"]
    (destination,) = _provisioned()["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "execution_id"
    # Grafana expands $VAR in provisioning files; $$ is a literal $.
    assert destination["url"] == exemplar_url(config).replace("$", "$$")
    assert destination["url"] == "http://127.0.0.1:9747/ui/runs/$${__value.raw}"


@pytest.mark.parametrize(("config", "name", "board"), _all_boards(), ids=BOARD_IDS)
def test_data_links_open_console_pages(config: str, name: str, board: dict[str, Any]) -> None:
    base = CONFIGS[config].console_url
    linked = 0
    for panel in _panels(board):
        links = panel["fieldConfig"]["defaults"].get("links") or []
        legends = " ".join(t.get("legendFormat", "") for t in panel["targets"])
        for link in links:
            linked += 1
            url = link["url"]
            assert url.startswith(base + "/ui/"), url
            for variable in LINK_VARIABLE.findall(url):
                assert ALLOWED_LINK_VARIABLES.match(variable), url
                label = re.search(r"labels\.(\w+)", variable)
                if label:  # the series must carry the label the link reads
                    assert f"{{{{{label.group(1)}}}}}" in legends, (panel["title"], url)
            path = urlsplit(LINK_VARIABLE.sub("x", url)).path
            assert CONSOLE_PATH.match(path), url
            if path == "/ui/runs":  # the runs of the dashboard's time range
                assert url.endswith("since=${__from:date:iso}&until=${__to:date:iso}"), url
        if panel["type"] in ("stat", "bargauge") and re.search(
            r"\{\{(agent|model|budget|error_type)\}\}", legends
        ):
            assert links, f"{panel['title']} names agents/models/budgets but links nowhere"
    assert linked >= 2


def test_dashboards_link_the_console() -> None:
    for board in _dashboards().values():
        urls = [link.get("url") for link in board["links"]]
        assert "http://127.0.0.1:9747/ui/" in urls


# --------------------------------------------------------------------------------------------
# Provisioning
# --------------------------------------------------------------------------------------------


def test_datasource_provisioning_is_what_grafana_loads() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    source = _provisioned()
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"].startswith("http://") and source["isDefault"] is True
    assert source["jsonData"]["timeInterval"] == CONFIGS["default"].grafana.scrape_interval
    # No unescaped $ outside $$: Grafana would expand it from the environment.
    assert not re.search(r"(?<!\$)\$(?!\$)", DATASOURCES.read_text().replace("$$", ""))


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["folder"] == "agentwatch"
    assert provider["disableDeletion"] is True and provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/agentwatch"


# --------------------------------------------------------------------------------------------
# Data: every query against real Prometheus servers fed by a real workload
# --------------------------------------------------------------------------------------------

#: What Grafana would put in place of each variable for "All" / the test's time range.
SUBSTITUTIONS = {
    "$agent": ".+",
    "$model": ".+",
    "$provider": ".+",
    "$job": ".+",
    "$instance": ".+",
    "$cluster": ".+",
    "$__range": "1h",
    "$__rate_interval": "1m",
    "$__interval": "15s",
}

_BUDGETS = """\
attribution: {team: {max_values: 10}, customer: {max_values: 10}}
budgets:
  - {name: team-day, period: day, limit_usd: 5, timezone: UTC}
  - {name: org-month, period: month, limit_usd: 1000, timezone: Europe/Paris}
  - {name: localization-cap, period: day, limit_usd: 0.0005, team: localization, enforce: true}
"""


def _substitute(expr: str) -> str:
    for variable in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, SUBSTITUTIONS[variable])
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def _prometheus_yml(path: Path, config: MixinConfig, rule_files: list[Path], port: int) -> Path:
    labels = {label: "eu-1" for label in config.aggregation_labels}
    target: dict[str, Any] = {"targets": [f"127.0.0.1:{port}"]}
    if labels:
        target["labels"] = labels
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in rule_files],
                "scrape_configs": [{"job_name": config.job_name, "static_configs": [target]}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Prometheus]]:
    """One Prometheus per mixin config, each with its rules, scraping the same serve."""
    tmp = tmp_path_factory.mktemp("dashboards")
    store_url = f"sqlite:///{tmp / 'telemetry.db'}"
    agentwatch_config = tmp / "agentwatch.yaml"
    agentwatch_config.write_text(_BUDGETS)
    demo = ["demo", "--store", store_url, "--config", str(agentwatch_config), "--no-serve"]
    run_agentwatch([*demo, "--runs", "30", "--seed", "1"], tmp / "demo1")
    rule_files = {
        "default": sorted((REPO / "prometheus" / "rules").glob("*.yml")),
    }
    for name in CONFIGS:
        if name == "default":
            continue
        rules_dir = tmp / f"rules-{name}"
        rules_dir.mkdir()
        for path, text in _FILES[name].items():
            if path.startswith("prometheus/rules/"):
                (rules_dir / Path(path).name).write_text(text)
        rule_files[name] = sorted(rules_dir.glob("*.yml"))
    with (
        start_agentwatch_serve(store_url, tmp / "serve", config=agentwatch_config) as serve,
        start_prometheus(
            _prometheus_yml(tmp / "default.yml", CONFIGS["default"], rule_files["default"],
                            serve.port),
            tmp / "prom-default",
        ) as default,
        start_prometheus(
            _prometheus_yml(tmp / "cluster.yml", CONFIGS["cluster"], rule_files["cluster"],
                            serve.port),
            tmp / "prom-cluster",
        ) as cluster,
    ):  # fmt: skip
        servers = {"default": default, "cluster": cluster}
        for name, prom in servers.items():
            prom.wait_for_scrapes(CONFIGS[name].job_name, count=3)
        # The second workload makes every counter and histogram move between scrapes,
        # so rate() and the recordings have something to show.
        run_agentwatch([*demo, "--runs", "30", "--seed", "2"], tmp / "demo2")
        for name, prom in servers.items():
            prom.wait_for_scrapes(CONFIGS[name].job_name, count=4)
            level = "_".join((*CONFIGS[name].aggregation_labels, "model", "provider"))
            wait_until(
                lambda prom=prom, level=level: prom.query(
                    f"{level}:agentwatch_llm_requests_errors:ratio_rate1h >= 0"
                ),
                timeout=30,
                what=f"recording rules of the {name} config",
                log=prom.log,
            )
        yield servers


def _finite(result: list[dict[str, Any]]) -> bool:
    values = []
    for series in result:
        if "value" in series:
            values.append(series["value"][1])
        values.extend(v[1] for v in series.get("values", []))
    return any(math.isfinite(float(v)) for v in values)


LIVE_TARGETS = [(c, t) for c in CONFIGS for _, _, t in _targets(c)]
LIVE_IDS = [i for c in CONFIGS for i, _, _ in _targets(c)]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "target"), LIVE_TARGETS, ids=LIVE_IDS)
def test_panel_query_returns_data_from_a_real_workload(
    live: dict[str, Prometheus], config: str, target: dict[str, Any]
) -> None:
    prom = live[config]
    expr = _substitute(target["expr"])
    if target.get("instant"):
        result = prom.query(expr)
    else:
        end = prom.query("time()")[0]["value"][0]
        result = prom.query_range(expr, end - 30, end, step=1)
    assert result, f"no series for {expr}"
    assert _finite(result), f"only NaN/Inf for {expr}: {result[:3]}"
    # Every label the legend names must exist on the series, or the legend shows blanks.
    legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for series in result:
        missing = legend_labels - set(series["metric"])
        assert not missing, f"legend labels {missing} absent from {series['metric']} ({expr})"


LIVE_VARIABLES = [(c, v) for c in CONFIGS for _, v in _variables(c)]
LIVE_VARIABLE_IDS = [i for c in CONFIGS for i, _ in _variables(c)]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "variable"), LIVE_VARIABLES, ids=LIVE_VARIABLE_IDS)
def test_variable_query_lists_values_from_a_real_workload(
    live: dict[str, Prometheus], config: str, variable: dict[str, Any]
) -> None:
    query = variable["query"]["query"]
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    selector, label = _substitute(match.group(1)), match.group(2)
    response = requests.get(
        f"{live[config].url}/api/v1/label/{label}/values",
        params={"match[]": selector},
        timeout=10,
    )
    body = response.json()
    assert body["status"] == "success", body
    assert body["data"], f"{query} lists no values"
    if label in CONFIGS[config].aggregation_labels:
        assert body["data"] == ["eu-1"]


def _cookbook_queries() -> list[str]:
    text = (REPO / "docs" / "promql.md").read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", text, flags=re.DOTALL)]


def test_cookbook_covers_the_queries_users_ask_for() -> None:
    queries = _cookbook_queries()
    assert len(queries) >= 15
    joined = "\n".join(queries)
    for needle in ("by (model, provider)", "topk(5, sum by (agent)", "by (provider)", "by (agent)"):
        assert needle in joined


def test_cookbook_queries_read_only_contract_metrics_and_bundle_recordings() -> None:
    allowed = allowed_names(CONFIGS["default"])
    for query in _cookbook_queries():
        assert metric_names(query) <= allowed, query


@pytest.mark.slow
@pytest.mark.parametrize("query", _cookbook_queries(), ids=lambda q: q.split("\n")[0][:60])
def test_cookbook_query_returns_data_from_a_real_workload(
    live: dict[str, Prometheus], query: str
) -> None:
    result = live["default"].query(_substitute(query))
    assert result, f"no data for docs/promql.md query {query}"
    assert _finite(result), f"only NaN/Inf for {query}: {result[:3]}"
