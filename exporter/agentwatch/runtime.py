"""The process-wide runtime: settings, metrics and the background writer, built once.

Nothing happens at import. The first observed call (or `configure()`) builds a `Runtime` from
`config.load_settings()`; `configure(**overrides)` replaces it, closing the old writer so
nothing it accepted is lost. Buffered records are flushed at interpreter exit (`atexit`) and
on SIGTERM (the previous handler is chained, and only the main thread installs it).

Multi-process servers: a forked worker that serves its own `/metrics` shows a different
process on every scrape, so counters jump up and down (LiteLLM issue 10595). The answer is
one `agentwatch serve` over the shared store; `start_http_server` warns when it detects a
worker, and refuses with `strict=True`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from agentwatch.attribution import Attribution
from agentwatch.config import Settings, load_settings
from agentwatch.errors import AgentwatchError
from agentwatch.metrics import AgentMetrics
from agentwatch.model import ExecutionFinished, Sink, WriterItem
from agentwatch.redaction import Redactor, redactor_for
from agentwatch.sampling import SamplingPolicy, TreeSampler

if TYPE_CHECKING:
    from agentwatch.enforcement import Enforcer
    from agentwatch.store.base import Store
    from agentwatch.tracing import GenAITracer

logger = logging.getLogger("agentwatch")


class MultiProcessMetricsError(AgentwatchError):
    """`start_http_server(strict=True)` was called in a forked or multi-process worker.

    Per-worker `/metrics` endpoints make counters jump between scrapes; run one
    `agentwatch serve` over the shared store instead.
    """


class ForkedWorkerWarning(UserWarning):
    """Warned by `start_http_server` when this process looks like one of several workers."""


class Runtime:
    """Everything capture needs at hand: settings, metrics, writer, redactor.

    Built by `get_runtime()`/`configure()`; read its attributes, do not build one yourself
    except in tests (pass a `sink` to collect records without a store).

    Attributes:
        settings: the effective Settings.
        metrics: the in-process AgentMetrics.
        writer: the BatchWriter when one is running, else None.
        sink: where finished records go (the writer, or the test sink).
        enabled: False turns every capture path into a plain call of the user function.
        tracer: the OpenTelemetry GenAI tracer when the `otel` setting is on, else None.
        tracer_provider: the TracerProvider given to `configure()`, if any.
        attribution: the declared attribution dimensions and how values are resolved.
        enforcer: the budget enforcer when a budget has `enforce: true`, else None.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: AgentMetrics | None = None,
        registry: CollectorRegistry | None = None,
        sink: Sink | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.metrics = metrics or AgentMetrics(
            registry, max_label_sets=settings.max_label_sets, attribution=settings.attribution
        )
        self.redactor: Redactor = redactor_for(settings.redact_patterns)
        self.attribution = Attribution(settings.attribution, self.redactor.redact_name)
        self.writer: Any = None
        self._closed = False
        self._logged: set[str] = set()
        #: Decides which run trees keep their stored rows; None (the default) stores all.
        self.sampler: TreeSampler | None = _make_sampler(settings)
        self.enforcer: Enforcer | None = None
        if settings.enabled and any(b.enforce for b in settings.budgets):
            from agentwatch.enforcement import make_enforcer

            self.enforcer = make_enforcer(
                settings.budgets,
                settings.store_url,
                settings.budget_refresh_interval,
                self.internal_error,
            )
        if sink is None and settings.enabled:
            try:
                sink = self.writer = _make_writer(settings, self.enforcer)
            except Exception as exc:  # no store layer: keep the host running, count drops
                logger.error("agentwatch: cannot start the background writer: %s", exc)
                sink = _DroppingSink()
        self.sink: Sink = sink if sink is not None else _DroppingSink("disabled")
        stats = getattr(self.sink, "stats", None)
        report = getattr(self.sink, "record_internal_error", None)
        report_invalid = getattr(self.sink, "record_invalid_value", None)
        self.metrics.attach(
            (lambda: stats) if stats is not None else None,
            report if callable(report) else None,
            report_invalid if callable(report_invalid) else None,
        )
        if self.enforcer is not None:
            self.enforcer.start()
        self.tracer_provider = tracer_provider
        self.tracer: GenAITracer | None = None
        if settings.enabled and settings.otel:
            self.tracer = _make_tracer(self)
        if settings.log_format == "json" or "agentwatch.logs" in sys.modules:
            from agentwatch.logs import use_log_format

            use_log_format(settings.log_format)

    def submit(self, item: WriterItem) -> None:
        """Hand a record to the writer; a refusal is counted by the writer, never raised.

        With sampling on, a finished run goes through the sampler first: a nested run waits
        for its root's decision, then the whole tree is handed over, each run marked stored
        or not (the writer keeps the metrics of every run, the rows of stored ones only).
        """
        try:
            sampler = self.sampler
            if sampler is not None and type(item) is ExecutionFinished:
                root_id = item.root_id or item.execution.id
                for run, keep in sampler.offer(item, root_id):
                    run.stored = keep
                    self.sink.submit(run)
                return
            self.sink.submit(item)
        except Exception as exc:
            self.internal_error("writer", exc)

    def submit_decided(self, item: WriterItem) -> None:
        """Hand a record to the writer, bypassing the sampler (its decision is taken)."""
        try:
            self.sink.submit(item)
        except Exception as exc:
            self.internal_error("writer", exc)

    def internal_error(self, component: str, exc: BaseException | None = None) -> None:
        """Count a contained error (`agentwatch_internal_errors_total{component}`), log once."""
        try:
            self.metrics.count_internal_error(component)
            if component not in self._logged:
                self._logged.add(component)
                logger.warning(
                    "agentwatch: contained an internal error in %s; telemetry continues "
                    "(counted in agentwatch_internal_errors_total, logged once)",
                    component,
                    exc_info=exc,
                )
        except Exception:  # pragma: no cover - last line of defence
            pass

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every record accepted so far is committed (and, when tracing is on,
        every ended span exported); False on timeout/failure."""
        spans = True if self.tracer is None else self.tracer.flush(timeout)
        flush = getattr(self.sink, "flush", None)
        if flush is None:
            return spans
        try:
            return bool(flush(timeout)) and spans
        except Exception as exc:
            self.internal_error("writer", exc)
            return False

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush and stop the writer; later records are dropped (counted as `shutdown`)."""
        if self._closed:
            return
        self._closed = True
        if self.tracer is not None:
            self.tracer.flush(timeout)
        if self.sampler is not None:
            # Nested runs whose root never ended (still running at exit): kept whole.
            for run in self.sampler.release():
                self.submit_decided(run)
        close = getattr(self.sink, "close", None)
        if close is not None:
            try:
                close(timeout)
            except Exception as exc:
                self.internal_error("writer", exc)
        if self.enforcer is not None:
            self.enforcer.close()


