"""The audit trail's entries and chain: what an agent did, as canonical JSON, hash-linked.

Each finished run becomes `run.started`, one entry per call of its timeline (`llm_call`,
`tool_call`, `memory`, `custom`) and `run.finished`; a late or orphan call becomes one
entry. An entry says who (agent, run, parent run, the run's attributes, which carry the
attribution labels), what (call name, model, provider), when (ISO 8601 UTC, microseconds),
the outcome (status, error type) and the cost and tokens. It never holds arguments, prompts
or error messages: the audit trail outlives sampling and may be exported to an archive.

Canonical form: JSON with sorted keys, no spaces, UTF-8, and no JSON numbers other than
integers (every float is written as the string `repr()` gives, which round-trips exactly),
so the same entry always has the same bytes in Python, in PostgreSQL and in any verifier.

Chain: entry number `seq` (1, 2, ...) stores `prev_hash` (the hash of entry `seq - 1`, or
`GENESIS` for the first) and `hash = sha256(prev_hash || entry)` in lower-case hex, where
`prev_hash` is its 64 ASCII hex digits and `entry` the canonical UTF-8 text. Pruning removes
a prefix of the chain and appends a `checkpoint` entry naming the last removed `seq` and
its hash, so the remaining suffix still verifies (see `verify_rows`).

Runs in the background writer thread and in the CLI, never on the hot path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentwatch.model import Event, ExecutionFinished, LateEvent, WriterItem

#: `prev_hash` of the first entry of a chain.
GENESIS = "0" * 64
#: Version of the entry layout (`"v"` of every entry).
ENTRY_VERSION = 1
#: Entry type of a prune checkpoint.
CHECKPOINT = "checkpoint"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry before it joins the chain.

    Attributes:
        at: epoch seconds the entry is about (for retention); also inside `text`.
        text: the canonical JSON of the entry.
    """

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One stored link of the chain."""

    seq: int
    prev_hash: str
    hash: str
    entry: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of walking a chain.

    Attributes:
        ok: every link holds (and the expected head, if given, is part of the chain).
        checked: entries walked.
        first_seq: first stored entry (None for an empty chain).
        head_seq: last stored entry (0 for an empty chain).
        head_hash: its hash (`GENESIS` for an empty chain).
        broken_seq: `seq` of the first broken link, when not ok.
        problem: one line saying what differs there.
    """

    ok: bool
    checked: int
    first_seq: int | None
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


