"""Label values as exposed, shared by the in-process registry and the store's rollups.

A module of its own so that readers of the store (the CLI, `serve`) reach it without
importing prometheus_client through `metrics.py`.
"""

from __future__ import annotations

from agentwatch.validation import repair_text

#: Longest label value kept; longer ones are cut (unbounded text would blow up series size).
MAX_LABEL_LENGTH = 128


def label_value(value: object) -> str:
    """A label value as exposed: None -> "", other values as text cut to 128 characters.

    NUL and lone surrogates become U+FFFD (`validation.repair_text`): one label value that
    cannot be encoded would fail the whole exposition. Capture already repaired (and counted)
    them; this only keeps the exposition safe whatever reaches it.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return repair_text(text if len(text) <= MAX_LABEL_LENGTH else text[:MAX_LABEL_LENGTH])
