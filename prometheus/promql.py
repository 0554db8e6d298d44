"""Find the metric names a PromQL expression selects, without a PromQL parser.

The rule generator and the tests use it to prove that rules and dashboards only read metrics
of the agentwatch contract (or recording rules the bundle defines). It is a tokenizer, not a
parser: it removes string literals, label matchers, ranges, grouping clauses and numbers, and
reports identifiers that are neither functions, aggregations nor keywords. The real
Prometheus parses every expression in the slow tests, so syntax errors are caught there.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
        "start",
        "end",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_NUMBER_SUFFIX = re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)?(ms|s|m|h|d|w|y)?\b", re.IGNORECASE)


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (`foo` in `rate(foo{a="b"}[5m])`).

    Grafana variables (`$agent`, `${datasource}`, `$__range`) are removed first, so the
    function also works on dashboard queries.
    """
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    previous = None
    while previous != text:  # nested matchers cannot happen, nested ranges (subqueries) can
        previous = text
        text = _MATCHERS.sub(" ", text)
        text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER_SUFFIX.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
