"""Run a command in a pseudo-terminal of a chosen size, as a person at a terminal would.

The command gets the pty as its controlling terminal (so Ctrl-C written to it is a real
SIGINT from the terminal driver, and `isatty()` is true), its own session, and the window
size set with TIOCSWINSZ. A thread reads everything it prints, with the time it arrived, so a
test can ask "did this appear within 2 s?".

    with PtyProcess([*agentwatch_command(), "monitor", "list"], columns=80) as term:
        term.wait_for("Agent")
        assert term.wait(10) == 0
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence

#: CSI/OSC sequences and the other escapes rich and the terminal driver emit.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """`text` without colour, cursor and erase sequences, and with `\\r\\n` as `\\n`."""
    return _ANSI.sub("", text).replace("\r\n", "\n")


class PtyProcess:
    """A process on the slave side of a fresh pty; this object holds the master side."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        columns: int = 80,
        rows: int = 40,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        full_env = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
            if name not in (env or {}):
                full_env.pop(name, None)  # the window size decides, as in a real terminal
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            cwd=cwd,
            close_fds=True,
            preexec_fn=_controlling_tty,
        )
        os.close(slave)
        self._master = master
        self._chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every slave fd closed (the process exited)
                return
            if not chunk:
                return
            with self._lock:
                self._chunks.append((time.monotonic(), chunk))

    @property
    def raw(self) -> str:
        """Everything printed so far, escapes included."""
        with self._lock:
            data = b"".join(chunk for _, chunk in self._chunks)
        return data.decode("utf-8", errors="replace")

    @property
    def text(self) -> str:
        """Everything printed so far, without escape sequences."""
        return strip_ansi(self.raw)

    def first_seen(self, needle: str) -> float | None:
        """Seconds after start when `needle` had been printed, or None if not yet."""
        with self._lock:
            chunks = list(self._chunks)
        data = b""
        for at, chunk in chunks:
            data += chunk
            if needle in strip_ansi(data.decode("utf-8", errors="replace")):
                return at - self.started
        return None

    def wait_for(self, needle: str, timeout: float = 30.0) -> float:
        """Block until `needle` is printed; return when it was (seconds after start)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.first_seen(needle)
            if seen is not None:
                return seen
            if time.monotonic() > deadline or (
                self.process.poll() is not None and not self._reader.is_alive()
            ):
                raise AssertionError(
                    f"{needle!r} not printed within {timeout:.0f}s; screen so far:\n"
                    f"{self.text[-3000:]}"
                )
            time.sleep(0.02)

    def type(self, keys: str) -> None:
        """Send keys as typed (`\\x03` is Ctrl-C)."""
        os.write(self._master, keys.encode())

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status, once the process has exited and its output is read."""
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        os.close(self._master)

    def __enter__(self) -> PtyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _controlling_tty() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
