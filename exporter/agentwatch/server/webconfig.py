"""The Prometheus exporter-toolkit web configuration file: TLS, basic auth, response headers.

The same YAML file node_exporter, Prometheus and Alertmanager read with `--web.config.file`
(and `promtool check web-config` validates) protects `agentwatch serve` and
`agentwatch.start_http_server`:

```yaml
tls_server_config:
  cert_file: agentwatch.crt          # relative paths resolve against this file's directory
  key_file: agentwatch.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients-ca.crt
  min_version: TLS12
basic_auth_users:
  prometheus: $2b$10$...             # bcrypt: `agentwatch web hash-password`
http_server_config:
  headers:
    X-Frame-Options: deny
```

Keys are checked strictly, as the exporter-toolkit does: an unknown key, or one Python's `ssl`
cannot honour (`client_auth_type: RequestClientCert` or `RequireAnyClientCert`, which accept a
client certificate without verifying it; `http2: true`; inline `cert`/`key`), is a one-line
`WebConfigError`, never silently ignored. `WebConfigWatcher` re-reads the file (and the
certificate files it names) when one of them changes, so a rotated certificate or a new user
applies to the next connection or request without a restart.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agentwatch.errors import WebConfigError

logger = logging.getLogger("agentwatch")

ClientAuth = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]

_TOP_KEYS = frozenset({"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"})
_TLS_KEYS = frozenset(
    {
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "cipher_suites",
        "curve_preferences",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
        "client_allowed_sans",
        # Known to the exporter-toolkit but refused below with a reason:
        "cert",
        "key",
    }
)
_HTTP_KEYS = frozenset({"http2", "headers"})

#: Client-auth policies Python's ssl can enforce. The toolkit's `RequestClientCert` and
#: `RequireAnyClientCert` take a certificate without verifying it: OpenSSL through Python
#: cannot accept an unverified certificate, and verifying it would silently change the policy.
_CLIENT_AUTH: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = frozenset(
    {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
)

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

#: Go's names (crypto/tls `CipherSuites()`, what the toolkit accepts) to OpenSSL's. As in Go,
#: the list applies to TLS 1.2 and older; TLS 1.3 suites are always enabled and not
#: configurable, so naming them is accepted and changes nothing (the toolkit's behaviour).
_CIPHERS: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}

#: Go curve names to OpenSSL's. Python's ssl sets one curve (`set_ecdh_curve`), not a list.
_CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

#: Headers the toolkit lets a web config add, and the values allowed where it restricts them
#: (kept identical so one file means the same everywhere in the Prometheus ecosystem).
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class TLSSettings:
    """`tls_server_config` resolved: absolute paths, OpenSSL names, a verify mode."""

    cert_file: Path
    key_file: Path
    client_auth: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_ca: str | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()
    curve: str | None = None
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] = ()

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth == "RequireAndVerifyClientCert"

    def files(self) -> tuple[Path, ...]:
        """The files whose change must rebuild the TLS context (certificate rotation)."""
        found = [self.cert_file, self.key_file]
        if self.client_ca_file is not None:
            found.append(self.client_ca_file)
        return tuple(found)


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: at most `burst` requests at once, refilled one per `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """One parsed web configuration. `WebConfig()` is "no file": plain HTTP, no auth."""

    path: Path | None = None
    tls: TLSSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def authenticates(self) -> bool:
        """True when a request must prove who it is (a password or a client certificate)."""
        return bool(self.users) or (self.tls is not None and self.tls.requires_client_cert)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (two entries for one user would be a trap)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{where}: expected a mapping")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise WebConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _unknown(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise WebConfigError(f"{where}: unknown key {unknown[0]!r}")


def _resolve(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _tls_enabled(raw: Mapping[str, Any]) -> bool:
    """The toolkit's `IsEnabled`: any of these keys set turns TLS on (and then must be whole)."""
    keys = ("cert_file", "key_file", "client_ca_file", "client_ca", "client_auth_type")
    return any(raw.get(k) not in (None, "") for k in keys)