class _DroppingStats:
    """WriterStats of a runtime without a writer: only drops, all of them visible."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.capacity = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def add_drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def queue_depth(self) -> int:
        return 0

    def dropped(self) -> dict[str, int]:
        with self._lock:
            return {"store_error": self._dropped}

    def write_errors(self) -> int:
        return 0

    def write_duration(self) -> tuple[list[int], float, int]:
        from agentwatch.contract import STORE_WRITE_BUCKETS

        return [0] * (len(STORE_WRITE_BUCKETS) + 1), 0.0, 0

    def cardinality_overflow(self) -> dict[str, int]:
        return {}

    def internal_errors(self) -> dict[str, int]:
        return {}

    def invalid_values(self) -> dict[str, int]:
        return {}


class _DroppingSink:
    """Sink used when the writer cannot start (counted as `store_error` drops) or when
    agentwatch is disabled (nothing is captured then, so nothing arrives)."""

    def __init__(self, backend: str = "none") -> None:
        self.stats = _DroppingStats(backend)

    def submit(self, item: WriterItem) -> bool:
        self.stats.add_drop()
        return False


def _make_sampler(settings: Settings) -> TreeSampler | None:
    """The run-tree sampler when some agent's sample rate is below 1, else None."""
    policy = SamplingPolicy(
        settings.sample_rate, settings.sample_rates, settings.sample_slow_seconds
    )
    return TreeSampler(policy) if settings.enabled and policy.active else None


def _make_tracer(runtime: Runtime) -> GenAITracer | None:
    """The GenAI tracer, or None (logged once) when OpenTelemetry is not installed."""
    try:
        from agentwatch.tracing import build_tracer

        return build_tracer(runtime.settings, runtime.tracer_provider, runtime.internal_error)
    except ImportError as exc:
        logger.error(
            "agentwatch: otel is on but OpenTelemetry is missing (%s); install "
            "the otel extra (pip install '.[otel]' in the agentwatch checkout). Metrics and "
            "the store are recorded, spans are not.",
            exc,
        )
    except Exception as exc:
        logger.error("agentwatch: cannot start OpenTelemetry tracing: %s", exc)
    return None


def _make_writer(settings: Settings, enforcer: Enforcer | None = None) -> Sink:
    """A BatchWriter for the configured store; the store itself opens in the writer thread.

    With an enforcing budget, the enforcer hears of every batch the store committed (so it
    knows which of this process' spend the store holds).
    """
    from agentwatch.store import backend_for_url, open_store
    from agentwatch.writer import BatchWriter

    url = settings.store_url

    def factory() -> Store:
        store = open_store(url)
        if enforcer is not None:
            store.add_commit_listener(enforcer.committed)
        return store

    writer: Sink = BatchWriter(
        factory,
        queue_size=settings.queue_size,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        max_label_sets=settings.max_label_sets,
        backend=backend_for_url(url),
        spill_url=url,
        audit=settings.audit,
        attribution=settings.attribution,
    )
    return writer


