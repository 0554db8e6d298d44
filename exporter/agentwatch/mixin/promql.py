"""PromQL helpers: build selectors from the mixin config, and read expressions back.

Building: `Q(config)` holds the mixin selector and aggregation labels and writes the
fragments every rule repeats (`{job="agentwatch",status="failed"}`, `by (cluster, agent)`).

Reading: `metric_names()` and `selectors()` are tokenizers, not a parser. They remove string
literals, grouping clauses and numbers and report the vector selectors that remain, with
their matchers, range and the function that directly encloses them. The generators use them
to refuse a rule or panel that reads a metric outside the contract, the tests to enforce
Grafana's dashboard-linter rules; the real Prometheus parses every expression in the slow
tests, so syntax errors are caught there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentwatch.mixin.config import MixinConfig

# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    """Selector and grouping fragments for one mixin config."""

    config: MixinConfig

    def sel(self, *extra: str) -> str:
        """`{selector,extra...}`: matchers of agentwatch's own series, plus `extra`."""
        parts = [p for p in (self.config.selector, *extra) if p]
        return "{" + ",".join(parts) + "}"

    def labels(self, *labels: str) -> tuple[str, ...]:
        """Aggregation labels then `labels`, without duplicates, in order."""
        seen: list[str] = []
        for label in (*self.config.aggregation_labels, *labels):
            if label not in seen:
                seen.append(label)
        return tuple(seen)

    def by(self, *labels: str) -> str:
        """`by (aggregation labels..., labels...)`."""
        return f"by ({', '.join(self.labels(*labels))})"

    def on(self, *labels: str) -> str:
        """`on (aggregation labels..., labels...)`."""
        return f"on ({', '.join(self.labels(*labels))})"

    def level(self, *labels: str) -> str:
        """The `level` of a recording rule name (`cluster_agent` for by (cluster, agent))."""
        return "_".join(self.labels(*labels))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

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
        "atan2",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+")
_NUMBER = re.compile(r"(?<![\w.:])\d+(\.\d+)?(e[+-]?\d+)?(ms|s|m|h|d|w|y)?(?![\w:])", re.I)
_LABEL_MATCH = re.compile(r'\s*(=~|!~|!=|=)\s*"')
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Selector:
    """One vector selector of an expression.

    Attributes:
        name: the metric name.
        matchers: (label, operator, value) in written order, values unescaped as written.
        range: the text inside `[...]` right after the selector (a matrix selector), or None.
        function: the function whose argument list directly contains the selector
            (`rate` in `sum(rate(x[5m]))`), or None when it is not directly in a call.
    """

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    range: str | None
    function: str | None

    def matcher(self, label: str) -> tuple[str, str] | None:
        """(operator, value) of the first matcher on `label`, if any."""
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of `expr`, in order.

    Grafana variables are left in matcher values (`agent=~"$agent"`) and ranges
    (`[$__rate_interval]`), so dashboard queries can be checked as written.
    """
    # Mask strings (same length, so offsets stay valid) and grouping clauses.
    masked = _STRING.sub(lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', expr)
    masked = _GROUPING.sub(_blank, masked)
    masked = _GRAFANA_VARIABLE.sub(lambda m: "0" * len(m.group(0)), masked)
    masked = _NUMBER.sub(_blank, masked)
    found: list[Selector] = []
    ident = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)")
    pos = 0
    while True:
        match = ident.search(masked, pos)
        if match is None:
            return found
        name, end = match.group(1), match.end()
        rest = masked[end:]
        stripped = rest.lstrip()
        pos = end
        if stripped.startswith("(") or name.lower() in _KEYWORDS:
            continue
        if _LABEL_MATCH.match(rest):
            continue  # a label name inside {…}, not a metric
        cursor = end + (len(rest) - len(stripped))
        matchers: tuple[tuple[str, str, str], ...] = ()
        if stripped.startswith("{"):
            close = masked.index("}", cursor)
            matchers = tuple(
                (m.group(1), m.group(2), m.group(3))
                for m in _MATCHER.finditer(expr[cursor + 1 : close])
            )
            cursor = close + 1
        after = masked[cursor:]
        rng: str | None = None
        if after.lstrip().startswith("["):
            start = cursor + (len(after) - len(after.lstrip()))
            close = masked.index("]", start)
            rng = expr[start + 1 : close].strip()
            cursor = close + 1
        found.append(Selector(name, matchers, rng, _enclosing_function(masked, match.start())))
        pos = cursor


def _enclosing_function(masked: str, index: int) -> str | None:
    """Name of the call whose `(` most closely encloses `index`, if that `(` follows a name."""
    depth = 0
    for i in range(index - 1, -1, -1):
        char = masked[i]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth == 0:
                before = masked[:i].rstrip()
                call = re.search(r"([a-zA-Z_][a-zA-Z0-9_]*)$", before)
                if call is None or call.group(1).lower() in _KEYWORDS:
                    return None
                return call.group(1)
            depth -= 1
    return None


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (`foo` in `rate(foo{a="b"}[5m])`)."""
    return {s.name for s in selectors(expr)}