def _parse_tls(raw: Mapping[str, Any], base: Path, where: str) -> TLSSettings | None:
    _unknown(raw, _TLS_KEYS, where)
    for inline in ("cert", "key"):
        if raw.get(inline) not in (None, ""):
            raise WebConfigError(
                f"{where}.{inline}: inline certificates and keys are not supported; "
                f"put them in a file and use {inline}_file"
            )
    if not _tls_enabled(raw):
        return None
    cert = raw.get("cert_file")
    key = raw.get("key_file")
    if not cert:
        raise WebConfigError(f"{where}: missing cert_file")
    if not key:
        raise WebConfigError(f"{where}: missing key_file")
    client_auth = _string(
        raw.get("client_auth_type") or "NoClientCert", f"{where}.client_auth_type"
    )
    if client_auth in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: {client_auth} (accept a client certificate without "
            "verifying it) cannot be honoured by Python's ssl; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if client_auth not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type: invalid value {client_auth!r} (expected one of "
            f"{', '.join(_CLIENT_AUTH)})"
        )
    ca_file = raw.get("client_ca_file")
    ca_text = raw.get("client_ca")
    has_ca = bool(ca_file) or bool(ca_text)
    if has_ca and client_auth == "NoClientCert":
        raise WebConfigError(
            f"{where}: client_ca_file is set but client_auth_type is NoClientCert "
            "(set client_auth_type to RequireAndVerifyClientCert)"
        )
    if client_auth != "NoClientCert" and not has_ca:
        raise WebConfigError(
            f"{where}.client_auth_type: {client_auth} needs client_ca_file (the CA that signs "
            "the client certificates)"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = _string(raw.get(name) or default, f"{where}.{name}")
        if text not in _TLS_VERSIONS:
            raise WebConfigError(
                f"{where}.{name}: unknown TLS version {text!r} (expected TLS10, TLS11, TLS12 "
                "or TLS13)"
            )
        versions[name] = _TLS_VERSIONS[text]
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    ciphers: list[str] = []
    for name in _strings(raw.get("cipher_suites"), f"{where}.cipher_suites"):
        if name not in _CIPHERS:
            raise WebConfigError(f"{where}.cipher_suites: unknown cipher {name!r}")
        openssl_name = _CIPHERS[name]
        if openssl_name is not None:
            ciphers.append(openssl_name)
    curves = _strings(raw.get("curve_preferences"), f"{where}.curve_preferences")
    for name in curves:
        if name not in _CURVES:
            raise WebConfigError(f"{where}.curve_preferences: unknown curve {name!r}")
    if len(curves) > 1:
        raise WebConfigError(
            f"{where}.curve_preferences: Python's ssl can restrict the server to one curve, "
            f"not an ordered list; keep one of {', '.join(curves)}"
        )
    sans = _strings(raw.get("client_allowed_sans"), f"{where}.client_allowed_sans")
    if sans and client_auth != "RequireAndVerifyClientCert":
        raise WebConfigError(
            f"{where}.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert"
        )
    prefer = raw.get("prefer_server_cipher_suites", True)
    return TLSSettings(
        cert_file=_resolve(base, _string(cert, f"{where}.cert_file")),
        key_file=_resolve(base, _string(key, f"{where}.key_file")),
        client_auth=client_auth,
        client_ca_file=(
            _resolve(base, _string(ca_file, f"{where}.client_ca_file")) if ca_file else None
        ),
        client_ca=_string(ca_text, f"{where}.client_ca") if ca_text and not ca_file else None,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        ciphers=tuple(ciphers),
        curve=_CURVES[curves[0]] if curves else None,
        prefer_server_cipher_suites=_bool(prefer, f"{where}.prefer_server_cipher_suites"),
        client_allowed_sans=sans,
    )


def _parse_users(raw: Any, where: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for user, hashed in _mapping(raw, where).items():
        if not isinstance(user, str) or not user:
            raise WebConfigError(f"{where}: user names must be non-empty strings")
        if ":" in user:
            raise WebConfigError(
                f"{where}: user name {user!r} contains ':' (Basic auth splits there)"
            )
        text = _string(hashed, f"{where}.{user}")
        match = _BCRYPT.match(text)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise WebConfigError(
                f"{where}.{user}: not a bcrypt hash (make one with `agentwatch web hash-password`)"
            )
        users[user] = text
    return users


def _parse_headers(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, value in _mapping(raw, where).items():
        if name not in _HEADERS:
            raise WebConfigError(f"{where}: HTTP header {name!r} can not be configured")
        text = _string(value, f"{where}.{name}")
        if "\r" in text or "\n" in text:
            raise WebConfigError(f"{where}.{name}: a header value cannot contain a line break")
        allowed = _HEADERS[name]
        if allowed and text not in allowed:
            raise WebConfigError(
                f"{where}.{name}: expected one of {', '.join(allowed)}, got {text!r}"
            )
        headers.append((name, text))
    return tuple(headers)


def _go_duration(value: Any, where: str) -> float:
    text = str(value).strip()
    if not _GO_DURATION.match(text):
        raise WebConfigError(f"{where}: not a duration such as 1s or 100ms: {value!r}")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _GO_DURATION_PART.findall(text))
    if not math.isfinite(seconds):
        raise WebConfigError(f"{where}: not a finite duration: {value!r}")
    return seconds


def _parse_rate_limit(raw: Any, where: str) -> RateLimit | None:
    section = _mapping(raw, where)
    _unknown(section, frozenset({"interval", "burst"}), where)
    if "interval" not in section:
        return None
    interval = _go_duration(section["interval"], f"{where}.interval")
    if interval == 0:
        return None
    burst = section.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError(f"{where}.burst: expected a non-negative integer, got {burst!r}")
    return RateLimit(interval=interval, burst=burst)


def build_ssl_context(tls: TLSSettings, where: str) -> ssl.SSLContext:
    """An SSLContext for `tls`, reading the certificate, key and CA files now.

    Raises:
        WebConfigError: a file is missing or unreadable, or OpenSSL refuses a setting.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as exc:
        raise WebConfigError(f"{where}: this OpenSSL refuses the TLS versions: {exc}") from None
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except FileNotFoundError as exc:
        raise WebConfigError(f"{where}: cannot read {exc.filename or tls.cert_file}") from None
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"{where}: cannot load cert_file {tls.cert_file} with key_file {tls.key_file}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth]
    if tls.client_ca_file is not None or tls.client_ca is not None:
        try:
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=str(tls.client_ca_file))
            else:
                context.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            source = tls.client_ca_file or "client_ca"
            raise WebConfigError(f"{where}: cannot load client CA {source}: {exc}") from None
    if tls.ciphers:
        try:
            context.set_ciphers(":".join(tls.ciphers))
        except ssl.SSLError:
            raise WebConfigError(
                f"{where}.cipher_suites: this OpenSSL supports none of the listed suites"
            ) from None
    if tls.curve is not None:
        try:
            context.set_ecdh_curve(tls.curve)
        except (ValueError, ssl.SSLError):
            raise WebConfigError(
                f"{where}.curve_preferences: this OpenSSL does not support {tls.curve}"
            ) from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_web_config(path: Path) -> WebConfig:
    """Parse and check the web configuration file at `path`, loading its certificates.

    Raises:
        WebConfigError: one line naming the file and the key (unknown key, bad value,
            unreadable certificate, a setting agentwatch cannot honour).
    """
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"{where}: cannot read web config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"{where}: not UTF-8 text") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise WebConfigError(f"{where}: {problem}{line}") from None
    except RecursionError:
        raise WebConfigError(f"{where}: nested too deeply") from None
    top = _mapping(raw, where)
    _unknown(top, _TOP_KEYS, where)
    base = path.parent
    tls = _parse_tls(
        _mapping(top.get("tls_server_config"), f"{where}: tls_server_config"),
        base,
        f"{where}: tls_server_config",
    )
    http = _mapping(top.get("http_server_config"), f"{where}: http_server_config")
    _unknown(http, _HTTP_KEYS, f"{where}: http_server_config")
    if "http2" in http and _bool(http["http2"], f"{where}: http_server_config.http2"):
        raise WebConfigError(
            f"{where}: http_server_config.http2: agentwatch serves HTTP/1.1 only; remove http2 "
            "or set it to false (Prometheus scrapes over HTTP/1.1 by default)"
        )
    headers = _parse_headers(http.get("headers"), f"{where}: http_server_config.headers")
    users = _parse_users(top.get("basic_auth_users"), f"{where}: basic_auth_users")
    rate_limit = _parse_rate_limit(top.get("rate_limit"), f"{where}: rate_limit")
    context = build_ssl_context(tls, f"{where}: tls_server_config") if tls else None
    return WebConfig(
        path=path,
        tls=tls,
        users=users,
        headers=headers,
        rate_limit=rate_limit,
        ssl_context=context,
    )


def san_allowed(peercert: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """True when the verified client certificate names one of `allowed` (any SAN type).

    IP addresses compare by value (`::1` equals `0:0:0:0:0:0:0:1`), as Go's `ip.String()`
    normalises them in the toolkit.
    """
    if not allowed:
        return True
    if not peercert:
        return False
    wanted = {_normal_san(v) for v in allowed}
    for _kind, value in peercert.get("subjectAltName", ()):
        if _normal_san(str(value)) in wanted:
            return True
    return False


def _normal_san(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value.strip()


class WebConfigUnavailable(RuntimeError):
    """The web config file changed into something invalid: protected routes answer 500."""


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append((-1, -1, -1))
        else:
            found.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)


class WebConfigWatcher:
    """The current web configuration, re-read when the file or its certificates change.

    `current()` costs a few `stat` calls; it reloads only when a watched file's mtime, size or
    inode changed (or after `request_reload()`, wired to SIGHUP). A change that does not parse
    fails closed: `current()` raises `WebConfigUnavailable` (protected routes answer 500; TLS
    keeps the last good certificate so /healthz still answers) until the file is fixed, and
    the error is logged once per change.
    Turning TLS on or off needs a restart (the listener's mode is fixed), as in the toolkit.

    Thread-safe: the event loop and worker threads may call it.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._force = False
        if path is None:
            self._config = WebConfig()
            self._watched: tuple[Path, ...] = ()
            self._signature: tuple[tuple[int, int, int], ...] = ()
        else:
            self._config = load_web_config(path)
            self._watched = self._files_of(self._config)
            self._signature = _signature(self._watched)
        self.tls_enabled = self._config.tls is not None
        self._error: str | None = None

    @staticmethod
    def _files_of(config: WebConfig) -> tuple[Path, ...]:
        assert config.path is not None
        return (config.path, *(config.tls.files() if config.tls else ()))

    @property
    def last_good(self) -> WebConfig:
        """The configuration last loaded successfully (its TLS context keeps handshakes
        working while a broken file refuses every protected request)."""
        return self._config

    def request_reload(self) -> None:
        """Re-read the file on the next `current()` even if nothing seems to have changed."""
        self._force = True

    def current(self) -> WebConfig:
        """The configuration to apply now.

        Raises:
            WebConfigUnavailable: the file changed and is now invalid.
        """
        if self.path is None:
            return self._config
        signature = _signature(self._watched)
        if signature == self._signature and not self._force:
            if self._error is not None:
                raise WebConfigUnavailable(self._error)
            return self._config
        with self._lock:
            signature = _signature(self._watched)
            if signature != self._signature or self._force:
                self._force = False
                self._reload(signature)
            if self._error is not None:
                raise WebConfigUnavailable(self._error)
            return self._config

    def _reload(self, signature: tuple[tuple[int, int, int], ...]) -> None:
        assert self.path is not None
        self._signature = signature
        try:
            config = load_web_config(self.path)
            if (config.tls is not None) != self.tls_enabled:
                raise WebConfigError(
                    f"{self.path}: turning TLS on or off needs a restart of the server"
                )
        except WebConfigError as exc:
            message = str(exc)
            if message != self._error:
                logger.error(
                    "agentwatch: web config %s is invalid, refusing protected requests until "
                    "it is fixed: %s",
                    self.path,
                    message,
                )
            self._error = message
            # Watch the file itself; certificate paths may be what is broken.
            self._watched = (self.path, *self._watched[1:])
            return
        self._config = config
        self._watched = self._files_of(config)
        self._signature = _signature(self._watched)
        self._error = None
        logger.info("agentwatch: web config %s reloaded", self.path)
