"""One worker process of `tests/test_attribution_e2e.py`: real litellm calls for one team.

Configured from the shared config file (attribution dimensions, an enforcing budget) and
store, it prints `ready`, waits for `go` on stdin, then makes `--calls` litellm calls (offline,
`mock_response=`), one every `--pace` seconds, each inside a run of its team
(`track("checkout", team=...)`) and made for its customer (`user=`); with `--outside`, every
other call is made outside any run, naming team and customer in litellm's `metadata`. A call
refused with `agentwatch.BudgetExceeded` is counted and the worker keeps trying. At the end it
flushes and prints one JSON line: calls made, calls refused, and litellm's own computed cost of
the calls made (`litellm.completion_cost`), the figure `serve` must agree with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

import agentwatch

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in one line."}]
ANSWER = "Revenue grew four percent; costs were flat."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--team", required=True)
    parser.add_argument("--customer", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--pace", type=float, required=True)
    parser.add_argument("--outside", action="store_true")
    args = parser.parse_args()

    agentwatch.configure(config_path=Path(args.config), store_url=args.store, flush_interval=0.1)
    agentwatch.instrument_litellm()
    litellm.suppress_debug_info = True
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return

    made = refused = 0
    cost = 0.0
    for index in range(args.calls):
        try:
            if args.outside and index % 2:
                response = litellm.completion(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    mock_response=ANSWER,
                    metadata={"team": args.team, "customer": args.customer},
                )
            else:
                with agentwatch.track("checkout", team=args.team):
                    response = litellm.completion(
                        model="gpt-4o-mini",
                        messages=MESSAGES,
                        mock_response=ANSWER,
                        user=args.customer,
                    )
        except agentwatch.BudgetExceeded:
            refused += 1
        else:
            made += 1
            cost += float(litellm.completion_cost(completion_response=response))
        time.sleep(args.pace)
    flushed = agentwatch.flush(timeout=30.0)
    print(json.dumps({"made": made, "refused": refused, "cost": cost, "flushed": flushed}),
          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
