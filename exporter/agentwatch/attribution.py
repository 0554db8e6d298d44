"""Cost attribution: which team, project or customer a run, an LLM call and its cost belong to.

A deployment declares its dimensions once (`attribution:` in the config, e.g. `team`,
`project`, `customer`). Each becomes a label on the counters where money and volume are
counted (`contract.ATTRIBUTED`), is stored with every run and event (so the CLI, the JSON API
and exports filter on it) and can scope a budget.

Where a value comes from, most specific first:

1. an LLM call's own litellm `metadata={"team": ...}` (or `record_llm_call(..., team=...)`),
   and litellm's `user=` for the dimension declared with `litellm_user: true`;
2. the run it is made in: the run's own attribute (`track("job", team="search")`,
   `@observe(attributes={"team": "search"})`), else its parent run's, and so on up the tree.

A value missing everywhere is simply absent (the empty label, which Prometheus treats as no
label), never an error. Values are label values: text (numbers and booleans are written as
text, anything else is ignored and counted as an invalid attribute), with the user's
`redact_patterns` applied like agent names, NUL and lone surrogates repaired and cut to 128
characters.

Each dimension has its own cap (`max_values`): past it, new values are counted under
`__overflow__` in the labels (per process in-process by `cardinality.ValueCaps`, for all
processes together in the store by `Store.write_batch`) and in
`agentwatch_attribution_overflow_total{dimension}`. The stored value is always the real one,
so budgets and filters stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentwatch.config import AttributionDimension
from agentwatch.metrics import label_value
from agentwatch.validation import Report

#: An attribution: dimension -> non-empty value. Shared between a run and its calls; never
#: mutated once built (a child with other values gets a new dict).
Values = dict[str, str]

_EMPTY: Values = {}


def value_text(value: object) -> str | None:
    """A raw attribute value as a label value: text as is, numbers and booleans as text.

    Returns None for a value that cannot be a label (a mapping, a list, an object); "" for
    None or empty text (absent).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value) if value == value and value not in (float("inf"), float("-inf")) else None
    return None


class Attribution:
    """The declared dimensions and the rule that resolves a run's or a call's values.

    Immutable and thread-safe; built once per runtime from `Settings.attribution`.

    Args:
        dimensions: the declared dimensions, in label order.
        redact_name: applied to every value (the user's `redact_patterns`, as for agent names).
    """

    __slots__ = ("_redact", "dimensions", "names", "user_dimension")

    def __init__(
        self,
        dimensions: tuple[AttributionDimension, ...],
        redact_name: Any = None,
    ) -> None:
        self.dimensions = dimensions
        self.names: tuple[str, ...] = tuple(d.name for d in dimensions)
        self.user_dimension = next((d.name for d in dimensions if d.litellm_user), None)
        self._redact = redact_name

    def __bool__(self) -> bool:
        return bool(self.names)

    def _clean(self, raw: object, report: Report) -> str:
        text = value_text(raw)
        if text is None:
            report("attributes")
            return ""
        if not text:
            return ""
        if self._redact is not None:
            text = self._redact(text)
        fixed = label_value(text)
        if fixed != text and len(text) <= 128:
            report("attributes")  # NUL or a lone surrogate; a long value is only cut
        return fixed

    def resolve(
        self, inherited: Values, attributes: Mapping[str, Any] | None, report: Report
    ) -> Values:
        """`inherited` overridden by the declared dimensions present in `attributes`.

        Returns `inherited` itself when nothing changes (most calls), else a new dict.
        """
        if not attributes or not self.names:
            return inherited
        result: Values | None = None
        for name in self.names:
            if name not in attributes:
                continue
            value = self._clean(attributes[name], report)
            current = inherited.get(name, "")
            if value == current:
                continue
            if result is None:
                result = dict(inherited)
            if value:
                result[name] = value
            else:  # an explicit None or "" clears an inherited value
                result.pop(name, None)
        return inherited if result is None else result

    def litellm_attributes(self, metadata: object, user: object) -> dict[str, Any] | None:
        """A litellm call's own attribution values, raw: `user=` for the `litellm_user`
        dimension, then the declared dimensions among its `metadata` keys (which win).

        None when the call names none (the call then has its run's values).
        """
        if not self.names:
            return None
        found: dict[str, Any] = {}
        if self.user_dimension is not None and user not in (None, ""):
            found[self.user_dimension] = user
        if isinstance(metadata, Mapping) and metadata:
            for name in self.names:
                if name in metadata:
                    found[name] = metadata[name]
        return found or None

    def label_values(self, values: Values) -> tuple[str, ...]:
        """The label values in dimension order ("" where absent)."""
        if not values:
            return ("",) * len(self.names)
        return tuple(values.get(name, "") for name in self.names)


def no_attribution() -> Values:
    """The shared empty attribution (never mutate it)."""
    return _EMPTY
