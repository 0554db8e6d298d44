"""The one rule for values entering agentwatch: each field is repaired or rejected, and counted.

Records are built from user code (`record_llm_call(input_tokens=-1000)`, an agent name decoded
with `surrogateescape`) and from litellm's payloads. One bad value must not poison anything
downstream: a lone surrogate cannot be encoded for the store or the `/metrics` exposition, a
NUL cannot be stored in PostgreSQL text, a negative token count makes a counter go down, a NaN
turns a cumulative rollup into NaN forever, a millisecond timestamp cannot be shown as a date.
So every field is checked once, here, by the same rule for the in-process metrics and the
store rollups, and a bad value is repaired (or the optional field dropped to None) without
dropping the rest of the record. Each repair is counted in
`agentwatch_invalid_values_total{field}` through the `Report` callback.

Where it runs: capture (`capture.py`, which also serves the litellm integration) cleans every
event and execution before it is counted or handed to the writer, so its repairs are counted
before the record's own batch is written. The writer's rollup builder cleans each record again
(a no-op for records from capture, counting nothing) so a record that reached a `BatchWriter`
by another path cannot poison the store or the durable rollups either. Every function is
idempotent: cleaning a clean record changes and counts nothing.

The rule per field (the table in docs/metrics.md, "Invalid values", is kept in step):

- text (`agent`, `name`, `model`, `provider`, `error_type`, `error_message`, `id`): each NUL
  or lone surrogate becomes U+FFFD; a non-text value becomes its `str()` (None `unknown`);
- payloads (`attributes`, `arguments`): the same repair in every string and key;
- tokens: an integer (or integral float) in [0, 10**12), else 0;
- `cost_usd`: a number in [0, 10,000) USD, else None (priced from the prices if possible);
- `duration`, `time_to_first_token`: seconds in [0, 30 days), else None (not observed);
- `started_at`: Unix seconds in [0, 253402300800) (1970 to 9999), else now (minus the
  duration) for an event, the valid end (else now) for an execution;
- `ended_at`: None while running, else in [started_at, 253402300800), else started_at.
"""

from __future__ import annotations

import numbers
import operator
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch.model import Event, Execution, WriterItem

#: Called with the field name once per repaired or rejected value.
Report = Callable[[str], None]

#: Tokens of one call, per type: at or above this the count is absurd (exclusive bound).
MAX_TOKENS = 10**12
#: Cost of one LLM call in USD: at or above this the cost is absurd. The most expensive
#: single requests (a million output tokens of the priciest model) cost hundreds of dollars.
MAX_COST_USD = 10_000.0
#: Longest duration (and time to first token) of one call, in seconds: 30 days.
MAX_SECONDS = 30 * 86_400.0
#: Valid Unix times: from 1970 to the end of year 9999, the range an ISO 8601 date can show.
#: A time in milliseconds or microseconds by mistake falls above it.
MIN_TIMESTAMP = 0.0
MAX_TIMESTAMP = 253_402_300_800.0
#: What a NUL or a lone surrogate becomes.
REPLACEMENT = "\ufffd"
#: Required text that was None.
MISSING = "unknown"

_INVALID_CHARS = re.compile("[\x00\ud800-\udfff]")


def count_nothing(field: str) -> None:
    """A `Report` that counts nothing (checks whose outcome is counted elsewhere)."""


