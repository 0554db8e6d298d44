"""Bucket exemplars for `agentwatch serve`'s exposition, read from the store's rollups.

The store keeps, per histogram bucket, the latest execution observed in it
(`RollupRow.exemplar`, see `rollups.py` for why the latest). `attach_exemplars` puts them on
the bucket samples of the histogram families built from the same rows, so Prometheus
(`--enable-feature=exemplar-storage`) stores them and a Grafana latency panel links a slow
bucket to a run. Only the OpenMetrics format carries exemplars; the Prometheus text format
ignores them, so nothing changes for scrapers that do not negotiate OpenMetrics.

Kept apart from the collector so any collector that builds histogram families from rollup
rows (with `prometheus_client`'s `HistogramMetricFamily`) can add exemplars in one call:

    families = rollup_families(rows)
    yield from attach_exemplars(families, rows)
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar as PromExemplar

from agentwatch.store.base import RollupRow

#: Label name of a bucket exemplar (shared with the in-process registry's exemplars).
EXEMPLAR_LABEL = "execution_id"
#: OpenMetrics caps an exemplar's label names and values at 128 UTF-8 characters together.
MAX_EXEMPLAR_LABEL_CHARS = 128

_BucketKey = tuple[str, tuple[tuple[str, str], ...], float]


def _le(value: str | None) -> float:
    return float("inf") if value in (None, "+Inf") else float(value)


def _bucket_key(sample: str, labels: dict[str, str]) -> _BucketKey:
    family_labels = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
    return sample, family_labels, _le(labels.get("le"))


def bucket_exemplars(rows: Iterable[RollupRow]) -> dict[_BucketKey, PromExemplar]:
    """The exemplar of every bucket row that has one, keyed by sample, labels and bound.

    An execution id too long for an OpenMetrics exemplar is left out (the bucket is still
    exposed, without exemplar) rather than making Prometheus reject it.
    """
    found: dict[_BucketKey, PromExemplar] = {}
    room = MAX_EXEMPLAR_LABEL_CHARS - len(EXEMPLAR_LABEL)
    for row in rows:
        exemplar = row.exemplar
        if exemplar is None or not row.sample.endswith("_bucket"):
            continue
        if len(exemplar.execution_id) > room:
            continue
        found[_bucket_key(row.sample, row.labels)] = PromExemplar(
            {EXEMPLAR_LABEL: exemplar.execution_id}, exemplar.value, exemplar.timestamp
        )
    return found


def attach_exemplars(families: Iterable[Metric], rows: Iterable[RollupRow]) -> list[Metric]:
    """Return `families` with each histogram bucket sample carrying its stored exemplar.

    Buckets are matched on sample name, label values and bound (compared as numbers, so
    `0.5` and `0.50` agree); a bucket the rows hold no exemplar for is left as it is.
    """
    result = list(families)
    found = bucket_exemplars(rows)
    if not found:
        return result
    for family in result:
        if family.type != "histogram":
            continue
        samples = family.samples
        for i, sample in enumerate(samples):
            if sample.exemplar is not None or not sample.name.endswith("_bucket"):
                continue
            exemplar = found.get(_bucket_key(sample.name, sample.labels))
            if exemplar is not None:
                samples[i] = sample._replace(exemplar=exemplar)
    return result