_runtime: Runtime | None = None
_lock = threading.RLock()
_hooks_installed = False
_sigterm_installed = False
_forked_from: int | None = None


def get_runtime() -> Runtime:
    """The current runtime, built from `load_settings()` on first use.

    The configuration is read once per process (again only after `close()` or through
    `configure()`). A broken config file must not break the host: one warning line on the
    `agentwatch` logger names the file and the problem, and agentwatch runs disabled (the
    program's functions run as if undecorated) instead of re-reading the file on every call.
    """
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _lock:
        if _runtime is None:
            try:
                settings = load_settings()
            except Exception as exc:  # a ConfigError, or anything else: never the host's
                reason = str(exc) if isinstance(exc, AgentwatchError) else repr(exc)
                logger.warning(
                    "agentwatch: telemetry disabled for this process, the configuration is "
                    "invalid: %s",
                    " ".join(reason.split()),
                )
                settings = Settings(enabled=False, source="invalid configuration")
            _install(Runtime(settings))
        assert _runtime is not None
        return _runtime


def configure(
    *,
    registry: CollectorRegistry | None = None,
    sink: Sink | None = None,
    config_path: Path | None = None,
    tracer_provider: Any = None,
    **settings: Any,
) -> Runtime:
    """Rebuild the runtime with explicit settings (highest precedence) and return it.

    The old writer is flushed and closed first. Metrics keep their values when the registry,
    the label cap and the attribution dimensions stay the same; otherwise the old families
    are unregistered.

    Args:
        registry: CollectorRegistry for the in-process metrics (default: the one in use, or
            prometheus_client's global REGISTRY).
        sink: advanced/tests: receive records instead of a store-backed BatchWriter.
        config_path: config file to read instead of `$AGENTWATCH_CONFIG` /
            `~/.agentwatch/config.yaml` (the CLI's `--config`).
        tracer_provider: OpenTelemetry TracerProvider for agentwatch's spans when `otel` is
            on (default: the application's global one, else an OTLP/HTTP exporter).
        **settings: any `Settings` field, e.g. `store_url="sqlite:////tmp/a.db"`,
            `enabled=False`, `capture_arguments=True`, `prices={...}`.

    Raises:
        ConfigError: a setting is invalid (validated here, at the boundary).

    Example:
        >>> agentwatch.configure(store_url="postgresql://app@db/telemetry")
    """
    new_settings = load_settings(config_path, **settings)
    with _lock:
        old = _runtime
        metrics: AgentMetrics | None = None
        if old is not None:
            old.close()
            same_registry = registry is None or registry is old.metrics.registry
            if (
                same_registry
                and old.settings.max_label_sets == new_settings.max_label_sets
                and old.settings.attribution == new_settings.attribution
            ):
                metrics = old.metrics
            else:
                old.metrics.unregister()
                if registry is None:
                    registry = old.metrics.registry
        runtime = Runtime(
            new_settings,
            metrics=metrics,
            registry=registry,
            sink=sink,
            tracer_provider=tracer_provider,
        )
        _install(runtime)
        return runtime


def _install(runtime: Runtime) -> None:
    global _runtime, _hooks_installed
    _runtime = runtime
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    if runtime.writer is not None:
        _install_sigterm()


def flush(timeout: float | None = 10.0) -> bool:
    """Block until every record accepted so far is in the store; False on timeout.

    Call it before a short script exits if it cannot rely on `atexit` (e.g. `os._exit`).
    When the litellm integration is in use and no event loop runs in this thread, litellm
    hooks still queued from a finished event loop are run first, so their calls are stored.
    In async code, `await agentwatch.aflush()` instead.
    """
    litellm_integration = sys.modules.get("agentwatch.integrations.litellm")
    if litellm_integration is not None:
        litellm_integration.drain_pending_hooks_sync()
    runtime = _runtime
    return True if runtime is None else runtime.flush(timeout)


async def aflush(timeout: float | None = 10.0) -> bool:
    """Async `flush()`: first await litellm's pending logging hooks, then the store.

    LiteLLM runs its async success hooks as tasks *after* `acompletion` returned; when the
    program's main coroutine returns, `asyncio.run()` cancels tasks that have not run yet and
    those calls are lost to every litellm logger. Awaiting this at the end of `main()` lets
    them run first. The store wait happens in a thread, so the event loop is not blocked.

    Example:
        >>> async def main():
        ...     await run_my_agents()
        ...     await agentwatch.aflush()
    """
    import asyncio

    litellm_integration = sys.modules.get("agentwatch.integrations.litellm")
    if litellm_integration is not None:
        await litellm_integration.drain_pending_hooks(5.0 if timeout is None else timeout)
    return await asyncio.to_thread(flush, timeout)


