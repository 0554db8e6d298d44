"""What agentwatch keeps from user data carries no secrets and stays bounded."""

from __future__ import annotations

import json

import pytest

from agentwatch.redaction import REDACTED, Redactor


@pytest.mark.parametrize(
    ("secret", "marker"),
    [
        ("sk-proj-abcdefghijklmnop1234", "[REDACTED:api_key]"),
        ("sk-ant-api03-abcdefghijklmnop", "[REDACTED:api_key]"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Bearer [REDACTED:token]"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws_key]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:github_token]"),
        ("ada.lovelace+work@example.co.uk", "[REDACTED:email]"),
    ],
)
def test_secrets_in_text_are_replaced(secret: str, marker: str) -> None:
    out = Redactor().redact_text(f"before {secret} after")
    assert out == f"before {marker} after"


def test_credential_keys_are_redacted_whatever_their_value_looks_like() -> None:
    value = {
        "password": "hunter2",
        "client_secret": "abc",
        "api_key": "plain",
        "Authorization": "Basic dXNlcjpwYXNz",
        "access_token": "t",
        "max_tokens": 256,
        "input_tokens": 10,
        "question": "what is 2+2?",
        "nested": {"db": {"passwd": "x", "host": "db.local"}},
    }
    out = Redactor().redact(value)
    for key in ("password", "client_secret", "api_key", "Authorization", "access_token"):
        assert out[key] == REDACTED
    assert out["max_tokens"] == 256 and out["input_tokens"] == 10
    assert out["question"] == "what is 2+2?"
    assert out["nested"] == {"db": {"passwd": REDACTED, "host": "db.local"}}


def test_user_patterns_are_applied() -> None:
    out = Redactor([r"ACME-\d{6}"]).redact({"note": "ticket ACME-123456 closed"})
    assert out == {"note": f"ticket {REDACTED} closed"}


def test_huge_strings_are_truncated_and_a_secret_at_the_cut_is_not_half_kept() -> None:
    redactor = Redactor(max_chars=100)
    text = "x" * 95 + " sk-abcdefghijklmnopqrstuvwxyz" + "y" * 5000
    out = redactor.redact_text(text)
    assert out.startswith("x" * 95)
    assert "sk-abc" not in out and "truncated" in out
    assert len(out) < 200


def test_collections_depth_and_total_size_are_bounded() -> None:
    redactor = Redactor(max_items=5, max_depth=3, max_total_chars=1000, max_chars=300)
    deep: object = "bottom"
    for _ in range(10):
        deep = {"level": deep}
    value = {"items": list(range(100)), "deep": deep, "blobs": ["z" * 300] * 5}
    out = redactor.redact(value)
    assert out["items"][:5] == [0, 1, 2, 3, 4] and out["items"][5] == "... 95 more items"
    assert isinstance(out["deep"]["level"]["level"], str)  # cut at depth 3, as a repr
    assert len(json.dumps(out)) < 2500
    assert out["blobs"][-1] == "[truncated]"  # the total budget ran out


def test_output_is_json_safe_for_any_input() -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    value = {
        1: b"\x00\x01",
        "nan": float("nan"),
        "set": {3},
        "obj": Weird(),
        "tuple": (1, "a@b.io"),
    }
    out = Redactor().redact(value)
    json.dumps(out, allow_nan=False)
    assert out["1"] == "<2 bytes>" and out["nan"] == "nan" and out["obj"] == "<Weird object>"
    assert out["tuple"] == [1, "[REDACTED:email]"]
