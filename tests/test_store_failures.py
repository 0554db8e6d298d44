"""A read-only or full disk under the store never breaks the agent, and loses nothing.

Real failures, not simulated ones: the store lives on a small tmpfs that the test remounts
read-only (EROFS, which even root cannot write through) or fills up (SQLITE_FULL), then gives
back. Mounting needs root with CAP_SYS_ADMIN; elsewhere these tests skip with that reason.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import agentwatch


class TinyFilesystem:
    """A tmpfs mounted on a test directory, resizable and switchable to read-only."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[TinyFilesystem]:
    fs = TinyFilesystem(tmp_path / "fs", "4m")
    yield fs
    agentwatch.close(timeout=1)
    fs.unmount()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_read_only_store_never_breaks_the_agent_and_the_backlog_lands_later(
    tiny_fs: TinyFilesystem,
) -> None:
    url = f"sqlite:///{tiny_fs.path / 'telemetry.db'}"
    tiny_fs.remount("ro")
    registry = CollectorRegistry()
    agentwatch.configure(store_url=url, registry=registry)

    @agentwatch.observe
    def planner(n: int) -> int:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=n)
        return n * 2

    assert [planner(n) for n in range(20)] == [n * 2 for n in range(20)]
    assert agentwatch.flush(timeout=1.0) is False, "nothing can be committed to a ro disk"
    assert _value(registry, "agentwatch_store_write_errors_total", backend="sqlite") >= 1
    assert (
        _value(registry, "agentwatch_executions_total", agent="planner", status="completed") == 20
    )
    assert _value(registry, "agentwatch_queue_depth") == 20, "accepted records are kept"

    tiny_fs.remount("rw")
    assert agentwatch.flush(timeout=15.0)
    with agentwatch.EventStore(url) as store:
        assert store.count_executions() == 20
        assert store.get_summary_stats()["input_tokens"] == sum(range(20))
    assert _value(registry, "agentwatch_events_dropped_total", reason="store_error") == 0


@pytest.mark.slow
def test_full_disk_never_breaks_the_agent_and_every_record_is_stored_or_counted(
    tiny_fs: TinyFilesystem,
) -> None:
    url = f"sqlite:///{tiny_fs.path / 'telemetry.db'}"
    registry = CollectorRegistry()
    agentwatch.configure(store_url=url, registry=registry, capture_arguments=True, queue_size=400)

    @agentwatch.observe
    def writer(payload: str) -> int:
        return len(payload)

    bulky = "x" * 8_000  # redaction keeps a bounded prefix; rows stay large enough to fill 4 MB
    produced = 0
    # ~6 MB of arguments (2 KiB kept per run): well over 4 MB. In chunks the writer keeps up
    # with (however fast capture is), so the disk fills instead of the queue overflowing.
    for _chunk in range(15):
        for _ in range(200):
            assert writer(f"{produced}-{bulky}") == len(f"{produced}-{bulky}")
            produced += 1
        # flush() may report True here: records dropped before the call count as resolved.
        agentwatch.flush(timeout=1.0)
        if _value(registry, "agentwatch_store_write_errors_total", backend="sqlite") >= 1:
            break
    assert _value(registry, "agentwatch_store_write_errors_total", backend="sqlite") >= 1, (
        "a 4 MB disk cannot hold this workload"
    )

    tiny_fs.remount("size=256m")
    agentwatch.flush(timeout=20.0)  # False if records were dropped meanwhile: counted below
    assert _value(registry, "agentwatch_queue_depth") == 0, "the backlog was resolved"
    dropped = sum(
        _value(registry, "agentwatch_events_dropped_total", reason=reason)
        for reason in ("queue_full", "store_error", "invalid", "shutdown")
    )
    with agentwatch.EventStore(url) as store:
        stored = store.count_executions()
    assert stored > 0
    assert stored + dropped == produced, "every accepted record is stored or counted as dropped"
