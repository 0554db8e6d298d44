"""The stored form of execution ids (`store/idcodec.py`): compact, exact, never confused.

Canonical ids (`exec_` + 32 lowercase hex) take 16 bytes; every other string round-trips
exactly through its tagged form, and the prefix ranges find exactly the ids with a prefix.
"""

from __future__ import annotations

import random

import pytest

from agentwatch.ids import new_execution_id
from agentwatch.store import idcodec

HOSTILE = (
    "",
    "\x00",
    "exec_",
    "exec_" + "0" * 31,  # one digit short
    "exec_" + "0" * 33,  # one digit long
    "exec_" + "A" * 32,  # uppercase hex
    "EXEC_" + "a" * 32,
    "exec_" + "g" * 32,
    "exec-" + "a" * 32,
    "exec_" + "a" * 31 + "\x00",
    "exec_" + "ab" * 15 + "  ",  # bytes.fromhex skips spaces: 15 bytes
    "exec_ab" + " ab" * 10,  # spaces between pairs
    "exec_" + "\uff11" * 32,  # full-width digits
    "exec_" + "0" * 30 + "aB",
    "0123456789abcdef",  # 16 characters
    "0123456789abcde",  # 15 bytes: its tagged form is padded off 16
    "é" * 7 + "x",  # 15 UTF-8 bytes in 8 characters
    "é" * 8,  # 16 UTF-8 bytes
    "\U0010ffff" * 4,
    "a\x00b",
    "\x00" * 15,
    "exec_0123456789abcdef",
    "été-1",
    "zz\U0010ffff",
)


@pytest.mark.parametrize("text", HOSTILE)
def test_other_ids_round_trip_exactly_and_never_take_16_bytes(text: str) -> None:
    stored = idcodec.encode(text)
    assert idcodec.decode(stored) == text
    assert len(stored) != idcodec.CANONICAL_BYTES
    assert stored[0] == idcodec.TAG
    assert not idcodec.is_canonical(text)


def test_canonical_ids_take_16_bytes_and_round_trip() -> None:
    for _ in range(200):
        text = new_execution_id()
        stored = idcodec.encode(text)
        assert len(stored) == 16 and idcodec.decode(stored) == text
    top = "exec_" + "f" * 32  # begins with the tag byte, still canonical by its length
    assert idcodec.encode(top) == b"\xff" * 16 and idcodec.decode(b"\xff" * 16) == top


def test_distinct_ids_have_distinct_stored_forms() -> None:
    rng = random.Random(7)
    texts = set(HOSTILE)
    texts.update(new_execution_id() for _ in range(50))
    texts.update(
        "".join(rng.choice("exc_0f\x00é") for _ in range(rng.randrange(20))) for _ in range(2000)
    )
    stored = {idcodec.encode(t) for t in texts}
    assert len(stored) == len(texts)


def test_canonical_ids_keep_their_text_order() -> None:
    texts = sorted(new_execution_id() for _ in range(100))
    texts += ["exec_" + "0" * 32, "exec_" + "f" * 32]
    assert sorted(texts, key=idcodec.encode) == sorted(texts)


def test_a_lone_surrogate_is_refused_and_garbage_does_not_decode() -> None:
    with pytest.raises(UnicodeEncodeError):
        idcodec.encode("exec_\ud800")
    for garbage in (b"", b"abc", b"\xfe" + b"a" * 20):
        with pytest.raises(ValueError):
            idcodec.decode(garbage)
    assert idcodec.encode_optional(None) is None and idcodec.decode_optional(None) is None


def _in(span: idcodec.IdRange, stored: bytes) -> bool:
    inside = span.low <= stored and (span.high is None or stored < span.high)
    return inside and (len(stored) == idcodec.CANONICAL_BYTES) == span.canonical


@pytest.mark.parametrize(
    "prefix",
    ["", "e", "exec", "exec_", "exec_0", "exec_01a", "exec_01ab", "exec_f", "exec_ff",
     "exec_fff", "exec_" + "ab" * 16, "exec_" + "ab" * 16 + "0", "exec_A", "exec_g", "0123",
     "é", "\x00", "zz", "exec_0123456789abcdef"],
)  # fmt: skip
def test_prefix_ranges_hold_exactly_the_ids_with_the_prefix(prefix: str) -> None:
    rng = random.Random(prefix)
    texts = list(HOSTILE) + [new_execution_id() for _ in range(30)]
    texts += [
        "exec_" + "".join(rng.choice("0123456789abcdef") for _ in range(32)) for _ in range(300)
    ]
    texts += ["exec_01a" + "0" * 29, "exec_01af" + "f" * 28, "exec_01b" + "0" * 29]
    texts += ["exec_f" + "f" * 31, "exec_e" + "f" * 31, prefix, prefix + "x"]
    spans = idcodec.prefix_ranges(prefix)
    assert len(spans) <= 2
    for text in texts:
        stored = idcodec.encode(text)
        matched = [s for s in spans if _in(s, stored)]
        assert len(matched) == (1 if text.startswith(prefix) else 0), text


def test_a_text_id_left_by_an_earlier_writer_reads_back_as_it_is() -> None:
    assert idcodec.decode("exec_written_by_an_old_writer") == "exec_written_by_an_old_writer"


def test_other_ids_keep_code_point_order_except_a_padded_15_byte_id() -> None:
    texts = ["a", "ab", "b", "é", "z\U0010ffff", "\x00", "exec_A"]
    assert sorted(texts, key=idcodec.encode) == sorted(texts)
    padded, longer = "0123456789abcde", "0123456789abcdeX"
    assert idcodec.encode(padded) > idcodec.encode(longer)  # documented exception
