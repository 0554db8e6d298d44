"""`monitor export -o FILE` writes a complete regular file or nothing, and never writes through
a planted link, into a FIFO or over a device, even when run as root in a shared directory.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import agentwatch
from _cli_runs import clean_environment
from agentwatch.cli import cli


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    clean_environment(monkeypatch, tmp_path / "home")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    agentwatch.configure(store_url=url)

    @agentwatch.observe(name="exported")
    def exported() -> None:
        return None

    for _ in range(3):
        exported()
    assert agentwatch.flush(timeout=10)
    agentwatch.close()
    yield url


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "shared"
    directory.mkdir()
    return directory


def _export(store_url: str, target: Path | str) -> Result:
    return CliRunner().invoke(
        cli, ["monitor", "export", "--store", store_url, "--format", "jsonl", "-o", str(target)]
    )


def _one_line(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


def test_a_planted_partial_symlink_is_not_followed(
    store_url: str, out_dir: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    planted = out_dir / ".runs.jsonl.partial"
    planted.symlink_to(victim)
    target = out_dir / "runs.jsonl"
    result = _export(store_url, target)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "root:secret\n"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert not target.is_symlink()
    assert [json.loads(line)["agent"] for line in target.read_text().splitlines()] == [
        "exported"
    ] * 3
    assert _leftovers(out_dir) == [".runs.jsonl.partial"]  # only the planted one


def test_a_new_export_is_private_and_a_replaced_one_keeps_its_mode(
    store_url: str, out_dir: Path
) -> None:
    target = out_dir / "runs.jsonl"
    assert _export(store_url, target).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o640)
    assert _export(store_url, target).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert len(target.read_text().splitlines()) == 3
    assert _leftovers(out_dir) == []


def test_a_symlink_at_the_destination_is_refused(
    store_url: str, out_dir: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    target = out_dir / "runs.jsonl"
    target.symlink_to(victim)
    line = _one_line(_export(store_url, target))
    assert "symbolic link" in line and str(target) in line
    assert target.is_symlink() and victim.read_text() == "keep me\n"
    assert _leftovers(out_dir) == []


@pytest.mark.timeout(60)
def test_a_fifo_at_the_destination_is_refused_without_blocking(
    store_url: str, out_dir: Path
) -> None:
    fifo = out_dir / "runs.jsonl"
    os.mkfifo(fifo)
    line = _one_line(_export(store_url, fifo))
    assert "named pipe" in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _null_device(directory: Path) -> Path:
    """A character device like /dev/null, made here: a regression must never clobber the
    machine's own /dev/null (the old code did, when run as root)."""
    device = directory / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    return device


def test_a_device_is_refused_and_left_alone(store_url: str, out_dir: Path) -> None:
    device = _null_device(out_dir)
    line = _one_line(_export(store_url, device))
    assert "character device" in line
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == os.makedev(1, 3)
    assert _leftovers(out_dir) == []


def test_a_directory_at_the_destination_is_refused(store_url: str, out_dir: Path) -> None:
    line = _one_line(_export(store_url, out_dir))
    assert "is a directory" in line
    assert out_dir.is_dir() and _leftovers(out_dir.parent) == []


def test_a_missing_directory_is_named(store_url: str, out_dir: Path) -> None:
    target = out_dir / "missing" / "runs.jsonl"
    line = _one_line(_export(store_url, target))
    assert "does not exist" in line and str(target.parent) in line
    assert not target.parent.exists()


def test_proc_is_refused_on_one_line(store_url: str) -> None:
    line = _one_line(_export(store_url, "/proc/version"))
    assert "cannot write /proc/version" in line
