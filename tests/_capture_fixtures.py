"""Fixtures shared by the capture-layer tests: a runtime on a fresh registry.

`CollectingSink` is a real `model.Sink` that keeps what it receives, so tests can assert on
exactly what capture handed to the writer without a store; tests that need the store use
the real BatchWriter on a SQLite file instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentwatch import runtime
from agentwatch.model import Event, Execution, ExecutionFinished, LateEvent, WriterItem


class CollectingSink:
    """Keeps every submitted item, thread-safely."""

    def __init__(self) -> None:
        self.items: list[WriterItem] = []
        self._lock = threading.Lock()

    def submit(self, item: WriterItem) -> bool:
        with self._lock:
            self.items.append(item)
        return True

    def executions(self) -> list[Execution]:
        with self._lock:
            return [i.execution for i in self.items if isinstance(i, ExecutionFinished)]

    def late_events(self) -> list[Event]:
        with self._lock:
            return [i.event for i in self.items if isinstance(i, LateEvent)]

    def execution(self, name: str) -> Execution:
        found = [e for e in self.executions() if e.agent == name]
        assert len(found) == 1, f"expected one execution {name!r}, got {len(found)}"
        return found[0]


def clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No user config file or AGENTWATCH_* variable may leak into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AGENTWATCH_HOME", str(home))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class Captured:
    """What a capture test works with: the runtime, its registry and the sink."""

    def __init__(self, rt: runtime.Runtime, registry: CollectorRegistry, sink: CollectingSink):
        self.rt = rt
        self.registry = registry
        self.sink = sink

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def reconfigure(self, **settings: Any) -> Captured:
        self.registry = CollectorRegistry()
        self.sink = CollectingSink()
        self.rt = runtime.configure(registry=self.registry, sink=self.sink, **settings)
        return self


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """A runtime with a fresh CollectorRegistry and a CollectingSink."""
    clean_environment(monkeypatch, tmp_path)
    registry = CollectorRegistry()
    sink = CollectingSink()
    rt = runtime.configure(registry=registry, sink=sink)
    yield Captured(rt, registry, sink)
    runtime.close()