def _plain(value: Any) -> Any:
    """`value` with every float as its exact `repr()` text and every key as a string."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def canonical(entry: dict[str, Any]) -> str:
    """The canonical JSON text of an entry (see the module docstring)."""
    return json.dumps(_plain(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, text: str) -> str:
    """sha256(prev_hash || entry) in lower-case hex."""
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with microseconds (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def _entry(entry_type: str, at: float, **fields: Any) -> AuditEntry:
    body = {"v": ENTRY_VERSION, "type": entry_type, "at": iso(at), **fields}
    return AuditEntry(at, canonical(body))


def _call(ev: Event, run: str | None, agent: str, *, late: bool) -> AuditEntry:
    return _entry(
        ev.kind,
        ev.started_at,
        run=run,
        agent=agent,
        name=ev.name,
        model=ev.model,
        provider=ev.provider,
        status=ev.status,
        error_type=ev.error_type,
        duration_s=ev.duration,
        cost_usd=ev.cost_usd,
        tokens={
            "input": ev.input_tokens,
            "output": ev.output_tokens,
            "cached": ev.cached_tokens,
            "reasoning": ev.reasoning_tokens,
        },
        late=late,
    )


def entries_for(items: Iterable[WriterItem]) -> list[AuditEntry]:
    """The audit entries of a batch of writer items, in the batch's order.

    Call after `RollupBuilder.build`, which repairs invalid values in the records, so the
    audit trail agrees with the stored rows and the metrics.
    """
    out: list[AuditEntry] = []
    for item in items:
        if isinstance(item, ExecutionFinished):
            ex = item.execution
            who = {
                "run": ex.id,
                "parent": ex.parent_id,
                "agent": ex.agent,
                "kind": ex.kind,
                "attributes": ex.attributes or {},
            }
            out.append(_entry("run.started", ex.started_at, **who))
            cost = 0.0
            unpriced = 0
            tokens = {"input": 0, "output": 0, "cached": 0, "reasoning": 0}
            for ev in ex.events:
                out.append(_call(ev, ex.id, ev.agent or ex.agent, late=False))
                if ev.cost_usd is None:
                    unpriced += ev.kind == "llm_call"
                else:
                    cost += ev.cost_usd
                tokens["input"] += ev.input_tokens
                tokens["output"] += ev.output_tokens
                tokens["cached"] += ev.cached_tokens
                tokens["reasoning"] += ev.reasoning_tokens
            ended = ex.ended_at if ex.ended_at is not None else ex.started_at
            out.append(
                _entry(
                    "run.finished",
                    ended,
                    **who,
                    status=ex.status,
                    error_type=ex.error_type,
                    duration_s=ex.duration,
                    cost_usd=cost,
                    unpriced_calls=unpriced,
                    tokens=tokens,
                    llm_calls=sum(ev.kind == "llm_call" for ev in ex.events),
                    tool_calls=sum(ev.kind == "tool_call" for ev in ex.events),
                )
            )
        elif isinstance(item, LateEvent):
            ev = item.event
            out.append(_call(ev, ev.execution_id, ev.agent or "", late=True))
    return out


def checkpoint(through_seq: int, through_hash: str, removed: int, at: float) -> AuditEntry:
    """The entry a prune appends: entries up to `through_seq` (hash `through_hash`) removed."""
    return _entry(
        CHECKPOINT,
        at,
        removed_through_seq=through_seq,
        removed_through_hash=through_hash,
        removed_entries=removed,
    )


def link(prev_seq: int, prev_hash: str, entries: Sequence[AuditEntry]) -> Iterator[ChainRow]:
    """Chain `entries` after the head (`prev_seq`, `prev_hash`)."""
    seq, prev = prev_seq, prev_hash
    for e in entries:
        seq += 1
        h = chain_hash(prev, e.text)
        yield ChainRow(seq, prev, h, e.text)
        prev = h


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` (as `agentwatch audit head` prints it) -> (seq, hash).

    Raises:
        ValueError: not a positive seq and 64 hex digits separated by a colon.
    """
    seq_text, _, digest = text.strip().partition(":")
    digest = digest.lower()
    if (
        not seq_text.isdigit()
        or int(seq_text) < 1
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ValueError(f"expected SEQ:HASH (e.g. 42:{'ab' * 32}), got {text[:80]!r}")
    return int(seq_text), digest


def verify_rows(rows: Iterable[ChainRow], expect_head: tuple[int, str] | None = None) -> Verdict:
    """Walk stored links in `seq` order and report the first one that does not hold.

    Checked for each entry: its `seq` follows the previous one (a gap is a deleted entry),
    its `prev_hash` is the previous entry's hash, its `hash` is `chain_hash(prev_hash,
    entry)` (an edited entry or hash), and the entry is canonical JSON. The first stored
    entry must follow `GENESIS` (seq 1) or a checkpoint further on that records the removal
    of everything before it. With `expect_head = (seq, hash)` (an anchor kept elsewhere),
    the chain must contain that entry with that hash, or a checkpoint that removed exactly
    up to it: a chain rewritten or cut back since the anchor was taken fails.

    Memory: one previous link plus the checkpoints seen.
    """
    checked = 0
    first: ChainRow | None = None
    prev: ChainRow | None = None
    removed: dict[int, str] = {}
    anchor_seen = False

    def fail(seq: int, problem: str) -> Verdict:
        return Verdict(
            False,
            checked,
            None if first is None else first.seq,
            0 if prev is None else prev.seq,
            GENESIS if prev is None else prev.hash,
            seq,
            problem,
        )

    for row in rows:
        if first is None:
            first = row
            if row.seq == 1 and row.prev_hash != GENESIS:
                return fail(1, "the first entry's prev_hash is not the genesis hash")
        elif row.seq != prev.seq + 1:  # type: ignore[union-attr]
            missing = prev.seq + 1  # type: ignore[union-attr]
            return fail(missing, f"entry {missing} is missing (the chain jumps to {row.seq})")
        elif row.prev_hash != prev.hash:  # type: ignore[union-attr]
            return fail(row.seq, f"prev_hash differs from the hash of entry {row.seq - 1}")
        if chain_hash(row.prev_hash, row.entry) != row.hash:
            return fail(
                row.seq, "hash differs from sha256(prev_hash || entry): the entry was edited"
            )
        try:
            parsed = json.loads(row.entry)
        except ValueError:
            return fail(row.seq, "the entry is not JSON")
        if not isinstance(parsed, dict) or canonical(parsed) != row.entry:
            return fail(row.seq, "the entry is not in canonical form")
        if parsed.get("type") == CHECKPOINT:
            removed[int(parsed["removed_through_seq"])] = str(parsed["removed_through_hash"])
        if expect_head is not None and row.seq == expect_head[0]:
            if row.hash != expect_head[1]:
                return fail(row.seq, "hash differs from the anchored head hash")
            anchor_seen = True
        checked += 1
        prev = row
    if first is not None and first.seq != 1:
        through = first.seq - 1
        if removed.get(through) != first.prev_hash:
            return fail(
                first.seq,
                f"entries before {first.seq} are missing and no checkpoint records their removal",
            )
    if expect_head is not None and not anchor_seen:
        seq, digest = expect_head
        head = 0 if prev is None else prev.seq
        if seq > head:
            return fail(seq, f"the anchored entry {seq} is beyond the head ({head}): cut back")
        if removed.get(seq) != digest:
            return fail(
                seq,
                f"the anchored entry {seq} was pruned and no checkpoint confirms its hash; "
                "verify against a newer anchor",
            )
    return Verdict(
        True,
        checked,
        None if first is None else first.seq,
        0 if prev is None else prev.seq,
        GENESIS if prev is None else prev.hash,
    )
