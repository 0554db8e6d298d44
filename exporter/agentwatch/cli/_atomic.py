"""Write a file the safe way: complete or not at all, and never through someone else's link.

`monitor export -o FILE` and `init` may run as root in a directory others can write to. A
fixed temporary name (`.FILE.partial`) can be planted as a symlink to `/etc/shadow`; opening
it for writing would overwrite the link's target. So the temporary file is created with
O_EXCL under a random name in the target's directory (`tempfile.mkstemp`, which never follows
a link), written, fsynced, and renamed over the target (`rename` replaces a link itself, never
its target); the directory is fsynced so the rename survives a crash. An existing target that
is not a regular file (a directory, a symlink, a FIFO, a device) is refused: replacing
`/dev/null` or a named pipe with a file is never what the user meant.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class OutputRefused(click.ClickException):
    """The destination of a file the CLI writes is refused; one line, exit status 2."""

    exit_code = 2


def _kind(mode: int) -> str | None:
    """What a non-regular file is, for the refusal message; None for a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_target(path: Path, *, create_parent: bool = False) -> int | None:
    """Refuse a destination that cannot or must not be replaced; return its permission bits.

    Args:
        path: the file to write.
        create_parent: create a missing parent directory (mode 0700) instead of refusing.

    Returns:
        The permission bits of an existing regular file (kept on the new file), else None.

    Raises:
        OutputRefused: one line saying why (exit status 2).
    """
    if not path.name or str(path).endswith(os.sep):
        raise OutputRefused(f"{path}: is a directory; give a file name")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except (OSError, ValueError) as exc:
        reason = _reason(exc) if isinstance(exc, OSError) else str(exc)
        raise OutputRefused(f"{path}: cannot write there: {reason}") from None
    if info is not None:
        kind = _kind(info.st_mode)
        if kind is not None:
            raise OutputRefused(
                f"{path} is {kind}; refusing to replace it (give the path of a regular file)"
            )
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            raise OutputRefused(f"{path}: {parent} is not a directory")
        if not create_parent:
            raise OutputRefused(f"{path}: directory {parent} does not exist")
        try:
            parent.mkdir(parents=True, mode=0o700)
        except OSError as exc:
            raise OutputRefused(f"{path}: cannot create {parent}: {_reason(exc)}") from None
    return None if info is None else stat.S_IMODE(info.st_mode)


@contextlib.contextmanager
def atomic_output(
    path: Path, *, create_parent: bool = False, mode: int = 0o600, keep_mode: bool = True
) -> Iterator[IO[str]]:
    """A text handle whose content replaces `path` atomically when the block ends cleanly.

    On an exception nothing at `path` changes and the temporary file is removed. A new file
    gets `mode` (owner-only by default: exports and configs may hold sensitive data); an
    existing one keeps its permission bits when `keep_mode` is set.

    Raises:
        OutputRefused: the destination is refused (see `check_target`).
        click.ClickException: the file cannot be written (disk full, read-only, `/proc`).
    """
    existing = check_target(path, create_parent=create_parent)
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".partial", dir=path.parent
        )
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {path}: cannot create a file in {path.parent}: {_reason(exc)}"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), existing if keep_mode and existing is not None else mode)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise click.ClickException(f"cannot write {path}: {_reason(exc)}") from None
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; some file systems cannot open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
