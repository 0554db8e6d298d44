"""One process appending to a store's audit trail, driven by `tests/test_audit.py`.

    python tests/_audit_worker.py URL WORKER BATCHES

Writes BATCHES batches of three executions each through `Store.write_batch` (so every batch
appends its audit entries in its own transaction, as the background writer does), racing
the other worker process started with it.
"""

from __future__ import annotations

import sys

from agentwatch import audit
from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import Event, Execution, ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import open_store


def main() -> None:
    url, worker, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    builder = RollupBuilder(CardinalityGuard(2_000))
    store = open_store(url)
    try:
        for b in range(batches):
            items = []
            for i in range(3):
                ex = Execution(
                    id=f"w{worker}-{b}-{i}",
                    agent=f"agent{worker}",
                    started_at=1_000.0 + b,
                    ended_at=1_000.5 + b,
                    status="completed",
                )
                ex.events.append(Event("llm_call", "chat", 1_000.1 + b, 0.1, cost_usd=0.001))
                items.append(ExecutionFinished(ex))
            batch = builder.build(items)
            batch.audit = audit.entries_for(items)
            store.write_batch(batch)
    finally:
        store.close()


if __name__ == "__main__":
    main()
