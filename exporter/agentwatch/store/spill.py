"""Loss files: self-metric counts a writer could not put in the store before it exited.

A process that exits while its store is locked or down drops its unwritten records as
`shutdown`, and cannot add that count (or its write errors) to the store's rollups. It
writes them instead to a small JSON file, atomically (temporary file, then rename), where
the next writer for the same store finds it:

- SQLite: next to the database, `<file name>.lost-<id>.json`;
- PostgreSQL: `$AGENTWATCH_HOME/lost/<hash>/lost-<id>.json`, where `<hash>` is the SHA-256
  of the URL without its password (so every process pointed at that database finds it).

The next writer folds each file into the rollups with `Store.fold_spill`, which records the
file's id in the `batches` table in the same transaction, then deletes the file: a file
folded twice (a crash before the delete, two writers at once) counts once.

A file also says which batch, if any, the process was writing when it exited, unsure
whether it landed (a lost connection): the part of the counts that batch carried (its
records, counted as `shutdown`, and its self-metric deltas) is applied only if that batch
never was, and that batch can then never land afterwards.

Files are validated on reading (known self-metrics only, bounded finite counts, at most
`_MAX_BYTES`); an invalid file is renamed `*.invalid` and skipped, never retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentwatch import contract
from agentwatch.rollups import SelfDelta

logger = logging.getLogger("agentwatch")

_FORMAT = 1
_MAX_BYTES = 64 * 1024
_MAX_FILES = 1000
_MAX_VALUE = 1e15
_SUFFIX = ".json"
_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}$")
#: The only metrics a loss file may carry, by name.
_METRICS: dict[str, contract.MetricSpec] = {
    spec.name: spec
    for spec in (
        contract.EVENTS_DROPPED,
        contract.STORE_WRITE_ERRORS,
        contract.INTERNAL_ERRORS,
        contract.INVALID_VALUES,
    )
}


@dataclass(frozen=True, slots=True)
class Spill:
    """One loss file, read and validated.

    Attributes:
        id: unique, time-ordered id (also in the file name).
        path: the file.
        deltas: counts to add to the rollups.
        unless_batch: id of the batch the process was writing when it exited, or None.
        conditional: counts to add only if `unless_batch` was never applied.
    """

    id: str
    path: Path
    deltas: tuple[SelfDelta, ...]
    unless_batch: str | None = None
    conditional: tuple[SelfDelta, ...] = ()


def _postgres_key(url: str) -> str:
    """SHA-256 (hex, 16 chars) of the URL without password, with a canonical scheme."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        scheme = "postgresql"
    # Drop the password (user:password@host -> user@host).
    rest = re.sub(r"^([^:/@]*):[^@/]*@", r"\1@", rest)
    return hashlib.sha256(f"{scheme}{sep}{rest}".encode()).hexdigest()[:16]


def location(url: str) -> tuple[Path, str]:
    """The directory and file-name prefix of the loss files of the store at `url`."""
    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///") :].split("?", 1)[0]).expanduser()
        return database.parent, f"{database.name}.lost-"
    from agentwatch.config import default_home

    return default_home() / "lost" / _postgres_key(url), "lost-"


def write(
    url: str,
    spill_id: str,
    deltas: Sequence[SelfDelta],
    *,
    unless_batch: str | None = None,
    conditional: Sequence[SelfDelta] = (),
) -> Path:
    """Write a loss file for the store at `url` atomically; return its path.

    Raises:
        OSError: the directory cannot be written (the loss is then only logged).
    """
    directory, prefix = location(url)
    if not url.startswith("sqlite:///"):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {
        "format": _FORMAT,
        "id": spill_id,
        "deltas": _encode(deltas),
        "unless_batch": unless_batch,
        "conditional": _encode(conditional),
    }
    final = directory / f"{prefix}{spill_id}{_SUFFIX}"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{prefix}", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return final


def pending(url: str) -> list[Spill]:
    """The loss files waiting to be folded for the store at `url`, oldest first.

    Invalid files are renamed `*.invalid` (and logged); unreadable directories yield none.
    """
    directory, prefix = location(url)
    try:
        names = sorted(
            name
            for name in os.listdir(directory)
            if name.startswith(prefix) and name.endswith(_SUFFIX)
        )
    except OSError:
        return []
    spills = []
    for name in names[:_MAX_FILES]:
        path = directory / name
        spill_id = name[len(prefix) : -len(_SUFFIX)]
        try:
            spills.append(_read(path, spill_id))
        except FileNotFoundError:
            continue  # folded by another writer meanwhile
        except (OSError, ValueError) as exc:
            logger.warning("agentwatch: ignoring invalid loss file %s: %s", path, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".invalid"))
    return spills


def remove(spill: Spill) -> None:
    """Delete a folded loss file (already gone is fine)."""
    with contextlib.suppress(FileNotFoundError):
        spill.path.unlink()


def _read(path: Path, spill_id: str) -> Spill:
    if not _ID.match(spill_id):
        raise ValueError("unexpected file name")
    with path.open("rb") as handle:
        raw = handle.read(_MAX_BYTES + 1)
    if len(raw) > _MAX_BYTES:
        raise ValueError(f"larger than {_MAX_BYTES} bytes")
    body = json.loads(raw.decode("utf-8"))
    if not isinstance(body, dict) or body.get("format") != _FORMAT or body.get("id") != spill_id:
        raise ValueError("not a loss file of this format")
    unless = body.get("unless_batch")
    if unless is not None and (not isinstance(unless, str) or len(unless) > 100):
        raise ValueError("bad unless_batch")
    return Spill(
        id=spill_id,
        path=path,
        deltas=_decode(body.get("deltas")),
        unless_batch=unless,
        conditional=_decode(body.get("conditional")),
    )


def _encode(deltas: Sequence[SelfDelta]) -> list[list[object]]:
    return [[spec.name, list(labels), value] for spec, labels, value in deltas if value > 0]


def _decode(items: object) -> tuple[SelfDelta, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ValueError("deltas must be a list")
    result: list[SelfDelta] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError("a delta must be [metric, labels, value]")
        name, labels, value = item
        spec = _METRICS.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ValueError(f"unknown metric {name!r}")
        if not (
            isinstance(labels, list)
            and len(labels) == len(spec.labels)
            and all(isinstance(v, str) and len(v) <= 200 for v in labels)
        ):
            raise ValueError(f"bad labels for {spec.name}")
        if spec is contract.EVENTS_DROPPED and labels[0] not in contract.DROP_REASONS:
            raise ValueError(f"unknown drop reason {labels[0]!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= _MAX_VALUE
        ):
            raise ValueError(f"bad value {value!r}")
        result.append((spec, tuple(labels), float(value)))
    return tuple(result)