def repair_text(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD; the same object when valid.

    Such text cannot be encoded as UTF-8 (surrogates) or stored in PostgreSQL (NUL), and one
    such label value would make prometheus_client fail the whole `/metrics` exposition.
    """
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _INVALID_CHARS.sub(REPLACEMENT, text) if _INVALID_CHARS.search(text) else text


def text(value: object, field: str, report: Report) -> str:
    """A required text field: repaired (see `repair_text`), or `str()` of a non-text value."""
    if type(value) is str:
        fixed = repair_text(value)
        if fixed is value:
            return value
    elif isinstance(value, str):  # a str subclass (an enum member): keep its text, uncounted
        plain = str.__str__(value)
        fixed = repair_text(plain)
        if fixed is plain:
            return plain
    elif value is None:
        fixed = MISSING
    else:
        try:
            fixed = repair_text(str(value))
        except Exception:  # a broken __str__ must not break capture
            fixed = f"<{type(value).__name__}>"
    report(field)
    return fixed


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]  # int, numpy integers
    except TypeError:
        pass
    if isinstance(value, float) and value.is_integer():  # False for NaN and infinities
        return int(value)
    return None


def _real(value: object) -> float | None:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def tokens(value: object, field: str, report: Report) -> int:
    """A token count: an integer in [0, `MAX_TOKENS`), else 0 (None -> 0 uncounted)."""
    if type(value) is int and 0 <= value < MAX_TOKENS:
        return value
    if value is None:
        return 0
    number = _integer(value)
    if number is not None and 0 <= number < MAX_TOKENS:
        return number
    report(field)
    return 0


def cost(value: object, field: str, report: Report) -> float | None:
    """A cost in USD: a number in [0, `MAX_COST_USD`), else None (unknown)."""
    if value is None:
        return None
    number = _real(value)
    if number is not None and 0.0 <= number < MAX_COST_USD:  # False for NaN too
        return number
    report(field)
    return None


def seconds(value: object, field: str, report: Report) -> float | None:
    """A duration: a number of seconds in [0, `MAX_SECONDS`), else None (not observed)."""
    if value is None:
        return None
    number = _real(value)
    if number is not None and 0.0 <= number < MAX_SECONDS:
        return number
    report(field)
    return None


def timestamp(value: object, field: str, report: Report) -> float | None:
    """Unix seconds in [`MIN_TIMESTAMP`, `MAX_TIMESTAMP`), else None (None counts too)."""
    number = _real(value)
    if number is not None and MIN_TIMESTAMP <= number < MAX_TIMESTAMP:
        return number
    report(field)
    return None


def _suspect(value: object) -> bool:
    """False for the common case, a plain ASCII str without NUL (cheap, C-level checks)."""
    return type(value) is not str or not value.isascii() or "\x00" in value


def _suspect_count(value: object) -> bool:
    return type(value) is not int or not 0 <= value < MAX_TOKENS


def _suspect_number(value: object, bound: float) -> bool:
    return value is not None and (type(value) is not float or not 0.0 <= value < bound)


def clean_event(event: Event, report: Report) -> Event:
    """Repair every field of `event` in place (its ids excepted, see `clean_item`).

    On the hot path of every call: a valid value (the common case) costs one cheap check.
    """
    e = event
    if _suspect(e.name):
        e.name = text(e.name, "name", report)
    if e.agent is not None and _suspect(e.agent):
        e.agent = text(e.agent, "agent", report)
    if e.model is not None and _suspect(e.model):
        e.model = text(e.model, "model", report)
    if e.provider is not None and _suspect(e.provider):
        e.provider = text(e.provider, "provider", report)
    if e.error_type is not None and _suspect(e.error_type):
        e.error_type = text(e.error_type, "error_type", report)
    if e.error_message is not None and _suspect(e.error_message):
        e.error_message = text(e.error_message, "error_message", report)
    if _suspect_count(e.input_tokens):
        e.input_tokens = tokens(e.input_tokens, "input_tokens", report)
    if _suspect_count(e.output_tokens):
        e.output_tokens = tokens(e.output_tokens, "output_tokens", report)
    if _suspect_count(e.cached_tokens):
        e.cached_tokens = tokens(e.cached_tokens, "cached_tokens", report)
    if _suspect_count(e.reasoning_tokens):
        e.reasoning_tokens = tokens(e.reasoning_tokens, "reasoning_tokens", report)
    if _suspect_number(e.cost_usd, MAX_COST_USD):
        e.cost_usd = cost(e.cost_usd, "cost_usd", report)
    if _suspect_number(e.duration, MAX_SECONDS):
        e.duration = seconds(e.duration, "duration", report)
    if _suspect_number(e.time_to_first_token, MAX_SECONDS):
        e.time_to_first_token = seconds(e.time_to_first_token, "time_to_first_token", report)
    started: Any = e.started_at
    if type(started) is not float or not MIN_TIMESTAMP <= started < MAX_TIMESTAMP:
        started = timestamp(started, "started_at", report)
        e.started_at = time.time() - (e.duration or 0.0) if started is None else started
    if e.attributes:
        e.attributes = payload(e.attributes, "attributes", report)
    if e.attribution:
        e.attribution = attribution(e.attribution, report)
    return event


def clean_execution(execution: Execution, report: Report) -> Execution:
    """Repair the fields of `execution` in place (not its ids nor its events)."""
    x = execution
    if _suspect(x.agent):
        x.agent = text(x.agent, "agent", report)
    if x.error_type is not None and _suspect(x.error_type):
        x.error_type = text(x.error_type, "error_type", report)
    if x.error_message is not None and _suspect(x.error_message):
        x.error_message = text(x.error_message, "error_message", report)
    started: Any = x.started_at
    ended: Any = x.ended_at
    if type(started) is not float or not MIN_TIMESTAMP <= started < MAX_TIMESTAMP:
        started = timestamp(started, "started_at", report)
        if started is None:
            valid_end = None if ended is None else timestamp(ended, "ended_at", count_nothing)
            started = time.time() if valid_end is None else valid_end
        x.started_at = started
    if ended is not None and (type(ended) is not float or not started <= ended < MAX_TIMESTAMP):
        end = _real(ended)
        if end is None or not started <= end < MAX_TIMESTAMP:
            report("ended_at")
            end = started
        x.ended_at = end
    if x.arguments:
        x.arguments = payload(x.arguments, "arguments", report)
    if x.attributes:
        x.attributes = payload(x.attributes, "attributes", report)
    if x.attribution:
        x.attribution = attribution(x.attribution, report)
    return execution


def attribution(values: dict[str, str], report: Report) -> dict[str, str]:
    """Attribution values as label values: text, repaired, at most 128 characters, none
    empty. The same dict when valid (capture builds them so: the common case)."""
    if all(
        type(k) is str and type(v) is str and 0 < len(v) <= 128 and not _suspect(v)
        for k, v in values.items()
    ):
        return values
    fixed: dict[str, str] = {}
    for key, value in values.items():
        if type(key) is not str or value is None:
            report("attributes")
            continue
        cleaned = text(value, "attributes", report)[:128]
        if cleaned:
            fixed[key] = cleaned
    return fixed


def _repair_json(value: Any) -> Any:
    """`value` with every string and key repaired; the same object when nothing changed."""
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, dict):
        changed = False
        items = []
        for key, item in value.items():
            fixed_key = repair_text(key) if isinstance(key, str) else key
            fixed_item = _repair_json(item)
            changed = changed or fixed_key is not key or fixed_item is not item
            items.append((fixed_key, fixed_item))
        return dict(items) if changed else value
    if isinstance(value, list | tuple):
        fixed = [_repair_json(item) for item in value]
        if any(new is not old for new, old in zip(fixed, value, strict=True)):
            return fixed
        return value
    return value


def payload(value: Any, field: str, report: Report) -> Any:
    """A JSON payload (attributes, arguments) with its strings and keys repaired."""
    if not value:
        return value
    fixed = _repair_json(value)
    if fixed is not value:
        report(field)
    return fixed


def _clean_event_fully(event: Event, report: Report) -> None:
    clean_event(event, report)
    if event.execution_id is not None and _suspect(event.execution_id):
        event.execution_id = text(event.execution_id, "id", report)


def clean_item(item: WriterItem, report: Report) -> None:
    """Apply the whole rule to a writer item in place: the writer's check before storing.

    Records from capture were cleaned when captured (only their ids, generated by
    agentwatch, are new to the check): this changes and counts nothing for them.
    """
    from agentwatch.model import ExecutionFinished, Refusal

    if isinstance(item, Refusal):
        for name in ("budget", "agent", "model", "provider"):
            value = getattr(item, name)
            if _suspect(value):
                setattr(item, name, text(value, name if name != "budget" else "name", report))
        return
    if isinstance(item, ExecutionFinished):
        execution = item.execution
        clean_execution(execution, report)
        if _suspect(execution.id):
            execution.id = text(execution.id, "id", report)
        if execution.parent_id is not None and _suspect(execution.parent_id):
            execution.parent_id = text(execution.parent_id, "id", report)
        for event in execution.events:
            _clean_event_fully(event, report)
    else:
        _clean_event_fully(item.event, report)
