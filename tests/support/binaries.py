"""Start and stop the real monitoring binaries the bundle is tested against.

Tests prove the bundle with the real `prometheus`, `prometheus-alertmanager` and
`agentwatch serve` processes, never fakes. Each helper here starts one process on a free
127.0.0.1 port with its own temporary data directory, waits until the process says it is
ready, exposes the few HTTP API calls the tests need, and stops the process (and keeps its log
for the failure message) when the test ends.

Typical use::

    from support.binaries import free_port, start_prometheus

    def test_something(tmp_path):
        config = tmp_path / "prometheus.yml"
        config.write_text("global: {scrape_interval: 1s}\\n")
        with start_prometheus(config, tmp_path / "prom") as prom:
            assert prom.query("vector(1)")[0]["value"][1] == "1"

Binaries that are missing make the test SKIP with a clear reason, or FAIL when the
environment variable `CI` is `true` (CI must never silently skip the real-binary tests).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

T = TypeVar("T")

#: Where the Debian packages install the binaries; `PATH` is searched first.
_FALLBACK_DIRS = ("/usr/bin", "/usr/local/bin")


def in_ci() -> bool:
    """True when running in CI, where a missing dependency must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> None:
    """Skip the current test with `reason`, or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required dependencies must be present)")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Return the absolute path of executable `name`, or skip/fail the test.

    Args:
        name: e.g. `prometheus`, `promtool`, `prometheus-alertmanager`, `amtool`.
    """
    found = shutil.which(name)
    if found is None:
        for directory in _FALLBACK_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        unavailable(f"{name} is not installed")
    assert found is not None
    return found


