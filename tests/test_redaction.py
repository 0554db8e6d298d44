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


# -- shapes beyond the table in docs/redaction.md (tests/test_redaction_table.py) -----------


def test_random_16_digit_ids_are_kept_and_only_luhn_valid_card_numbers_masked() -> None:
    import random

    rng = random.Random(8)
    redactor = Redactor()
    kept = masked = 0
    for _ in range(500):
        number = str(rng.randrange(4 * 10**15, 5 * 10**15))
        digits = [int(c) for c in number]
        luhn = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
        out = redactor.redact_text(f"id {number}")
        if luhn % 10 == 0:
            assert out == "id [REDACTED:card]"
            masked += 1
        else:
            assert out == f"id {number}"
            kept += 1
    assert kept > 400 and masked > 20  # about 1 in 10 random numbers passes the Luhn check


def test_a_secret_pair_inside_an_unrelated_value_is_still_found() -> None:
    out = Redactor().redact_text("note: password=hunter2, retry=3")
    assert out == "note: password=[REDACTED], retry=3"


def test_a_quoted_value_cut_before_its_closing_quote_is_masked() -> None:
    assert Redactor().redact_text('{"password": "hunter2') == '{"password": "[REDACTED]"'


def test_a_private_key_straddling_the_cut_is_masked_to_the_end() -> None:
    key = "-----BEGIN EC PRIVATE KEY-----\n" + "MHcCAQEEIA" * 300 + "\n-----END EC PRIVATE KEY-----"
    out = Redactor(max_chars=100).redact_text("x" * 50 + key)
    assert "MHcC" not in out and out.startswith("x" * 50 + "[REDACTED:private_key]")


def test_names_pass_through_user_patterns_only() -> None:
    redactor = Redactor([r"cust-\d+"])
    assert redactor.redact_name("agent-for-cust-42") == "agent-for-[REDACTED]"
    assert redactor.redact_name("ada@example.com-bot") == "ada@example.com-bot"
    assert Redactor().redact_name("agent-for-cust-42") == "agent-for-cust-42"


_ADVERSARIAL = {
    "letters": "a" * 1_000_000,
    "digits": "1" * 1_000_000,
    "spaced digits": "4111 " * 200_000,
    "dashes": "-" * 1_000_000,
    "pem begins": "-----BEGIN RSA PRIVATE KEY-----\n" * 31_000,
    "url starts": "a://b:" * 170_000,
    "at signs": "a@" * 500_000,
    "dotted email": "a." * 250_000 + "@" + "b." * 250_000,
    "pair names": "password=" * 110_000,
    "open quote": 'password="' + "a" * 1_000_000,
    "jwt starts": "eyJ." * 250_000,
    "base64": "A1a/" * 250_000,
    "basic words": "basic " * 170_000,
    "bearer words": "bearer " * 140_000,
    "webhook starts": "https://hooks.slack.com/services/" * 30_000,
    "colons": ":" * 1_000_000,
    "spaces": " " * 1_000_000,
    "sk prefixes": "sk-" * 330_000,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", list(_ADVERSARIAL.values()), ids=list(_ADVERSARIAL))
@pytest.mark.slow
def test_every_pattern_is_linear_on_a_hostile_megabyte(text: str) -> None:
    """Each built-in step runs on the whole 1 MB (not the bounded window `redact_text` keeps),
    so a pattern with catastrophic backtracking would hang here; the timeout is generous."""
    from agentwatch.redaction import _builtin_steps

    for step in _builtin_steps():
        assert isinstance(step(text), str)
    assert len(Redactor().redact_text(text)) < 3000
