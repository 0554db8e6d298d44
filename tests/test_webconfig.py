"""The exporter-toolkit web configuration: what is accepted, what is refused, and reloads.

Every shipped example is checked by the real `promtool check web-config` and by our parser,
so one file means the same to agentwatch as to node_exporter and Prometheus.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest

from agentwatch.errors import WebConfigError
from agentwatch.server.auth import BasicAuthCache, TokenBucket, parse_basic
from agentwatch.server.webconfig import (
    WebConfigUnavailable,
    WebConfigWatcher,
    load_web_config,
    san_allowed,
)
from support.binaries import require_binary
from support.certs import PKI, make_pki

EXAMPLES = Path(__file__).resolve().parent.parent / "exporter" / "web-config"
HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _write(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _tls(pki: PKI, extra: str = "") -> str:
    return (
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n" + extra
    )


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_example_passes_promtool_and_our_parser(
    example: Path, tmp_path: Path, pki: PKI
) -> None:
    # The examples name their files relative to themselves: put real ones there.
    shutil.copy(example, tmp_path / example.name)
    shutil.copy(pki.server_cert, tmp_path / "agentwatch.crt")
    shutil.copy(pki.server_key, tmp_path / "agentwatch.key")
    shutil.copy(pki.ca, tmp_path / "clients-ca.crt")
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "web-config", str(tmp_path / example.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = load_web_config(tmp_path / example.name)
    assert config.authenticates or config.tls is not None


def test_examples_cover_tls_basic_auth_and_mtls() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yml")}
    assert {"basic-auth.yml", "tls.yml", "tls-basic-auth.yml", "mtls.yml"} <= names


def test_a_full_configuration_is_understood(tmp_path: Path, pki: PKI) -> None:
    path = _write(
        tmp_path,
        _tls(
            pki,
            "  client_auth_type: RequireAndVerifyClientCert\n"
            f"  client_ca_file: {pki.ca}\n"
            "  min_version: TLS12\n  max_version: TLS13\n"
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
            "  curve_preferences: [CurveP256]\n"
            "  client_allowed_sans: [prometheus.example]\n",
        )
        + f"basic_auth_users:\n  alice: '{HASH}'\n"
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "rate_limit:\n  interval: 100ms\n  burst: 5\n",
    )
    config = load_web_config(path)
    assert config.tls is not None and config.tls.requires_client_cert
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in {c["name"] for c in config.ssl_context.get_ciphers()}
    assert config.users == {"alice": HASH}
    assert config.headers == (("X-Frame-Options", "deny"),)
    assert config.rate_limit is not None and config.rate_limit.interval == pytest.approx(0.1)
    assert config.authenticates


def test_relative_certificate_paths_resolve_against_the_file(tmp_path: Path, pki: PKI) -> None:
    shutil.copy(pki.server_cert, tmp_path / "a.crt")
    shutil.copy(pki.server_key, tmp_path / "a.key")
    path = _write(tmp_path, "tls_server_config: {cert_file: a.crt, key_file: a.key}\n")
    config = load_web_config(path)
    assert config.tls is not None and config.tls.cert_file == tmp_path / "a.crt"


def test_an_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    config = load_web_config(_write(tmp_path, ""))
    assert config.tls is None and not config.users and not config.authenticates


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo: 1\n", "unknown key 'foo'"),
        ("tls_server_config: {cert_file: x, key_file: y, bogus: 1}\n", "unknown key 'bogus'"),
        ("http_server_config: {http3: true}\n", "unknown key 'http3'"),
        ("basic_auth_users: {alice: notahash}\n", "not a bcrypt hash"),
        # The hash is salted afresh at import: a fixed id keeps test ids equal across processes.
        pytest.param("basic_auth_users: {'a:b': '" + HASH + "'}\n", "contains ':'", id="colon"),
        pytest.param(
            f"basic_auth_users: {{alice: '{HASH}', alice: '{HASH}'}}\n",
            "duplicate key 'alice'",
            id="duplicate-user",
        ),
        ("http_server_config: {headers: {X-Evil: 1}}\n", "can not be configured"),
        ("http_server_config: {headers: {X-Frame-Options: allow}}\n", "expected one of"),
        ("http_server_config: {http2: true}\n", "HTTP/1.1 only"),
        ("tls_server_config: {cert_file: c.pem}\n", "missing key_file"),
        ("tls_server_config: {key_file: k.pem}\n", "missing cert_file"),
        ("tls_server_config: {cert: PEM, key: PEM}\n", "inline certificates"),
        ("rate_limit: {interval: soon}\n", "not a duration"),
        ("[1, 2]\n", "expected a mapping"),
        ("a: [\n", "line"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  client_auth_type: RequestClientCert\n", "cannot be honoured"),
        ("  client_auth_type: RequireAnyClientCert\n", "cannot be honoured"),
        ("  client_auth_type: Whatever\n", "invalid value"),
        ("  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("  client_ca_file: {ca}\n", "NoClientCert"),
        ("  min_version: TLS14\n", "unknown TLS version"),
        ("  min_version: TLS13\n  max_version: TLS12\n", "above max_version"),
        ("  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "unknown cipher"),
        ("  curve_preferences: [CurveP256, X25519]\n", "one curve"),
        ("  curve_preferences: [P999]\n", "unknown curve"),
        ("  client_allowed_sans: [a]\n", "requires client_auth_type"),
    ],
)
def test_tls_settings_we_cannot_honour_are_refused(
    tmp_path: Path, pki: PKI, extra: str, message: str
) -> None:
    path = _write(tmp_path, _tls(pki, extra.format(ca=pki.ca)))
    with pytest.raises(WebConfigError, match=message):
        load_web_config(path)


def test_unreadable_or_mismatched_certificates_are_refused(tmp_path: Path, pki: PKI) -> None:
    missing = _write(tmp_path, "tls_server_config: {cert_file: none.crt, key_file: none.key}\n")
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(missing)
    swapped = _write(
        tmp_path,
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.client_key}}}\n",
        "swapped.yml",
    )
    with pytest.raises(WebConfigError, match="cannot load cert_file"):
        load_web_config(swapped)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read web config file"):
        load_web_config(tmp_path / "nope.yml")


def _touch_later(path: Path, text: str) -> None:
    """Rewrite `path` with a strictly newer mtime (coarse file-system clocks)."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        import os

        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_the_watcher_applies_a_changed_file_and_fails_closed_on_a_broken_one(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, f"basic_auth_users: {{alice: '{HASH}'}}\n")
    watcher = WebConfigWatcher(path)
    assert set(watcher.current().users) == {"alice"}
    _touch_later(path, f"basic_auth_users: {{bob: '{HASH}'}}\n")
    assert set(watcher.current().users) == {"bob"}
    _touch_later(path, "basic_auth_users: {bob: nothash}\n")
    with pytest.raises(WebConfigUnavailable, match="not a bcrypt hash"):
        watcher.current()
    with pytest.raises(WebConfigUnavailable):  # still broken: still refused
        watcher.current()
    _touch_later(path, f"basic_auth_users: {{carol: '{HASH}'}}\n")
    assert set(watcher.current().users) == {"carol"}


