"""The Grafana part of the bundle: provisioning, dashboard structure, and data behind each panel.

Fast tests load the committed JSON and check what Grafana needs and what the contract allows.
The slow tests run a real `agentwatch demo` workload twice, serve it with `agentwatch serve`,
let a real Prometheus (1s scrape and rule evaluation, the bundle's rule files) scrape it, then
execute every panel query and every variable query, variables substituted, and require data.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml

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
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))

#: What Grafana would put in place of each variable for "All" / the test's time range.
SUBSTITUTIONS = {
    "$agent": ".*",
    "$model": ".*",
    "$__range": "1h",
    "$__rate_interval": "1m",
    "$__interval": "15s",
}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARD_FILES}


def _provisioned_uid() -> str:
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(datasources) == 1
    uid: str = datasources[0]["uid"]
    return uid


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _targets() -> list[tuple[str, dict[str, Any]]]:
    """(test id, target) for every panel target of every dashboard."""
    found = []
    for name, board in _dashboards().items():
        for panel in _panels(board):
            for target in panel["targets"]:
                found.append((f"{name}:{panel['title']}:{target['refId']}", target))
    return found


def _variables() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, board in _dashboards().items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                found.append((f"{name}:{variable['name']}", variable))
    return found


def _substitute(expr: str) -> str:
    for variable in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, SUBSTITUTIONS[variable])
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


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
    generator = _load("agentwatch_generate_dashboards", GRAFANA / "generate_dashboards.py")
    expected = generator.render()
    assert sorted(expected) == [p.name for p in DASHBOARD_FILES]
    for name, text in expected.items():
        committed = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"grafana/dashboards/{name} is stale: run python grafana/generate_dashboards.py"
        )


def test_generator_uses_the_provisioned_datasource_uid() -> None:
    generator = _load("agentwatch_generate_dashboards", GRAFANA / "generate_dashboards.py")
    assert _provisioned_uid() == generator.DATASOURCE_UID


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_has_what_grafana_needs(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
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


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_datasource_variable_defaults_to_the_provisioned_prometheus(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["current"]["value"] == _provisioned_uid()
    for name in ("agent", "model"):
        if name not in variables:
            continue
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    assert "agent" in variables


def test_every_dashboard_offers_agent_and_model_where_it_filters_by_them() -> None:
    for name, board in _dashboards().items():
        variables = {v["name"] for v in board["templating"]["list"]}
        exprs = " ".join(t["expr"] for p in _panels(board) for t in p["targets"])
        for variable in ("agent", "model"):
            if f"${variable}" in exprs:
                assert variable in variables, f"{name} uses ${variable} without defining it"
    assert any(
        "model" in {v["name"] for v in b["templating"]["list"]} for b in _dashboards().values()
    )


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_queries_the_datasource_variable_with_a_unit_and_description(
    path: Path,
) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(board):
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel.get("description"), f"{title}: no description"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", title
            assert target["expr"].strip(), title


def test_multi_series_panels_name_their_series_in_the_legend() -> None:
    for board in _dashboards().values():
        for panel in _panels(board):
            if panel["type"] in ("timeseries", "bargauge"):
                for target in panel["targets"]:
                    assert "{{" in target.get("legendFormat", ""), panel["title"]


def test_queries_read_only_contract_metrics_and_bundle_recordings() -> None:
    rules = _load("agentwatch_generate_rules", REPO / "prometheus" / "generate_rules.py")
    promql = _load("agentwatch_promql", REPO / "prometheus" / "promql.py")
    allowed = rules.allowed_names(rules.load_mixin())
    exprs = [t["expr"] for _, t in _targets()]
    for _, variable in _variables():
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        exprs.append(match.group(1))
    for expr in exprs:
        names = promql.metric_names(expr)
        assert names, expr
        assert names <= allowed, f"{expr!r} reads {names - allowed}"


def test_datasource_provisioning_is_what_grafana_loads() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    source = config["datasources"][0]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"].startswith("http://") and source["isDefault"] is True
    assert source["jsonData"]["timeInterval"] == "15s"


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["folder"] == "agentwatch"
    assert provider["disableDeletion"] is True and provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/agentwatch"


# --------------------------------------------------------------------------------------------
# Data: every query against a real Prometheus fed by a real workload
# --------------------------------------------------------------------------------------------

_BUDGETS = """\
budgets:
  - {name: team-day, period: day, limit_usd: 5, timezone: UTC}
  - {name: org-month, period: month, limit_usd: 1000, timezone: Europe/Paris}
