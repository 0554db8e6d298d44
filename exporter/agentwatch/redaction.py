"""Redaction and truncation of what agentwatch keeps from user data.

Captured arguments, prompts and error messages end up in a database that more people can read
than the program's secrets store. Before anything is kept it passes through a `Redactor`:
API keys, bearer tokens, AWS key ids, e-mail addresses and anything under a key named like a
credential are replaced, user patterns (`redact_patterns` in the settings) too, and every
string, list and nesting level is bounded so a 2 MB prompt cannot blow up memory or the store.
The output is always JSON-serialisable (unknown objects become a truncated `repr`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import Any

REDACTED = "[REDACTED]"

#: Secret-looking substrings, each replaced by a marker naming what it was.
_BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    # OpenAI / Anthropic / most "sk-" style keys (sk-..., sk-proj-..., sk-ant-...).
    (r"\bsk-[A-Za-z0-9_\-]{8,}", "[REDACTED:api_key]"),
    (r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*", "Bearer [REDACTED:token]"),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED:aws_key]"),
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}\b", "[REDACTED:github_token]"),
    (r"\bAIza[0-9A-Za-z_\-]{30,}", "[REDACTED:google_key]"),
    (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", "[REDACTED:slack_token]"),
    (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}", "[REDACTED:email]"),
)

#: Keys whose value is a credential whatever it looks like. `token` must end the key so that
#: `max_tokens` or `input_tokens` stay readable.
_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|api[_\-]?key|apikey|authorization|credential|"
    r"private[_\-]?key|access[_\-]?key|cookie|(?:^|[_\-])token$|^pwd$|^auth$)"
)


class Redactor:
    """Makes values safe to store: secrets replaced, sizes bounded, JSON-safe.

    Thread-safe (immutable after construction). Cost grows with the size of the input up to
    the bounds, so it runs where arguments are captured, not per metric update.

    Args:
        extra_patterns: user regular expressions; each match becomes `[REDACTED]`.
        max_chars: longest string kept; longer ones are cut and marked.
        max_items: most elements kept per list or mapping.
        max_depth: deepest nesting kept; deeper values become a short `repr`.
        max_total_chars: budget of characters for one `redact()` call across all strings.
    """

    def __init__(
        self,
        extra_patterns: Sequence[str] = (),
        *,
        max_chars: int = 2048,
        max_items: int = 50,
        max_depth: int = 6,
        max_total_chars: int = 32_768,
    ) -> None:
        self._patterns = [(re.compile(p), marker) for p, marker in _BUILTIN_PATTERNS]
        self._patterns.extend((re.compile(p), REDACTED) for p in extra_patterns)
        self.max_chars = max_chars
        self.max_items = max_items
        self.max_depth = max_depth
        self.max_total_chars = max_total_chars

    def redact_text(self, text: str, max_chars: int | None = None) -> str:
        """Return `text` with secrets replaced, cut to `max_chars` (default: the instance's).

        Redaction runs on a slightly longer window than is kept, so a key straddling the cut
        is still recognised and not half-kept.
        """
        limit = self.max_chars if max_chars is None else max_chars
        original = len(text)
        window = text[: limit + 256] if original > limit + 256 else text
        for pattern, marker in self._patterns:
            window = pattern.sub(marker, window)
        if len(window) > limit or original > limit + 256:
            return f"{window[:limit]}...[truncated, {original} chars]"
        return window

    def redact(self, value: Any) -> Any:
        """Return a JSON-safe, redacted and bounded copy of `value` (dicts, lists, scalars)."""
        budget = [self.max_total_chars]
        return self._walk(value, 0, budget)

    def _text(self, text: str, budget: list[int]) -> str:
        if budget[0] <= 0:
            return "[truncated]"
        kept = self.redact_text(text, min(self.max_chars, budget[0]))
        budget[0] -= len(kept)
        return kept

    def _walk(self, value: Any, depth: int, budget: list[int]) -> Any:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, str):
            return self._text(value, budget)
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if depth >= self.max_depth:
            return self._text(_safe_repr(value), budget)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= self.max_items:
                    out["..."] = f"{len(value) - self.max_items} more items"
                    break
                name = key if isinstance(key, str) else _safe_repr(key)
                name = name[:128]
                if _SECRET_KEY.search(name) and item is not None:
                    out[name] = REDACTED
                else:
                    out[name] = self._walk(item, depth + 1, budget)
            return out
        if isinstance(value, list | tuple | set | frozenset):
            return self._sequence(value, depth, budget)
        return self._text(_safe_repr(value), budget)

    def _sequence(self, items: Collection[Any], depth: int, budget: list[int]) -> list[Any]:
        out = [self._walk(item, depth + 1, budget) for item in islice(items, self.max_items)]
        if len(items) > self.max_items:
            out.append(f"... {len(items) - self.max_items} more items")
        return out


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break capture
        text = f"<{type(value).__name__} object>"
    return text[:4096]


@lru_cache(maxsize=8)
def redactor_for(patterns: tuple[str, ...]) -> Redactor:
    """Shared `Redactor` for a settings' `redact_patterns` (compiled once)."""
    return Redactor(patterns)
