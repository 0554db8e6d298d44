"""Execution ids as the store keeps them: 16 bytes for canonical ids, tagged text otherwise.

Why: a run's id is stored four times (the execution row, its primary key, each event row,
the `(execution_id, seq)` index); as text (`exec_` + 32 hex digits) that is 37 bytes each,
as the 128 bits it spells, 16. Only the store sees this form: every query takes and returns
the text form, so the JSON API, the CLI, the console, exports and exemplars are unchanged.

The stored form (a BLOB in SQLite, `bytea` in PostgreSQL):

- a **canonical** id, exactly `exec_` followed by 32 lowercase hex digits (what
  `ids.new_execution_id` makes, and what every release made), is the 16 bytes those digits
  spell;
- **any other** id (written by a caller that chose its own: uppercase hex, other lengths,
  any text) is the tag byte `0xFF`, then its UTF-8 bytes, then one more `0xFF` when that
  would otherwise make exactly 16 bytes.

So the two forms can never be confused: a canonical id is exactly 16 bytes, another id never
is; and `0xFF` never occurs in UTF-8, so the padding byte is always recognised. Decoding is
exact for every string, including the empty one, NUL and any Unicode (lone surrogates cannot
be encoded as UTF-8 and are refused, as the text columns refused them).

Ordering: canonical ids keep their text order (big-endian bytes of lowercase hex), and so do
other ids among themselves (UTF-8 orders by code point; only a 15-byte id sorts after the
longer ids it begins, by its padding byte), so the primary key still serves "ids starting
with this prefix" as one or two index ranges (`prefix_ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The text every canonical id starts with.
PREFIX = "exec_"
#: Hex digits of a canonical id after `PREFIX`.
HEX_DIGITS = 32
#: Bytes of a canonical id's stored form.
CANONICAL_BYTES = HEX_DIGITS // 2
#: First byte of every non-canonical id's stored form (and its padding byte).
TAG = 0xFF
_TAG = bytes((TAG,))
_HEX = frozenset("0123456789abcdef")
_CANONICAL_LENGTH = len(PREFIX) + HEX_DIGITS


def is_canonical(text: str) -> bool:
    """Whether `text` is `exec_` followed by exactly 32 lowercase hex digits."""
    return (
        len(text) == _CANONICAL_LENGTH
        and text.startswith(PREFIX)
        and _HEX.issuperset(text[len(PREFIX) :])
    )


def encode(text: str) -> bytes:
    """The stored form of an execution id (see the module docstring).

    Raises:
        UnicodeEncodeError: `text` holds a lone surrogate (not storable as UTF-8).
    """
    if len(text) == _CANONICAL_LENGTH and text.startswith(PREFIX):
        digits = text[len(PREFIX) :]
        try:
            stored = bytes.fromhex(digits)
        except ValueError:
            pass
        else:
            # fromhex also takes uppercase digits and spaces: only lowercase round-trips.
            if stored.hex() == digits:
                return stored
    raw = _TAG + text.encode("utf-8")
    return raw + _TAG if len(raw) == CANONICAL_BYTES else raw


def encode_optional(text: str | None) -> bytes | None:
    """`encode`, passing None (no execution, no parent) through."""
    return None if text is None else encode(text)


def decode(stored: bytes | bytearray | memoryview | str) -> str:
    """The text form of a stored id: the inverse of `encode`.

    A text value is returned as it is: SQLite keeps whatever a writer binds, and a writer of
    an earlier release still running during the upgrade binds text ids (stop such writers
    before upgrading; their rows still read back, though prefix lookups miss them).

    Raises:
        ValueError: `stored` is not a form `encode` produces.
    """
    if isinstance(stored, str):
        return stored
    raw = bytes(stored)
    if len(raw) == CANONICAL_BYTES:
        return PREFIX + raw.hex()
    if not raw or raw[0] != TAG:
        raise ValueError(f"not a stored execution id: {raw!r}")
    body = raw[1:-1] if len(raw) == CANONICAL_BYTES + 1 and raw[-1] == TAG else raw[1:]
    return body.decode("utf-8")


def decode_optional(stored: Any) -> str | None:
    """`decode`, passing None through (a column with no id)."""
    return None if stored is None else decode(stored)


@dataclass(frozen=True, slots=True)
class IdRange:
    """Stored ids `low <= id < high` (`high` None: no upper bound) of one form.

    `canonical` says which form: the query adds `length(id) = 16` (or `<> 16`), since a
    canonical id may begin with `0xFF` too.
    """

    low: bytes
    high: bytes | None
    canonical: bool


def _successor(raw: bytes) -> bytes | None:
    """The smallest byte string above every string starting with `raw`, or None."""
    stem = raw.rstrip(b"\xff")
    if not stem:
        return None
    return stem[:-1] + bytes((stem[-1] + 1,))


def prefix_ranges(prefix: str) -> list[IdRange]:
    """Index ranges holding exactly the stored ids whose text starts with `prefix`.

    At most two: canonical ids (when `prefix` could start one) and other ids. Every id in
    a range starts with `prefix`, except that a canonical range bounded only by hex digits
    is exact too; callers still check `startswith` after decoding, for safety.
    """
    try:
        tagged = _TAG + prefix.encode("utf-8")
    except UnicodeEncodeError:
        return []  # a lone surrogate: no stored id holds one
    ranges: list[IdRange] = []
    if PREFIX.startswith(prefix):  # "", "e", ..., "exec_": every canonical id
        ranges.append(IdRange(b"", None, True))
    elif prefix.startswith(PREFIX):
        digits = prefix[len(PREFIX) :]
        if len(digits) <= HEX_DIGITS and _HEX.issuperset(digits):
            low = bytes.fromhex(digits + "0" * (len(digits) % 2))
            if len(digits) % 2:
                # An odd digit count fixes the high nibble of the last byte: 0xA0..0xAF.
                high: bytes | None = _successor(low[:-1] + bytes((low[-1] | 0x0F,)))
            else:
                high = _successor(low)
            ranges.append(IdRange(low, high, True))
    ranges.append(IdRange(tagged, _successor(tagged), False))
    return ranges