"""


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus with the bundle's rules that scraped two demo workloads via serve."""
    tmp = tmp_path_factory.mktemp("dashboards")
    store_url = f"sqlite:///{tmp / 'telemetry.db'}"
    config = tmp / "agentwatch.yaml"
    config.write_text(_BUDGETS)
    demo = ["demo", "--store", store_url, "--config", str(config), "--no-serve"]
    run_agentwatch([*demo, "--runs", "30", "--seed", "1"], tmp / "demo1")
    with start_agentwatch_serve(store_url, tmp / "serve", config=config) as serve:
        prometheus_yml = tmp / "prometheus.yml"
        prometheus_yml.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in RULE_FILES],
                    "scrape_configs": [
                        {
                            "job_name": "agentwatch",
                            "static_configs": [{"targets": [f"127.0.0.1:{serve.port}"]}],
                        }
                    ],
                }
            )
        )
        with start_prometheus(prometheus_yml, tmp / "prom") as prom:
            prom.wait_for_scrapes("agentwatch", count=3)
            # The second workload makes every counter and histogram move between scrapes,
            # so rate() and the quantile recordings have something to show.
            run_agentwatch([*demo, "--runs", "30", "--seed", "2"], tmp / "demo2")
            prom.wait_for_scrapes("agentwatch", count=4)
            wait_until(
                lambda: prom.query("agent:agentwatch_llm_cost_usd:rate15m > 0"),
                timeout=30,
                what="recording rules to see the second workload",
                log=prom.log,
            )
            yield prom


def _finite(result: list[dict[str, Any]]) -> bool:
    values = []
    for series in result:
        if "value" in series:
            values.append(series["value"][1])
        values.extend(v[1] for v in series.get("values", []))
    return any(math.isfinite(float(v)) for v in values)


@pytest.mark.slow
@pytest.mark.parametrize(("target"), [t for _, t in _targets()], ids=[i for i, _ in _targets()])
def test_panel_query_returns_data_from_a_real_workload(
    live_prometheus: Prometheus, target: dict[str, Any]
) -> None:
    expr = _substitute(target["expr"])
    if target.get("instant"):
        result = live_prometheus.query(expr)
    else:
        end = live_prometheus.query("time()")[0]["value"][0]
        result = live_prometheus.query_range(expr, end - 30, end, step=1)
    assert result, f"no series for {expr}"
    assert _finite(result), f"only NaN/Inf for {expr}: {result[:3]}"
    # Every label the legend names must exist on the series, or the legend shows blanks.
    legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for series in result:
        missing = legend_labels - set(series["metric"])
        assert not missing, f"legend labels {missing} absent from {series['metric']} ({expr})"


@pytest.mark.slow
@pytest.mark.parametrize("variable", [v for _, v in _variables()], ids=[i for i, _ in _variables()])
def test_variable_query_lists_values_from_a_real_workload(
    live_prometheus: Prometheus, variable: dict[str, Any]
) -> None:
    query = variable["query"]["query"]
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    selector, label = _substitute(match.group(1)), match.group(2)
    response = requests.get(
        f"{live_prometheus.url}/api/v1/label/{label}/values",
        params={"match[]": selector},
        timeout=10,
    )
    body = response.json()
    assert body["status"] == "success", body
    assert body["data"], f"{query} lists no values"


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
    rules = _load("agentwatch_generate_rules", REPO / "prometheus" / "generate_rules.py")
    promql = _load("agentwatch_promql", REPO / "prometheus" / "promql.py")
    allowed = rules.allowed_names(rules.load_mixin())
    for query in _cookbook_queries():
        assert promql.metric_names(query) <= allowed, query


@pytest.mark.slow
@pytest.mark.parametrize("query", _cookbook_queries(), ids=lambda q: q.split("\n")[0][:60])
def test_cookbook_query_returns_data_from_a_real_workload(
    live_prometheus: Prometheus, query: str
) -> None:
    result = live_prometheus.query(_substitute(query))
    assert result, f"no data for docs/promql.md query {query}"
    assert _finite(result), f"only NaN/Inf for {query}: {result[:3]}"


def test_generator_refuses_a_panel_that_reads_an_invented_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = _load("agentwatch_generate_dashboards", GRAFANA / "generate_dashboards.py")

    def bogus(m: Any) -> Any:
        board = generator._new_board("x", "agentwatch: x", "x", [])
        board.stat("x", "x", generator._Query("sum(rate(agentwatch_made_up_total[5m]))"), "short")
        return board

    monkeypatch.setattr(generator, "DASHBOARDS", {"bogus.json": bogus})
    with pytest.raises(ValueError, match="agentwatch_made_up_total"):
        generator.build()
