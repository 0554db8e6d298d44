"""Stream executions from the store to CSV, JSON or JSON Lines in bounded memory.

`Store.stream_executions` reads chunk by chunk; each record is written as soon as it is read,
so exporting a million runs holds one chunk in memory. A file is written next to its
destination and renamed into place only when complete (`_atomic`): a failed export never
leaves a truncated file that looks finished, and a planted symlink, a FIFO or a device at
the destination is refused, never written through.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agentwatch.cli._atomic import atomic_output
from agentwatch.store.rows import EXECUTION_RECORD_FIELDS

if TYPE_CHECKING:
    from agentwatch.store.base import Store
    from agentwatch.store.rows import ExecutionFilter


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


@contextmanager
def _destination(output: str) -> Iterator[IO[str]]:
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_output(Path(output)) as handle:
        yield handle


def _records(store: Store, flt: ExecutionFilter) -> Iterator[dict[str, Any]]:
    for execution in store.stream_executions(flt):
        yield execution.to_record()


def _write(records: Iterator[dict[str, Any]], handle: IO[str], fmt: str, tick: Any) -> int:
    written = 0
    if fmt == "csv":
        writer = csv.writer(handle)
        writer.writerow(EXECUTION_RECORD_FIELDS)
        for record in records:
            writer.writerow([_csv_value(record[key]) for key in EXECUTION_RECORD_FIELDS])
            written += 1
            tick()
    elif fmt == "jsonl":
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
            tick()
    else:  # json: one array, streamed element by element
        handle.write("[")
        for record in records:
            handle.write(("\n" if written == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
            written += 1
            tick()
        handle.write("\n]\n" if written else "]\n")
    return written


def write_export(
    store: Store,
    flt: ExecutionFilter,
    *,
    fmt: str,
    output: str,
    progress: bool | None,
) -> int:
    """Write every matching execution; return how many were written.

    Args:
        flt: which executions (the same filter `monitor list` uses).
        fmt: `csv`, `json` or `jsonl`.
        output: a path, or `-` for stdout.
        progress: show a bar on stderr; None means "when writing a file from a terminal".
    """
    show = progress if progress is not None else (output != "-" and sys.stderr.isatty())
    with _destination(output) as handle:
        if not show:
            return _write(_records(store, flt), handle, fmt, lambda: None)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from agentwatch.cli._session import console

        total = store.count(flt)
        with Progress(
            TextColumn("Exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console(stderr=True),
            transient=False,
        ) as bar:
            task = bar.add_task("export", total=total)
            pending = 0

            def tick() -> None:
                nonlocal pending
                pending += 1
                if pending >= 500:
                    bar.advance(task, pending)
                    pending = 0

            written = _write(_records(store, flt), handle, fmt, tick)
            bar.update(task, completed=written, total=max(total, written))
        return written