def test_turning_tls_on_needs_a_restart(tmp_path: Path, pki: PKI) -> None:
    path = _write(tmp_path, f"basic_auth_users: {{alice: '{HASH}'}}\n")
    watcher = WebConfigWatcher(path)
    _touch_later(path, _tls(pki))
    with pytest.raises(WebConfigUnavailable, match="restart"):
        watcher.current()


def test_a_rotated_certificate_rebuilds_the_context(tmp_path: Path, pki: PKI) -> None:
    cert = tmp_path / "server.crt"
    key = tmp_path / "server.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    watcher = WebConfigWatcher(
        _write(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    )
    first = watcher.current().ssl_context
    assert watcher.current().ssl_context is first, "nothing changed: same context"
    fresh = make_pki(tmp_path / "new")
    time.sleep(0.01)
    shutil.copy(fresh.server_cert, cert)
    shutil.copy(fresh.server_key, key)
    assert watcher.current().ssl_context is not first


def test_request_reload_rereads_even_without_a_change(tmp_path: Path) -> None:
    path = _write(tmp_path, f"basic_auth_users: {{alice: '{HASH}'}}\n")
    watcher = WebConfigWatcher(path)
    first = watcher.current()
    watcher.request_reload()
    assert watcher.current() is not first


def test_basic_auth_is_verified_once_then_cached(tmp_path: Path) -> None:
    cache = BasicAuthCache()
    users = {"alice": HASH}
    assert cache.verify(users, "alice", "s3cret")
    for _ in range(20):
        assert cache.cached(users, "alice", "s3cret") is True
        assert cache.verify(users, "alice", "s3cret")
    assert cache.bcrypt_checks == 1
    assert not cache.verify(users, "alice", "wrong")
    assert cache.cached(users, "alice", "wrong") is False
    assert not cache.verify(users, "mallory", "s3cret"), "unknown users never pass"
    # A new hash for alice (password changed in the file): the cache does not answer for it.
    changed = {"alice": bcrypt.hashpw(b"other", bcrypt.gensalt(4)).decode()}
    assert cache.cached(changed, "alice", "s3cret") is None
    assert not cache.verify(changed, "alice", "s3cret")
    assert cache.verify(changed, "alice", "other")


def test_the_cache_is_bounded_and_keeps_no_password() -> None:
    cache = BasicAuthCache(size=8)
    users = {"alice": HASH}
    for i in range(50):
        cache.verify(users, "alice", f"guess-{i}")
    assert len(cache._entries) == 8
    assert not any("guess" in repr(key) for key in cache._entries)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic YWxpY2U6czNjcmV0", ("alice", "s3cret")),
        ("basic YWxpY2U6YTpi", ("alice", "a:b")),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic YWxpY2U=", None),
        ("", None),
        (None, None),
    ],
)
def test_basic_header_parsing(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


def test_bcrypt_refusing_a_long_password_is_a_plain_no() -> None:
    cache = BasicAuthCache()
    assert not cache.verify({"alice": HASH}, "alice", "x" * 200)


def test_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    now = [0.0]
    bucket = TokenBucket(interval=1.0, burst=2, clock=lambda: now[0])
    assert bucket.allow() and bucket.allow()
    assert not bucket.allow()
    now[0] = 1.0
    assert bucket.allow()
    assert not bucket.allow()


def test_san_matching_normalises_ip_addresses() -> None:
    cert = {"subjectAltName": (("DNS", "prom.example"), ("IP Address", "0:0:0:0:0:0:0:1"))}
    assert san_allowed(cert, ("::1",))
    assert san_allowed(cert, ("prom.example",))
    assert not san_allowed(cert, ("other.example",))
    assert not san_allowed(None, ("prom.example",))
