"""The audit chain in the store: append inside the batch's transaction, prune, read, verify.

`append` runs inside `Store.write_batch`'s transaction, after the batch id was claimed, so
an entry commits exactly when its run does and a retried batch appends nothing. It reads
the head and inserts the new links with one `executemany`. The chain stays linear with many
writing processes: SQLite's `BEGIN IMMEDIATE` already holds the database's write lock, and
on PostgreSQL a transaction-scoped advisory lock serialises appenders (taken only by batches
that carry entries, i.e. only when the audit trail is on).

`prune` removes a prefix of the chain (entries older than the cutoff, up to the first one
that is not) in short transactions, each appending a checkpoint entry with the hash of the
last entry it removed, so `verify` still passes on what is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentwatch.audit import (
    GENESIS,
    AuditEntry,
    ChainRow,
    Verdict,
    checkpoint,
    link,
    verify_rows,
)

if TYPE_CHECKING:
    from agentwatch.store.base import Store

#: Key of the transaction-scoped advisory lock that serialises audit appenders (PostgreSQL).
_AUDIT_LOCK = 0x6761756474  # "gaudt"
_HEAD = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
_INSERT = "INSERT INTO audit (seq, at, entry, prev_hash, hash) VALUES (?, ?, ?, ?, ?)"
#: Entries removed per prune transaction (short: appenders wait for the lock meanwhile).
_PRUNE_CHUNK = 5_000
_STREAM_CHUNK = 2_000


def _lock(store: Store, cur: Any) -> None:
    if store.backend == "postgresql":
        cur.execute(store._sql("SELECT pg_advisory_xact_lock(?)"), (_AUDIT_LOCK,))
    # SQLite: BEGIN IMMEDIATE already holds the database's write lock.


def _head(store: Store, cur: Any) -> tuple[int, str]:
    cur.execute(store._sql(_HEAD))
    row = cur.fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def append(store: Store, cur: Any, entries: Sequence[AuditEntry]) -> None:
    """Chain `entries` after the current head, inside the caller's transaction."""
    if not entries:
        return
    _lock(store, cur)
    seq, prev = _head(store, cur)
    ats = [e.at for e in entries]
    cur.executemany(
        store._sql(_INSERT),
        [
            (r.seq, at, r.entry, r.prev_hash, r.hash)
            for r, at in zip(link(seq, prev, entries), ats, strict=True)
        ],
    )


def head(store: Store) -> tuple[int, str]:
    """(seq, hash) of the newest entry; (0, `GENESIS`) for an empty chain."""
    with store._read() as cur:
        return _head(store, cur)


def prune(store: Store, older_than: float) -> int:
    """Remove entries older than `older_than` from the start of the chain; return how many.

    Stops at the first entry that is not older (the chain is cut only at its start). Each
    transaction removes at most `_PRUNE_CHUNK` entries and appends a checkpoint.
    """
    cutoff = min(older_than, time.time())  # a checkpoint made now is never pruned here
    total = 0
    while True:
        with store.atomic() as cur:
            _lock(store, cur)
            cur.execute(store._sql("SELECT MIN(seq) FROM audit"))
            row = cur.fetchone()
            if row is None or row[0] is None:
                return total
            first = int(row[0])
            cur.execute(
                store._sql("SELECT MIN(seq) FROM audit WHERE seq >= ? AND seq < ? AND at >= ?"),
                (first, first + _PRUNE_CHUNK, cutoff),
            )
            kept = cur.fetchone()
            if kept is not None and kept[0] is not None:
                stop = int(kept[0]) - 1
            else:
                head_seq, _ = _head(store, cur)
                stop = min(head_seq, first + _PRUNE_CHUNK - 1)
            if stop < first:
                return total
            cur.execute(store._sql("SELECT hash FROM audit WHERE seq = ?"), (stop,))
            through_hash = str(cur.fetchone()[0])
            cur.execute(store._sql("DELETE FROM audit WHERE seq <= ?"), (stop,))
            removed = stop - first + 1
            append(store, cur, [checkpoint(stop, through_hash, removed, time.time())])
        total += removed


def rows(store: Store) -> Iterator[ChainRow]:
    """Every stored link in `seq` order, streamed on a connection of its own."""
    sql = store._sql("SELECT seq, prev_hash, hash, entry FROM audit ORDER BY seq")
    for seq, prev_hash, digest, entry in store._stream(sql, (), _STREAM_CHUNK):
        yield ChainRow(int(seq), str(prev_hash), str(digest), str(entry))


def verify(store: Store, expect_head: tuple[int, str] | None = None) -> Verdict:
    """Walk the stored chain (`agentwatch.audit.verify_rows`)."""
    return verify_rows(rows(store), expect_head)
