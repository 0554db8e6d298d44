"""TLS, basic auth and mutual TLS on `agentwatch serve` and `start_http_server` (real sockets).

Certificates are made at test time (support/certs.py). Each test starts a server with a web
configuration file and talks to it with `requests` and raw `ssl` sockets.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

import agentwatch
from agentwatch.config import Settings
from agentwatch.errors import WebConfigError
from agentwatch.server import AgentwatchServer, make_server
from agentwatch.server.app import WebGuard
from agentwatch.store import Store, open_store
from support.certs import PKI, make_pki

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def store_url(sqlite_url: str) -> Iterator[str]:
    store: Store = open_store(sqlite_url)
    store.migrate()
    store.close()
    yield sqlite_url


def _web(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _tls_block(pki: PKI, extra: str = "") -> str:
    return (
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        + extra
    )


def _start(store_url: str, web: Path) -> AgentwatchServer:
    server = make_server(Settings(store_url=store_url), port=0, web_config_file=web)
    server.start()
    return server


def _guard(server: AgentwatchServer) -> WebGuard:
    app = server.http._server.config.app
    assert isinstance(app, WebGuard)
    return app


@pytest.fixture
def tls_auth(store_url: str, pki: PKI, tmp_path: Path) -> Iterator[AgentwatchServer]:
    web = _web(
        tmp_path,
        _tls_block(pki)
        + f"basic_auth_users:\n  prometheus: '{HASH}'\n"
        + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    server = _start(store_url, web)
    yield server
    server.shutdown()


def test_tls_with_basic_auth_lets_the_right_password_in(
    tls_auth: AgentwatchServer, pki: PKI
) -> None:
    assert tls_auth.url.startswith("https://")
    reply = requests.get(
        tls_auth.url + "/metrics", auth=("prometheus", PASSWORD), verify=str(pki.ca), timeout=10
    )
    assert reply.status_code == 200 and "agentwatch_store_up 1.0" in reply.text
    assert reply.headers["X-Frame-Options"] == "deny"


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/executions", "/api/openapi.json", "/",
                                  "/api/stats", "/no-such-route"])  # fmt: skip
@pytest.mark.parametrize("auth", [None, ("prometheus", "wrong"), ("intruder", PASSWORD)])
def test_missing_or_wrong_credentials_get_401(
    tls_auth: AgentwatchServer, pki: PKI, path: str, auth: tuple[str, str] | None
) -> None:
    reply = requests.get(tls_auth.url + path, auth=auth, verify=str(pki.ca), timeout=10)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert "agentwatch_" not in reply.text


def test_health_routes_answer_without_credentials_and_say_nothing(
    tls_auth: AgentwatchServer, pki: PKI
) -> None:
    health = requests.get(tls_auth.url + "/healthz", verify=str(pki.ca), timeout=10)
    ready = requests.get(tls_auth.url + "/readyz", verify=str(pki.ca), timeout=10)
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert health.headers["X-Frame-Options"] == "deny"


def test_plain_http_to_the_tls_port_fails(tls_auth: AgentwatchServer) -> None:
    plain = tls_auth.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(plain + "/healthz", timeout=10)


def test_a_scrape_pays_bcrypt_once_not_every_time(tls_auth: AgentwatchServer, pki: PKI) -> None:
    with requests.Session() as session:
        for _ in range(10):
            reply = session.get(
                tls_auth.url + "/metrics",
                auth=("prometheus", PASSWORD),
                verify=str(pki.ca),
                timeout=10,
            )
            assert reply.status_code == 200
    assert _guard(tls_auth).cache.bcrypt_checks == 1


def test_a_new_user_in_the_file_applies_without_restart(
    store_url: str, pki: PKI, tmp_path: Path
) -> None:
    web = _web(tmp_path, _tls_block(pki) + f"basic_auth_users:\n  alice: '{HASH}'\n")
    server = _start(store_url, web)
    try:
        url, ca = server.url + "/metrics", str(pki.ca)
        assert requests.get(url, auth=("bob", PASSWORD), verify=ca, timeout=10).status_code == 401
        web.write_text(_tls_block(pki) + f"basic_auth_users:\n  bob: '{HASH}'\n  x: '{HASH}'\n")
        assert requests.get(url, auth=("bob", PASSWORD), verify=ca, timeout=10).status_code == 200
        assert requests.get(url, auth=("alice", PASSWORD), verify=ca, timeout=10).status_code == 401
        web.write_text("basic_auth_users: {bob: not-a-hash}\n" + _tls_block(pki))
        broken = requests.get(url, auth=("bob", PASSWORD), verify=ca, timeout=10)
        assert broken.status_code == 500, "an invalid file fails closed"
        # The last good certificate keeps the health routes reachable meanwhile.
        assert requests.get(server.url + "/healthz", verify=ca, timeout=10).status_code == 200
        web.write_text(_tls_block(pki) + f"basic_auth_users:\n  bob: '{HASH}'\n")
        assert requests.get(url, auth=("bob", PASSWORD), verify=ca, timeout=10).status_code == 200
    finally:
        server.shutdown()


def test_sighup_reload_rereads_a_file_whose_stamp_did_not_change(
    store_url: str, tmp_path: Path
) -> None:
    web = _web(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n")
    stamp = web.stat()
    server = _start(store_url, web)
    try:
        web.write_text(f"basic_auth_users:\n  carol: '{HASH}'\n")  # same size
        os.utime(web, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        server.http.reload_web_config()
        reply = requests.get(server.url + "/metrics", auth=("carol", PASSWORD), timeout=10)
        assert reply.status_code == 200
    finally:
        server.shutdown()


def test_a_rotated_certificate_is_used_by_the_next_connection(
    store_url: str, pki: PKI, tmp_path: Path
) -> None:
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    web = _web(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    server = _start(store_url, web)
    try:
        assert requests.get(server.url + "/healthz", verify=str(pki.ca), timeout=10).ok
        fresh = make_pki(tmp_path / "rotated")
        shutil.copy(fresh.server_cert, cert)
        shutil.copy(fresh.server_key, key)
        assert requests.get(server.url + "/healthz", verify=str(fresh.ca), timeout=10).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url + "/healthz", verify=str(pki.ca), timeout=10)
    finally:
        server.shutdown()


@pytest.fixture
def mtls(store_url: str, pki: PKI, tmp_path: Path) -> Iterator[AgentwatchServer]:
    web = _web(
        tmp_path,
        _tls_block(
            pki,
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n",
        ),
    )
    server = _start(store_url, web)
    yield server
    server.shutdown()


def _handshake(server: AgentwatchServer, pki: PKI, cert: Path | None, key: Path | None) -> None:
    """Open a TLS connection and make one request; raise if the server refuses."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = tls.recv(100)
        if not answer.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"refused after the handshake: {answer!r}")


