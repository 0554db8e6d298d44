"""`agentwatch audit`: verify, export and anchor the store's hash-chained audit trail.

What the chain proves and what it does not is in docs/audit.md; in short, `verify` finds an
edited, deleted or reordered entry, and `head` prints the value to keep somewhere the store's
administrator cannot rewrite, so that `verify --expect-head` also finds a rewritten chain.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from agentwatch.audit import ChainRow, Verdict, parse_anchor, verify_rows
from agentwatch.cli._options import settings_options
from agentwatch.cli._session import echo_json, open_for_reading, resolve_settings


@click.group()
def audit() -> None:
    """Verify, export and anchor the audit trail (enable it with `audit: true`)."""


def _anchor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        return parse_anchor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expect-head") from None


def _file_rows(path: Path) -> Iterator[ChainRow]:
    """Links from a JSON Lines export (`audit export`), one per line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield ChainRow(
                    int(obj["seq"]), str(obj["prev_hash"]), str(obj["hash"]), str(obj["entry"])
                )
            except (ValueError, KeyError, TypeError):
                raise click.ClickException(
                    f"{path}:{number}: not a line of `agentwatch audit export`"
                ) from None


def _report(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "ok": verdict.ok,
                "checked": verdict.checked,
                "first_seq": verdict.first_seq,
                "head_seq": verdict.head_seq,
                "head_hash": verdict.head_hash,
                "broken_seq": verdict.broken_seq,
                "problem": verdict.problem,
            }
        )
    elif verdict.ok:
        span = "" if verdict.first_seq is None else f" ({verdict.first_seq}..{verdict.head_seq})"
        click.echo(
            f"Audit trail intact: {verdict.checked:,} entries{span}, "
            f"head {verdict.head_seq}:{verdict.head_hash}"
        )
    else:
        click.echo(f"Audit trail broken at entry {verdict.broken_seq}: {verdict.problem}", err=True)
    if not verdict.ok:
        sys.exit(1)


@audit.command()
@settings_options
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    default=None,
    help="An anchor printed earlier by `audit head`: fail unless the chain still holds that "
    "entry with that hash (finds a chain rewritten or cut back since). Default: none.",
)
@click.option(
    "--file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify a JSON Lines file written by `audit export` instead of the store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(
    store_url: str | None,
    config_path: Path | None,
    expect_head: str | None,
    from_file: Path | None,
    as_json: bool,
) -> None:
    """Walk the chain; exit 1 at the first broken link (which entry, what differs).

    Exit 0 and the number of entries checked when every link holds.
    """
    anchor = _anchor(expect_head)
    if from_file is not None:
        _report(verify_rows(_file_rows(from_file), anchor), as_json)
        return
    from agentwatch.store import audit as chain

    with open_for_reading(resolve_settings(config_path, store_url)) as store:
        verdict = chain.verify(store, anchor)
    _report(verdict, as_json)


@audit.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print {seq, hash} as JSON.")
def head(store_url: str | None, config_path: Path | None, as_json: bool) -> None:
    """Print the newest entry as SEQ:HASH, to keep (log, sign, store) outside the store.

    Run it periodically and keep its output where the store's administrator cannot change
    it; `audit verify --expect-head SEQ:HASH` then proves the chain was not rewritten.
    """
    from agentwatch.store import audit as chain

    with open_for_reading(resolve_settings(config_path, store_url)) as store:
        seq, digest = chain.head(store)
    if as_json:
        echo_json({"seq": seq, "hash": digest})
    else:
        click.echo(f"{seq}:{digest}")


def _write_lines(store_rows: Iterator[ChainRow], out: IO[str]) -> int:
    n = 0
    for row in store_rows:
        out.write(
            json.dumps(
                {"seq": row.seq, "prev_hash": row.prev_hash, "hash": row.hash, "entry": row.entry},
                ensure_ascii=False,
            )
            + "\n"
        )
        n += 1
    return n


@audit.command()
@settings_options
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="FILE",
    help="File to write (replaced only once complete); - writes to stdout.",
)
def export(store_url: str | None, config_path: Path | None, output: str) -> None:
    """Write the chain as JSON Lines: {seq, prev_hash, hash, entry} per entry, oldest first.

    `entry` is the exact canonical text that was hashed, so an archive can be checked
    without agentwatch (sha256 of prev_hash + entry) or with `audit verify --file`.
    """
    from agentwatch.cli._atomic import atomic_output
    from agentwatch.store import audit as chain

    with open_for_reading(resolve_settings(config_path, store_url)) as store:
        if output == "-":
            written = _write_lines(chain.rows(store), sys.stdout)
        else:
            with atomic_output(Path(output)) as out:
                written = _write_lines(chain.rows(store), out)
    if output != "-":
        click.echo(f"Exported {written:,} audit entries to {output}.", err=True)
