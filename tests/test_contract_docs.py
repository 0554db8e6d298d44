"""The metric contract is code; docs/metrics.md must describe exactly that code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentwatch import contract

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _documented_rows() -> dict[str, str]:
    """Map of exposed metric name -> its table row in docs/metrics.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `(agentwatch_[a-z0-9_]+)` \|", line)
        if match and match.group(1) not in rows:  # the first table row is the definition
            rows[match.group(1)] = line
    return rows


def _exposed_name(spec: contract.MetricSpec) -> str:
    return f"{spec.name}_total" if spec.kind == "counter" else spec.name


@pytest.mark.parametrize("spec", contract.ALL_METRICS, ids=lambda s: s.name)
def test_every_metric_is_documented_with_its_type_and_labels(spec: contract.MetricSpec) -> None:
    rows = _documented_rows()
    name = _exposed_name(spec)
    assert name in rows, f"{name} missing from docs/metrics.md"
    cells = [cell.strip() for cell in rows[name].strip("|").split("|")]
    assert cells[1] == spec.kind
    documented_labels = re.findall(r"`([a-z_]+)`", cells[2])
    assert tuple(documented_labels) == spec.labels
    assert cells[3] == spec.scope


@pytest.mark.parametrize("spec", contract.ALL_METRICS, ids=lambda s: s.name)
def test_attributed_families_say_they_carry_the_attribution_dimensions(
    spec: contract.MetricSpec,
) -> None:
    labels_cell = _documented_rows()[_exposed_name(spec)].strip("|").split("|")[2]
    assert ("attribution dimensions" in labels_cell) == spec.attributed
    if spec.attributed:
        assert spec.kind == "counter", "histograms never carry attribution labels"


def test_docs_mention_no_metric_outside_the_contract() -> None:
    allowed = contract.all_sample_names() | {s.name for s in contract.ALL_METRICS}
    mentioned = set(re.findall(r"\bagentwatch_[a-z0-9_]+", DOC.read_text()))
    assert mentioned - allowed == set()


@pytest.mark.parametrize("spec", contract.ALL_METRICS, ids=lambda s: s.name)
def test_names_follow_prometheus_conventions(spec: contract.MetricSpec) -> None:
    assert spec.name.startswith("agentwatch_")
    assert _NAME.match(spec.name)
    assert not spec.name.endswith("_total"), "counter family names carry no _total suffix"
    for label in spec.labels:
        assert _NAME.match(label) and not label.startswith("__")
        assert label not in {"le", "quantile", "job", "instance"}
    if spec.kind == "histogram":
        assert spec.name.endswith("_seconds"), "histograms here measure time in base units"
        assert spec.buckets is not None
        assert list(spec.buckets) == sorted(set(spec.buckets))
    else:
        assert spec.buckets is None
    if "cost" in spec.name or "spend" in spec.name or "limit" in spec.name:
        assert spec.name.endswith("_usd"), "money is in US dollars, and says so"
    assert spec.help.endswith(".")


def test_rollup_metrics_are_counters_or_histograms_of_the_contract() -> None:
    for spec in contract.ROLLUP_METRICS:
        assert spec in contract.ALL_METRICS
        assert spec.kind in ("counter", "histogram")
        assert spec.scope in ("both", "store")


def test_sample_names_map_back_to_their_family() -> None:
    for spec in contract.ALL_METRICS:
        for sample in spec.sample_names:
            assert contract.spec_for_sample(sample) is spec
    assert contract.spec_for_sample("agentwatch_nonexistent_total") is None
    assert contract.spec_for_sample("agentwatch_executions") is None