def close(timeout: float | None = 10.0) -> None:
    """Flush and stop the background writer. The next capture builds a fresh runtime."""
    global _runtime
    with _lock:
        runtime = _runtime
        _runtime = None
    if runtime is not None:
        runtime.close(timeout)
        runtime.metrics.unregister()


def _at_exit() -> None:
    runtime = _runtime
    if runtime is None:
        return
    # litellm's own exit handler would run its queued hooks after this one (atexit is LIFO),
    # when the writer is already closed: run them first so their calls are stored.
    litellm_integration = sys.modules.get("agentwatch.integrations.litellm")
    if litellm_integration is not None:
        litellm_integration.drain_pending_hooks_sync()
    runtime.close(timeout=5.0)


def _install_sigterm() -> None:
    """Flush on SIGTERM, then hand the signal to whatever handled it before us."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - no signals on this platform
        return
    if previous is None:  # installed from C code we cannot chain to: leave it alone
        return
    chained: Callable[[int, FrameType | None], Any] | int = previous

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        runtime = _runtime
        if runtime is not None:
            if chained == signal.SIG_DFL:
                # The process dies next, without atexit: close now, so what cannot be
                # stored in time is counted as `shutdown` and recorded in a loss file.
                runtime.close(timeout=5.0)
            else:
                runtime.flush(timeout=5.0)
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        # SIG_IGN: the program chose to ignore SIGTERM; so do we, after flushing.

    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        return
    _sigterm_installed = True


def _after_fork_in_child() -> None:
    """The writer's thread did not survive the fork: give the child its own writer."""
    global _forked_from, _runtime, _sigterm_installed
    _forked_from = os.getppid()
    _sigterm_installed = False
    runtime = _runtime
    if runtime is not None and runtime.writer is not None:
        try:
            _runtime = Runtime(
                runtime.settings,
                metrics=runtime.metrics,
                tracer_provider=runtime.tracer_provider,
            )
        except Exception:
            _runtime = None


def worker_reason() -> str | None:
    """Why this process looks like one of several workers (None if it does not)."""
    if _forked_from is not None:
        return f"this process was forked from pid {_forked_from}"
    if multiprocessing.parent_process() is not None:
        return "this process is a multiprocessing child (e.g. uvicorn --workers)"
    if any(name.startswith("gunicorn.workers") for name in list(sys.modules)):
        return "this process is a gunicorn worker"
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return "PROMETHEUS_MULTIPROC_DIR is set (a multi-process deployment)"
    return None


def start_http_server(
    port: int,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    *,
    strict: bool = False,
    web_config_file: str | os.PathLike[str] | None = None,
) -> Any:
    """Serve this process' metrics on `http://addr:port/metrics` from a daemon thread.

    Binds 127.0.0.1 unless told otherwise. `web_config_file` (default: the
    `web_config_file` setting, i.e. `AGENTWATCH_WEB_CONFIG_FILE` or the config file) is the
    exporter-toolkit web configuration `agentwatch serve --web.config.file` reads: TLS, basic
    auth and headers, re-read when it changes. `/healthz` and `/readyz` answer without
    credentials. Idle and slow connections are closed after a timeout.

    Returns a `MetricsEndpoint` (`.url`, `.shutdown()`); it unpacks as `(server, thread)`
    like prometheus_client's return value.

    In a forked or multi-process worker this warns (`ForkedWorkerWarning`): each worker would
    expose its own counters and Prometheus would see them jump between scrapes. Run
    `agentwatch serve` over the shared store instead.

    Example:
        >>> endpoint = agentwatch.start_http_server(9747, web_config_file="web.yml")

    Raises:
        MultiProcessMetricsError: `strict=True` and this process is a worker.
        WebConfigError: the web configuration file is invalid.
        ServeError: the port is taken or the address does not resolve.
    """
    reason = worker_reason()
    if reason is not None:
        message = (
            f"agentwatch: {reason}. A per-worker /metrics endpoint makes counters jump "
            "between scrapes (each scrape reaches a different process; see LiteLLM issue "
            "10595). Point all workers at one store and run `agentwatch serve` instead."
        )
        if strict:
            raise MultiProcessMetricsError(message)
        warnings.warn(message, ForkedWorkerWarning, stacklevel=2)
        logger.warning(message)
    runtime = get_runtime()
    target = registry if registry is not None else runtime.metrics.registry
    web = web_config_file if web_config_file is not None else runtime.settings.web_config_file
    from agentwatch.server.metrics_endpoint import start_endpoint

    return start_endpoint(
        target, port, addr=addr, web_config_file=None if web is None else Path(web)
    )
