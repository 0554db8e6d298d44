"""Redaction and truncation of what agentwatch keeps from user data.

Captured arguments, prompts, attributes and error messages end up in a database that more
people can read than the program's secrets store. Before anything is kept it passes through a
`Redactor`: API keys, tokens, JWTs, passwords (in `name=value` text and in URLs), private keys,
card numbers, e-mail addresses and anything under a key named like a credential are replaced,
user patterns (`redact_patterns` in the settings) too, and every string, list and nesting level
is bounded so a 2 MB prompt cannot blow up memory or the store. The output is always
JSON-serialisable (unknown objects become a truncated `repr`). `mask_url` hides the password of
a URL that is printed (store URLs in the CLI and `serve`'s logs).

Every built-in shape, an example and where it is masked are listed in docs/redaction.md; a test
reads that table, so the doc and this module cannot drift apart. Every pattern is linear in the
length of its input (bounded quantifiers, matches anchored at the start of a run), so a hostile
string cannot make redaction hang the writer.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import Any

REDACTED = "[REDACTED]"

#: Shown instead of a URL's password when the URL itself is printed (`config show`, logs).
URL_PASSWORD_MASK = "***"

# -- names that hold a credential -----------------------------------------------------------

#: A mapping key, or the name in a `name=value` / `name: value` pair, whose value is a
#: credential whatever it looks like. Matched case-insensitively anywhere in the name, except
#: the short words of the last line, which must end it: `access_token` and `user_session` are
#: secrets, `max_tokens`, `input_tokens` and `session_count` are not.
_SECRET_NAME = re.compile(
    r"(?i)(?:password|passwd|passphrase|secret|credential|cookie|authorization|"
    r"api[_.\-]?key|private[_.\-]?key|access[_.\-]?key|signing[_.\-]?key|"
    r"dsn|conn(?:ection)?[_.\-]?str(?:ing)?|session[_.\-]?(?:id|key)|"
    r"(?:token|session|auth|pwd)$|(?:^|[_.\-])pass$)"
)


def is_secret_name(name: str) -> bool:
    """True when a value named `name` is a credential (`password`, `DSN`, `x-api-key`...)."""
    return _SECRET_NAME.search(name) is not None


#: A `name=value`, `name: value`, `"name": "value"` candidate; the name is checked with
#: `is_secret_name`, the value is read by `_PAIR_VALUE` right after the separator.
_PAIR_NAME = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]{0,79}+)(\\?[\"']?[ \t]*[=:][ \t]*)")
_PAIR_VALUE = re.compile(
    r"(?i)(?P<scheme>(?:basic|bearer|digest|token|negotiate|ntlm)[ \t]+)?"
    r"(?:\"[^\"\r\n]{1,2048}\"?|'[^'\r\n]{1,2048}'?|\\\"[^\"\r\n\\]{1,2048}(?:\\\")?|"
    r"(?!\[REDACTED)[^\s\"',;&)}\]]{1,2048})"
)

_REST_OF_LINE = re.compile(r"(?P<scheme>)[^\r\n]{1,2048}")


def _mask_pairs(text: str, mask: str = REDACTED) -> str:
    """Replace the value of every `name=value` pair whose name is a credential's."""
    pieces: list[str] = []
    kept = position = 0
    while True:
        found = _PAIR_NAME.search(text, position)
        if found is None:
            break
        position = found.end()
        if not is_secret_name(found.group(1)):
            continue
        cookie = found.group(1).lower().endswith("cookie")
        if cookie and text[position : position + 1] not in ("'", '"', "\\"):
            value = _REST_OF_LINE.match(text, position)  # every cookie of the header
        else:
            value = _PAIR_VALUE.match(text, position)
        if value is None:
            continue
        raw = value.group(0)
        scheme = value.group("scheme") or ""
        body = raw[len(scheme) :]
        if body[:2] == '\\"':
            masked = f'\\"{mask}\\"'
        elif body[:1] in ("'", '"'):
            masked = f"{body[0]}{mask}{body[0]}"
        else:
            masked = mask
        pieces.append(text[kept:position])
        pieces.append(scheme + masked)
        kept = position = value.end()
    if not pieces:
        return text
    pieces.append(text[kept:])
    return "".join(pieces)


# -- secret-looking substrings --------------------------------------------------------------


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = ord(char) - 48
        if index % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    """A payment card number (issuer digit 2-6, 13-19 digits, Luhn-valid), else untouched."""
    digits = "".join(c for c in match.group(0) if c.isdigit())
    if 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_valid(digits):
        return "[REDACTED:card]"
    return match.group(0)


def _basic(match: re.Match[str]) -> str:
    """`Basic <base64 of user:password>`; prose such as "basic information" is left alone."""
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return match.group(0)
    if ":" not in decoded or not decoded.isprintable():
        return match.group(0)
    return f"{match.group(1)} [REDACTED:credentials]"


Replacement = str | Callable[[re.Match[str]], str]