def test_mutual_tls_accepts_a_client_certificate_from_the_ca(
    mtls: AgentwatchServer, pki: PKI
) -> None:
    _handshake(mtls, pki, pki.client_cert, pki.client_key)
    reply = requests.get(
        mtls.url + "/metrics",
        cert=(str(pki.client_cert), str(pki.client_key)),
        verify=str(pki.ca),
        timeout=10,
    )
    assert reply.status_code == 200


@pytest.mark.parametrize("which", ["none", "rogue"])
def test_mutual_tls_refuses_a_missing_or_foreign_certificate_in_the_handshake(
    mtls: AgentwatchServer, pki: PKI, which: str
) -> None:
    cert = pki.rogue_client_cert if which == "rogue" else None
    key = pki.rogue_client_key if which == "rogue" else None
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(mtls, pki, cert, key)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(mtls.url + "/healthz", verify=str(pki.ca), timeout=10)


def test_client_allowed_sans_refuses_other_names(store_url: str, pki: PKI, tmp_path: Path) -> None:
    extra = (
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
        "  client_allowed_sans: [{san}]\n"
    )
    allowed = _start(
        store_url, _web(tmp_path, _tls_block(pki, extra.format(san="prometheus.example")))
    )
    try:
        _handshake(allowed, pki, pki.client_cert, pki.client_key)
    finally:
        allowed.shutdown()
    other = _start(store_url, _web(tmp_path, _tls_block(pki, extra.format(san="grafana.example"))))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _handshake(other, pki, pki.client_cert, pki.client_key)
    finally:
        other.shutdown()


def test_rate_limit_answers_429_but_not_on_health(store_url: str, tmp_path: Path) -> None:
    server = _start(store_url, _web(tmp_path, "rate_limit:\n  interval: 1h\n  burst: 2\n"))
    try:
        codes = [requests.get(server.url + "/metrics", timeout=10).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.shutdown()


def test_an_invalid_web_config_stops_the_server_from_starting(
    store_url: str, tmp_path: Path
) -> None:
    with pytest.raises(WebConfigError, match="RequestClientCert"):
        make_server(
            Settings(store_url=store_url),
            port=0,
            web_config_file=_web(
                tmp_path,
                "tls_server_config: {cert_file: a, key_file: b, "
                "client_auth_type: RequestClientCert}\n",
            ),
        )


def test_start_http_server_takes_the_same_web_config(pki: PKI, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Counter("host_things", "Things the host did.", registry=registry).inc(3)
    web = _web(tmp_path, _tls_block(pki) + f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    endpoint = agentwatch.start_http_server(0, registry=registry, web_config_file=web)
    try:
        assert endpoint.url.startswith("https://127.0.0.1:")
        ca = str(pki.ca)
        assert requests.get(endpoint.url + "/metrics", verify=ca, timeout=10).status_code == 401
        reply = requests.get(
            endpoint.url + "/metrics", auth=("prometheus", PASSWORD), verify=ca, timeout=10
        )
        assert reply.status_code == 200 and "host_things_total 3.0" in reply.text
        assert requests.get(endpoint.url + "/healthz", verify=ca, timeout=10).text == "ok\n"
        with pytest.raises(requests.ConnectionError):
            requests.get(endpoint.url.replace("https", "http") + "/metrics", timeout=10)
    finally:
        endpoint.shutdown()


@pytest.mark.slow
def test_a_password_spray_never_delays_a_scraper_whose_password_is_cached(
    store_url: str, tmp_path: Path
) -> None:
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(11)).decode()
    server = _start(store_url, _web(tmp_path, f"basic_auth_users:\n  prometheus: '{slow_hash}'\n"))
    url = server.url + "/metrics"
    try:
        assert requests.get(url, auth=("prometheus", PASSWORD), timeout=30).status_code == 200
        codes: list[int] = []

        def guess(i: int) -> None:
            reply = requests.get(url, auth=("prometheus", f"guess-{i}"), timeout=60)
            codes.append(reply.status_code)

        spray = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
        for thread in spray:
            thread.start()
        for _ in range(5):  # meanwhile the real scraper, its password cached, gets through
            reply = requests.get(url, auth=("prometheus", PASSWORD), timeout=10)
            assert reply.status_code == 200
        for thread in spray:
            thread.join(timeout=120)
        assert set(codes) <= {401, 503} and len(codes) == 40
        assert 503 in codes, "guesses beyond the bcrypt queue are turned away at once"
        assert _guard(server).cache.bcrypt_checks <= 1 + 40
    finally:
        server.shutdown()
