"""Shared fixtures: temporary stores on real SQLite files and the real PostgreSQL server.

PostgreSQL: tests get a throw-away schema in the `test` database on 127.0.0.1:5432 (override
with AGENTWATCH_TEST_POSTGRES_URL), selected through the URL's `search_path` option and
dropped afterwards. When the server is unreachable the test FAILS under CI=true and is
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.model import Event, Execution
from agentwatch.store import Store, open_store

POSTGRES_URL = os.environ.get(
    "AGENTWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {reason}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in a not-yet-existing directory under tmp_path."""
    return f"sqlite:///{tmp_path / 'store' / 'telemetry.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty schema on the test PostgreSQL server; dropped afterwards."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dev dependency
        _postgres_unavailable(f"psycopg is not installed ({exc})")
        raise
    schema = f"aw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        _postgres_unavailable(str(exc).strip())
        raise
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in POSTGRES_URL else "?"
        try:
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute("SET lock_timeout = '10s'")  # a leaked connection must not hang us
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL, once per backend: one test body covers SQLite and PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def store(backend_url: str) -> Iterator[Store]:
    """A migrated store on each backend, closed afterwards."""
    opened = open_store(backend_url)
    opened.migrate()
    yield opened
    opened.close()


class Records:
    """Builds executions and events with explicit, test-chosen values."""

    def __init__(self) -> None:
        self._n = 0

    def llm(self, started_at: float = 1_000.0, **fields: Any) -> Event:
        values: dict[str, Any] = {
            "kind": "llm_call",
            "name": "chat",
            "started_at": started_at,
            "duration": 0.2,
            "model": "gpt-4o-mini",
            "provider": "openai",
            "input_tokens": 10,
            "output_tokens": 20,
            "cost_usd": 0.001,
        }
        values.update(fields)
        return Event(**values)

    def tool(self, started_at: float = 1_000.0, **fields: Any) -> Event:
        values: dict[str, Any] = {
            "kind": "tool_call",
            "name": "search",
            "started_at": started_at,
            "duration": 0.03,
        }
        values.update(fields)
        return Event(**values)

    def execution(
        self,
        agent: str = "translator",
        started_at: float = 1_000.0,
        duration: float = 0.5,
        events: list[Event] | None = None,
        **fields: Any,
    ) -> Execution:
        self._n += 1
        status = "failed" if fields.get("error_type") else "completed"
        values: dict[str, Any] = {
            "id": f"exec_{self._n:06d}",
            "agent": agent,
            "started_at": started_at,
            "ended_at": started_at + duration,
            "status": status,
        }
        values.update(fields)
        execution = Execution(**values)
        execution.events.extend(events or [])
        return execution


@pytest.fixture
def records() -> Records:
    """Factory of executions and events."""
    return Records()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """Poll a condition (for state reached by the background writer), up to `timeout` s."""
    import time

    def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()

    return _wait
