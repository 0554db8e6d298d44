"""`agentwatch serve` under hostile clients: idle sockets, slowloris, floods, big pages, hang-ups.

Bounded tests on loopback: every loop has a fixed count and every wait a generous timeout
(they assert that something still answers, never how fast).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Settings
from agentwatch.model import ExecutionFinished, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.server import AgentwatchServer, make_server
from agentwatch.server.protocol import ConnectionLimits
from agentwatch.store import Store, open_store
from conftest import Records

FAST = ConnectionLimits(header_timeout=0.5, handshake_timeout=1.0, keep_alive_timeout=1)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = open_store(sqlite_url)
    store.migrate()
    yield store
    store.close()


def _serve(url: str, limits: ConnectionLimits | None = None) -> AgentwatchServer:
    server = make_server(Settings(store_url=url), port=0, limits=limits)
    server.start()
    return server


@pytest.fixture
def served(sqlite_store: Store, sqlite_url: str) -> Iterator[AgentwatchServer]:
    server = _serve(sqlite_url, FAST)
    yield server
    server.shutdown()


def _connect(server: AgentwatchServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` (EOF or reset) before `within` seconds pass."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_a_connection_that_never_sends_a_byte_is_closed(served: AgentwatchServer) -> None:
    with _connect(served) as sock:
        assert _closed_by_server(sock, within=10.0)


def test_a_slowloris_trickling_its_headers_is_closed(served: AgentwatchServer) -> None:
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with _connect(served) as sock:
        sock.settimeout(10)
        closed = False
        deadline = time.monotonic() + 10
        for byte in request:  # one byte every 50 ms: the headers never complete in time
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert closed or _closed_by_server(sock, within=5.0)


def test_a_keep_alive_connection_serves_several_requests(served: AgentwatchServer) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(served.url + "/healthz", timeout=5).status_code == 200


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_a_thousand_idle_connections_do_not_stop_metrics_or_healthz(
    sqlite_store: Store, sqlite_url: str
) -> None:
    _raise_fd_limit(2600)  # client and server ends live in this process
    server = _serve(sqlite_url, ConnectionLimits(header_timeout=60.0))
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection((server.host, server.port), timeout=10))
        deadline = time.monotonic() + 20
        while len(server.http.guard) < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.http.guard) >= 1000, "the server holds every idle connection"
        for _ in range(5):
            assert requests.get(server.url + "/healthz", timeout=10).text == "ok\n"
            metrics = requests.get(server.url + "/metrics", timeout=10)
            assert metrics.status_code == 200 and "agentwatch_store_up 1.0" in metrics.text
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()


def test_when_connections_run_out_the_longest_idle_one_makes_room(
    sqlite_store: Store, sqlite_url: str
) -> None:
    server = _serve(sqlite_url, ConnectionLimits(header_timeout=60.0, max_connections=20))
    idle: list[socket.socket] = []
    try:
        for _ in range(50):
            idle.append(socket.create_connection((server.host, server.port), timeout=10))
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
        assert server.http.guard.evicted >= 30
        assert len(server.http.guard) <= 20
        assert _closed_by_server(idle[0], within=5.0), "the oldest idle socket was closed"
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()


def _fill(store: Store, records: Records, count: int) -> None:
    builder = RollupBuilder(CardinalityGuard(1000))
    for start in range(0, count, 500):
        items: list[WriterItem] = []
        for i in range(start, min(count, start + 500)):
            run = records.execution(
                "bulk", 1_000.0 + i, attributes={"payload": "x" * 400}, events=[records.llm()]
            )
            items.append(ExecutionFinished(run))
        store.write_batch(builder.build(items))


@pytest.mark.slow
def test_big_pages_are_refused_and_bounded_ones_do_not_starve_metrics(
    sqlite_store: Store, sqlite_url: str, records: Records
) -> None:
    _fill(sqlite_store, records, 3000)
    server = _serve(sqlite_url)
    stop = threading.Event()
    outcomes: list[int] = []

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    reply = session.get(server.url + "/api/v1/executions?limit=1000", timeout=30)
                    outcomes.append(reply.status_code)
                except requests.RequestException:
                    outcomes.append(-1)

    try:
        too_big = requests.get(server.url + "/api/v1/executions?limit=10000", timeout=10)
        assert too_big.status_code == 400
        assert (
            requests.get(server.url + "/api/executions?limit=10000", timeout=10).status_code == 400
        )
        workers = [threading.Thread(target=hammer) for _ in range(8)]
        for worker in workers:
            worker.start()
        while len(outcomes) < 8:
            time.sleep(0.05)
        for _ in range(5):
            scrape = requests.get(server.url + "/metrics", timeout=10)
            assert scrape.status_code == 200
            assert "agentwatch_executions_total" in scrape.text
            assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        server.shutdown()
    assert set(outcomes) <= {200, 503}, "pages are served or refused as busy, never broken"
    assert 200 in outcomes


@pytest.mark.slow
def test_a_client_hanging_up_mid_request_is_not_a_store_failure(
    sqlite_store: Store,
    sqlite_url: str,
    records: Records,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _fill(sqlite_store, records, 1500)
    server = _serve(sqlite_url)
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(20):
                with _connect(server) as sock:
                    sock.sendall(b"GET /api/v1/executions?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
                    sock.recv(10)  # the response has started; hang up mid-body
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
            for _ in range(10):
                with _connect(server) as sock:  # hang up before the answer
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
            time.sleep(0.5)
    finally:
        server.shutdown()
    assert "unavailable" not in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_a_client_that_stops_reading_its_answer_is_dropped(
    sqlite_store: Store, sqlite_url: str, records: Records
) -> None:
    builder = RollupBuilder(CardinalityGuard(1000))
    runs = [
        ExecutionFinished(records.execution("big", 1_000.0 + i, attributes={"blob": "y" * 8000}))
        for i in range(1000)
    ]
    sqlite_store.write_batch(builder.build(runs))
    server = _serve(sqlite_url, ConnectionLimits(write_timeout=0.5))
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((server.host, server.port))
        with sock:  # ask for ~8 MB and read none of it
            sock.sendall(b"GET /api/v1/executions?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10
            while not len(server.http.guard) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(server.http.guard) == 1, "the server took the connection"
            deadline = time.monotonic() + 20
            while len(server.http.guard) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(server.http.guard) == 0, "the stalled reader was dropped"
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.shutdown()


def test_oversized_heads_and_request_bodies_are_refused(served: AgentwatchServer) -> None:
    huge = requests.get(served.url + "/metrics", headers={"X-Big": "a" * 40_000}, timeout=10)
    assert huge.status_code in (400, 431)
    with _connect(served) as sock:  # a head that trickles in past the limit
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # may close first
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):
                sock.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
    long_url = requests.get(served.url + "/metrics?" + "a=1&" * 5000, timeout=10)
    assert long_url.status_code in (400, 431)
    body = requests.post(served.url + "/metrics", data=b"x" * 100_000, timeout=10)
    assert body.status_code == 413
    small = requests.post(served.url + "/metrics", data=b"x", timeout=10)
    assert small.status_code == 405


def test_an_empty_host_is_refused_not_all_interfaces(sqlite_url: str) -> None:
    from agentwatch.errors import ServeError
    from agentwatch.server.runner import bind

    with pytest.raises(ServeError, match="every interface"):
        bind("", 0)
    with pytest.raises(ServeError, match="every interface"):
        bind("  ", 0)


def test_binding_every_interface_without_auth_warns(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        server = make_server(Settings(store_url=sqlite_url, host="0.0.0.0"), port=0)
    server.close()
    assert "without authentication" in caplog.text
    assert "JSON API" in caplog.text


def test_loopback_without_auth_does_not_warn(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        server = make_server(Settings(store_url=sqlite_url), port=0)
    server.close()
    assert "without authentication" not in caplog.text


def test_shutdown_returns_even_with_idle_connections_open(
    sqlite_store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    server = _serve(sqlite_url, ConnectionLimits(header_timeout=60.0))
    idle = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(5)]
    try:
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 30
        assert server.http.thread is not None and not server.http.thread.is_alive()
    finally:
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()