#: Secret-looking substrings, in the order they are applied, each replaced by a marker naming
#: what it was. The third element lists substrings one of which a match must contain (a cheap
#: `in` test skips the regex on ordinary text); empty when there is none. Credential
#: `name=value` pairs are masked right after PEM keys (see `_builtin_steps`), so
#: `dsn=postgresql://u:p@h` becomes one marker. Possessive quantifiers (`{1,30}+`, Python 3.11)
#: mark repetitions that never need to give characters back, keeping each attempt short.
_BUILTIN_PATTERNS: tuple[tuple[str, Replacement, tuple[str, ...]], ...] = (
    # PEM private keys, multi-line; a key cut off before its END line is masked to the end.
    (
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[^-]*(?:-(?!----END)[^-]*)*"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        "[REDACTED:private_key]",
        ("-----BEGIN",),
    ),
    # Slack incoming webhooks: the URL itself is the credential.
    (
        r"https?://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,512}",
        "[REDACTED:slack_webhook]",
        ("hooks.slack",),
    ),
    # The password of any URL with credentials (postgresql://user:pass@host, https://u:p@).
    (
        r"(?i)\b([a-z][a-z0-9+.\-]{1,30}+://[^\s/?#@:]{0,256}+:)[^\s/?#]{1,256}(?=@)",
        r"\1[REDACTED:password]",
        ("://",),
    ),
    (r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*", "Bearer [REDACTED:token]", ()),
    (r"(?i)\b(basic)[ \t]++([A-Za-z0-9+/]{6,1024}+={0,2}+)(?![A-Za-z0-9+/=])", _basic, ()),
    (
        r"\beyJ[A-Za-z0-9_\-]{2,4096}+\.[A-Za-z0-9_\-]{2,8192}+\.[A-Za-z0-9_\-]{0,4096}+",
        "[REDACTED:jwt]",
        ("eyJ",),
    ),
    # OpenAI / Anthropic / most "sk-" style keys (sk-..., sk-proj-..., sk-ant-...).
    (r"\bsk-[A-Za-z0-9_\-]{8,}", "[REDACTED:api_key]", ("sk-",)),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED:aws_key]", ("AKIA", "ASIA")),
    # AWS secret access keys: 40 characters of base64 with upper and lower case and digits,
    # standing alone (git SHAs are lower-case hex and stay readable).
    (
        r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
        r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9+][A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])",
        "[REDACTED:aws_secret]",
        (),
    ),
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}\b", "[REDACTED:github_token]", ("_",)),
    (r"\bAIza[0-9A-Za-z_\-]{30,}", "[REDACTED:google_key]", ("AIza",)),
    (r"\bxox[abeprs]-[A-Za-z0-9\-]{10,}", "[REDACTED:slack_token]", ("xox",)),
    # Payment cards: 13-19 digits, alone or in groups of 4 (4-6-5 / 4-6-4 for Amex, Diners).
    (
        r"(?<![\w.])(?:\d{13,19}|\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|"
        r"\d{4}([ \-])\d{6}\2\d{4,5})(?!\w|[.,]\d)",
        _card,
        (),
    ),
    (
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}+@[A-Za-z0-9\-]{1,63}"
        r"(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}",
        "[REDACTED:email]",
        ("@",),
    ),
)


def mask_url(url: str) -> str:
    """A URL safe to print: its password, and credential-named query values, become `***`.

    The one helper for every URL agentwatch prints or logs (`config show`, `init`, `serve`'s
    startup and "store unavailable" lines, store error messages). Never raises; text that is
    not a URL gets the `name=value` masking only.

    Example:
        >>> mask_url("postgresql://app:hunter2@db:5432/agents?sslpassword=x")
        'postgresql://app:***@db:5432/agents?sslpassword=***'
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _mask_pairs(url, URL_PASSWORD_MASK)
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            netloc = f"{user}:{URL_PASSWORD_MASK}@{hostport}"
    return f"{scheme}://{netloc}{_mask_pairs(tail, URL_PASSWORD_MASK)}"


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
        self._user = tuple(re.compile(p) for p in extra_patterns)
        self._steps = (*_builtin_steps(), *(_substitute(p, REDACTED) for p in self._user))
        self._names: dict[str, str] = {}
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
        for step in self._steps:
            window = step(window)
        if len(window) > limit or original > limit + 256:
            return f"{window[:limit]}...[truncated, {original} chars]"
        return window

    def redact_name(self, name: str) -> str:
        """An agent or tool name with the user's `redact_patterns` applied (built-ins are not:
        a tool called `sk-learn-classifier` keeps its name). Cached: names repeat."""
        if not self._user or not isinstance(name, str):  # non-strings: validation repairs
            return name
        cached = self._names.get(name)
        if cached is None:
            cached = name
            for pattern in self._user:
                cached = pattern.sub(REDACTED, cached)
            if len(self._names) >= _NAME_CACHE_SIZE:
                self._names.clear()
            self._names[name] = cached
        return cached

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
                if item is not None and is_secret_name(name):
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


_NAME_CACHE_SIZE = 4096


def _substitute(
    pattern: re.Pattern[str], replacement: Replacement, hints: tuple[str, ...] = ()
) -> Callable[[str], str]:
    if not hints:

        def step(text: str) -> str:
            return pattern.sub(replacement, text)

        return step

    def hinted_step(text: str) -> str:
        if not any(hint in text for hint in hints):
            return text
        return pattern.sub(replacement, text)

    return hinted_step


@lru_cache(maxsize=1)
def _builtin_steps() -> tuple[Callable[[str], str], ...]:
    """The built-in patterns compiled once, with the credential-pair step after PEM keys."""
    compiled = [_substitute(re.compile(p), r, hints) for p, r, hints in _BUILTIN_PATTERNS]
    return (compiled[0], _hinted_pairs, *compiled[1:])


def _hinted_pairs(text: str) -> str:
    return _mask_pairs(text) if "=" in text or ":" in text else text


@lru_cache(maxsize=8)
def redactor_for(patterns: tuple[str, ...]) -> Redactor:
    """Shared `Redactor` for a settings' `redact_patterns` (compiled once)."""
    return Redactor(patterns)
