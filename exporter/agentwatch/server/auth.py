"""HTTP Basic authentication against the web config's bcrypt hashes, and its rate limiter.

bcrypt is slow on purpose (~50-250 ms per check at cost 10-12); Prometheus sends the same
credentials every scrape, so paying it every time would turn a 15 s scrape interval into a
steady CPU load and let anyone with a password list keep a core busy. Verifications are
cached under `(user, sha256(password))` together with the hash they were checked against:
a changed hash in the file (a new password) is never answered from the cache, and the
password itself is never kept. Misses run in a worker thread, one at a time (the toolkit's
`bcryptMtx`), so the event loop keeps serving `/healthz` and cached scrapes meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import bcrypt

#: A bcrypt hash of a random string: unknown users are checked against it so a wrong user
#: name costs as long as a wrong password (no user enumeration by timing).
_DECOY_HASH = b"$2b$10$GfACidz1gibZHtJfmFoPDuJNqunqvo4Ov2u4Ah8VAfQFqcHI.imri"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None if absent/garbled."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def check_password(password: str, hashed: str) -> bool:
    """bcrypt comparison; False for anything bcrypt refuses (e.g. passwords over 72 bytes)."""
    try:
        return bool(bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii")))
    except (ValueError, TypeError):
        return False


class BasicAuthCache:
    """Remembers verdicts so repeated scrapes with the same credentials skip bcrypt.

    Bounded (`size` entries, least recently used evicted) so a flood of distinct passwords
    cannot grow memory. Thread-safe.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, bytes], tuple[str, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self.bcrypt_checks = 0

    @staticmethod
    def _key(user: str, password: str) -> tuple[str, bytes]:
        return user, hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()

    def cached(self, users: Mapping[str, str], user: str, password: str) -> bool | None:
        """The cached verdict for these credentials against the current hash, or None."""
        hashed = users.get(user, _DECOY_HASH.decode())
        key = self._key(user, password)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != hashed:
                return None
            self._entries.move_to_end(key)
        return entry[1] and user in users

    def verify(self, users: Mapping[str, str], user: str, password: str) -> bool:
        """Check the credentials (bcrypt on a cache miss). Blocking: call from a worker thread."""
        cached = self.cached(users, user, password)
        if cached is not None:
            return cached
        known = user in users
        hashed = users[user] if known else _DECOY_HASH.decode()
        with self._bcrypt_lock:
            self.bcrypt_checks += 1
            ok = check_password(password, hashed) and known
        with self._lock:
            self._entries[self._key(user, password)] = (hashed, ok)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return ok


class TokenBucket:
    """The web config's `rate_limit`: `burst` tokens, one more every `interval` seconds."""

    def __init__(
        self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._stamp) / self.interval
            )
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
