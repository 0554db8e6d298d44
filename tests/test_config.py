"""A broken config file: one clear line, read once, and the host program keeps working.

Each broken file is a real file on disk read through the real loader: not UTF-8, UTF-16,
nested 5,000 levels deep, an alias bomb, a directory, a device.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch import config, runtime
from agentwatch.errors import ConfigError


def _utf16(path: Path) -> None:
    path.write_text("enabled: true\n", encoding="utf-16")


def _latin1(path: Path) -> None:
    path.write_bytes("store_url: 'sqlite:////tmp/caf\u00e9.db'\n".encode("latin-1"))


def _utf16_without_bom(path: Path) -> None:
    path.write_bytes("enabled: true\n".encode("utf-16-le"))


def _deep(path: Path) -> None:
    path.write_text("redact_patterns: " + "[" * 5000 + "]" * 5000 + "\n")


def _deep_blocks(path: Path) -> None:
    path.write_text("disabled_agents:\n" + "- " * 5000 + "x\n")


def _alias_bomb(path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path.write_text("\n".join(lines) + "\n")


def _invalid_yaml(path: Path) -> None:
    path.write_text("store_url: [unclosed\n")


def _unknown_key(path: Path) -> None:
    path.write_text("stor_url: sqlite:////tmp/x.db\n")


def _directory(path: Path) -> None:
    path.mkdir()


def _huge(path: Path) -> None:
    path.write_text("# " + "x" * (config.MAX_CONFIG_BYTES + 10) + "\n")


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "utf-16": (_utf16, "UTF-16"),
    "latin-1": (_latin1, "not UTF-8"),
    "utf-16 without a BOM": (_utf16_without_bom, "NUL"),
    "5000 levels of flow lists": (_deep, "nested"),
    "5000 levels of block lists": (_deep_blocks, "nested"),
    "alias bomb": (_alias_bomb, "values"),
    "invalid yaml": (_invalid_yaml, "not valid YAML"),
    "unknown key": (_unknown_key, "unknown key"),
    "a directory": (_directory, "cannot read"),
    "larger than a config": (_huge, "larger than"),
}


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    clean_environment(monkeypatch, tmp_path / "home")
    runtime.close()
    yield tmp_path
    runtime.close()


@pytest.mark.parametrize("name", list(BROKEN))
def test_read_config_file_gives_one_config_error_line(clean: Path, name: str) -> None:
    write, words = BROKEN[name]
    path = clean / "config.yaml"
    write(path)
    with pytest.raises(ConfigError) as caught:
        config.read_config_file(path)
    message = str(caught.value)
    assert str(path) in message and words in message
    assert "\n" not in message


def test_dev_zero_is_not_read_forever(clean: Path) -> None:
    with pytest.raises(ConfigError, match="larger than"):
        config.read_config_file(Path("/dev/zero"))


def test_a_utf8_byte_order_mark_is_accepted(clean: Path) -> None:
    path = clean / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbfcapture_arguments: true\n")
    assert config.read_config_file(path) == {"capture_arguments": True}


def test_configure_raises_config_error_for_a_broken_file(clean: Path) -> None:
    path = clean / "config.yaml"
    _utf16(path)
    with pytest.raises(ConfigError, match="UTF-16"):
        agentwatch.configure(config_path=path)


@pytest.mark.parametrize("name", ["utf-16", "5000 levels of flow lists", "unknown key"])
def test_a_host_program_with_a_broken_config_reads_it_once_logs_once_and_keeps_working(
    clean: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = clean / "config.yaml"
    BROKEN[name][0](path)
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(path))
    reads: list[Path] = []
    real_read = config.read_config_file

    def counting_read(p: Path) -> dict[str, object]:
        reads.append(p)
        return real_read(p)

    monkeypatch.setattr(config, "read_config_file", counting_read)

    @agentwatch.observe
    def agent(n: int) -> int:
        agentwatch.record_llm_call("gpt-4o-mini", input_tokens=n)
        return n * 2

    @agentwatch.observe
    def failing() -> None:
        raise KeyError("the host's own error")

    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        assert [agent(n) for n in range(50)] == [n * 2 for n in range(50)]
        with pytest.raises(KeyError, match="the host's own error"):
            failing()
        with agentwatch.track("block"):
            pass
    assert reads == [path]
    records = [r for r in caplog.records if r.name == "agentwatch"]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.WARNING
    assert "telemetry disabled" in record.getMessage() and str(path) in record.getMessage()
    assert "\n" not in record.getMessage() and record.exc_info is None
    assert runtime.get_runtime().enabled is False


@pytest.mark.slow
def test_a_broken_config_in_a_real_host_process_prints_one_line(tmp_path: Path) -> None:
    """The warning reaches stderr through Python's last-resort handler: no logging setup."""
    path = tmp_path / "config.yaml"
    _deep(path)
    program = textwrap.dedent(
        """
        import agentwatch

        @agentwatch.observe
        def agent(n):
            return n + 1

        print(sum(agent(n) for n in range(100)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        env={"AGENTWATCH_CONFIG": str(path), "AGENTWATCH_HOME": str(tmp_path), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5050"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nested" in lines[0] and str(path) in lines[0], done.stderr