def agentwatch_command() -> list[str]:
    """The command that runs the `agentwatch` CLI of the checkout under test.

    Uses the console script next to the running interpreter when it exists (the editable
    install), else `python -m agentwatch.cli`-style invocation through `-c`.
    """
    script = Path(sys.executable).with_name("agentwatch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from agentwatch.cli import main; main()"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    log: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something other than None/False, then return it.

    Raises:
        AssertionError: after `timeout` seconds, naming `what` and appending `log()` output
            (usually the process log) so the failure explains itself.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last_error = exc
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            tail = f"\n--- process log ---\n{log()}" if log else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{tail}")
        time.sleep(interval)


@dataclass
class RunningProcess:
    """A started binary: its HTTP base URL, port, data directory and log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    _log_file: Any = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, last: int = 60) -> str:
        """The last `last` lines the process wrote (stdout and stderr together)."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-last:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` (e.g. `/api/v1/rules`) and return the decoded JSON body."""
        response = requests.get(self.url + path, params=params or None, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Wait until GET `path` answers 200; fail fast (with the log) if the process died."""

        def probe() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with status {self.process.returncode}:\n{self.log()}"
                )
            return requests.get(self.url + path, timeout=2).status_code == 200

        wait_until(probe, timeout=timeout, what=f"{self.name} at {self.url}{path}", log=self.log)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and close its log."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


P = TypeVar("P", bound="RunningProcess")


def _spawn(
    cls: type[P],
    name: str,
    argv: Sequence[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> P:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        list(argv),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=str(cwd or workdir),
        env={**os.environ, **(env or {})},
    )
    return cls(name, process, port, workdir, log_path, log_file)


class Prometheus(RunningProcess):
    """A running Prometheus server with the HTTP API calls the tests use."""

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Run an instant query; return `data.result` (a list of samples).

        Raises:
            AssertionError: the query failed to parse or evaluate (message has the error).
        """
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = requests.get(self.url + "/api/v1/query", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body.get('error', body)}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """Run a range query; return `data.result` (a list of series with `values`)."""
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        response = requests.get(self.url + "/api/v1/query_range", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"range query {expr!r} failed: {body.get('error', body)}")
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (`health`, `lastError`, `labels`, ...)."""
        return list(self.get("/api/v1/targets")["data"]["activeTargets"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Prometheus currently holds (state `pending` or `firing`)."""
        return list(self.get("/api/v1/alerts")["data"]["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups with each rule's health and last error."""
        return list(self.get("/api/v1/rules")["data"]["groups"])

    def wait_for_scrapes(self, job: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until every target of `job` is up and has been scraped `count` more times.

        Counting scrapes (through the `up` series) rather than sleeping keeps rate() and
        increase() tests deterministic: they need at least two samples in their window.
        """
        base = self._scrape_count(job)
        wait_until(
            lambda: self._scrape_count(job) >= base + count and self._all_up(job),
            timeout=timeout,
            what=f"{count} scrape(s) of job {job!r}",
            log=self.log,
        )

    def _scrape_count(self, job: str) -> int:
        result = self.query(f'count_over_time(up{{job="{job}"}}[1h])')
        return int(min((float(r["value"][1]) for r in result), default=0))

    def _all_up(self, job: str) -> bool:
        result = self.query(f'up{{job="{job}"}}')
        return bool(result) and all(r["value"][1] == "1" for r in result)


class Alertmanager(RunningProcess):
    """A running Alertmanager with the v2 API calls the tests use."""

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds; `filters` become `filter=label="value"` matchers."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        response = requests.get(self.url + "/api/v2/alerts", params=params, timeout=10)
        response.raise_for_status()
        return list(response.json())

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Push alerts directly, as Prometheus would (v2 API)."""
        response = requests.post(self.url + "/api/v2/alerts", json=list(alerts), timeout=10)
        response.raise_for_status()


def prometheus_args(
    config: Path, data_dir: Path, port: int, extra: Sequence[str] = ()
) -> list[str]:
    """The command line `start_prometheus` uses (exposed for tests that need tweaks)."""
    return [
        require_binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
        "--log.level=info",
        *extra,
    ]


@contextmanager
def start_prometheus(
    config: Path,
    workdir: Path,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Run `prometheus` with `config`, yield it once `/-/ready` answers, stop it after.

    Args:
        config: prometheus.yml to load; relative `rule_files` resolve against its directory.
        workdir: a fresh directory for the TSDB and the log (a `tmp_path` child).
        port: listen port (default: a free one).
        extra_args: more flags, e.g. `--query.lookback-delta=10s`.
    """
    port = port or free_port()
    argv = prometheus_args(config, workdir, port, extra_args)
    proc = _spawn(Prometheus, "prometheus", argv, port, workdir)
    try:
        proc.wait_ready("/-/ready", timeout=timeout)
        yield proc
    finally:
        proc.stop()


@contextmanager
def start_alertmanager(
    config: Path,
    workdir: Path,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Iterator[Alertmanager]:
    """Run `prometheus-alertmanager` with `config`, yield it once ready, stop it after.

    Clustering is disabled (`--cluster.listen-address=`) so parallel tests never fight over
    port 9094, and templates referenced by `config` resolve against its directory.
    """
    port = port or free_port()
    binary = require_binary("prometheus-alertmanager")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
        *extra_args,
    ]
    proc = _spawn(Alertmanager, "alertmanager", argv, port, workdir)
    try:
        proc.wait_ready("/-/ready", timeout=timeout)
        yield proc
    finally:
        proc.stop()


@contextmanager
def start_agentwatch_serve(
    store_url: str,
    workdir: Path,
    *,
    config: Path | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    web_config: Path | None = None,
    ca: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
) -> Iterator[RunningProcess]:
    """Run `agentwatch serve --store URL [--config FILE] --port P`; yield once it answers.

    With `web_config` (`--web.config.file`), readiness is probed on the open `/healthz`, over
    HTTPS trusting `ca` when one is given (presenting `client_cert`, a (cert, key) pair, when
    the server requires one); otherwise on `/metrics`.
    """
    port = port or free_port()
    argv = [*agentwatch_command(), "serve", "--store", store_url, "--port", str(port)]
    if config is not None:
        argv += ["--config", str(config)]
    if web_config is not None:
        argv += ["--web.config.file", str(web_config)]
    env = {"AGENTWATCH_HOME": str(workdir / "home"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = _spawn(RunningProcess, "agentwatch-serve", argv, port, workdir, env=env)
    try:
        if ca is not None:
            url = f"https://127.0.0.1:{port}/healthz"

            def probe() -> bool:
                if not proc.alive():
                    raise AssertionError(f"agentwatch serve exited:\n{proc.log()}")
                cert = None if client_cert is None else (str(client_cert[0]), str(client_cert[1]))
                reply = requests.get(url, verify=str(ca), cert=cert, timeout=2)
                return reply.status_code == 200

            wait_until(probe, timeout=timeout, what=f"agentwatch serve at {url}", log=proc.log)
        else:
            proc.wait_ready("/healthz" if web_config is not None else "/metrics", timeout=timeout)
        yield proc
    finally:
        proc.stop()


def run_agentwatch(
    args: Sequence[str], workdir: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run one `agentwatch` CLI command to completion; fail the test with its output if it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AGENTWATCH_HOME": str(workdir / "home"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    done = subprocess.run(
        [*agentwatch_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(workdir),
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"agentwatch {' '.join(args)} exited {done.returncode}:\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    return done


class WebhookReceiver:
    """An HTTP server that records every JSON body POSTed to it (an Alertmanager webhook).

    Use as a context manager; `url` is the address to put in `webhook_configs`, `bodies`
    the decoded notifications received so far (thread-safe to read).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                body["_path"] = self.path
                with receiver._lock:
                    receiver.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def received(self) -> list[dict[str, Any]]:
        """A snapshot of the notifications received so far."""
        with self._lock:
            return list(self.bodies)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
