"""One process of `tests/test_cardinality.py`'s end-to-end case: many agents, one shared cap.

Runs `--agents` executions named `agent-<n>` for n from `--first` on, each with one LLM call,
writes them to `--store` with `max_label_sets=--cap` and prints `flushed <bool>` at the end.
Several of these run at once against one store, with overlapping agent names.
"""

from __future__ import annotations

import argparse

import agentwatch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--cap", type=int, required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--agents", type=int, required=True)
    args = parser.parse_args()

    # Small batches: many transactions race for the same places in the store.
    agentwatch.configure(
        store_url=args.store, max_label_sets=args.cap, batch_size=50, flush_interval=0.02
    )
    for n in range(args.first, args.first + args.agents):
        with agentwatch.track(f"agent-{n}"):
            agentwatch.record_llm_call(
                "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=5,
                cost_usd=0.001, duration=0.2,
            )  # fmt: skip
    print("flushed", agentwatch.flush(timeout=120))


if __name__ == "__main__":
    main()
