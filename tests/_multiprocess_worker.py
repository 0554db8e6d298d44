"""One worker process of a multi-worker service (like a gunicorn worker), driven by a test.

Used by `tests/test_multiprocess_e2e.py`. The worker writes agent executions with agentwatch
to the store given on the command line and reports every execution it finished on stdout, so
the test knows exactly what each process handed to agentwatch:

    ready                              agentwatch configured, waiting for commands
    done <seq> <status> <cost_usd>     one execution finished (status completed|failed)
    phase1 <flushed>                   after `phase1 N`: N executions ran, flush() returned
    stopped <count> <cost_usd> <flushed>   after `stop` in phase 2: totals of the whole run

Commands arrive on stdin, one per line: `phase1 N` (run N executions at once, then flush),
`phase2` (run executions continuously, paced, until `stop`), `stop`.

SIGTERM is blocked everywhere except while the main thread sleeps between two executions, so
a SIGTERM never lands between "execution handed to agentwatch" and "reported on stdout": what
the worker reported is exactly what it gave agentwatch. agentwatch's own SIGTERM handler must
then flush those records before the process dies (atexit does not run on a signal death).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

# Block SIGTERM before any thread exists: threads inherit the mask, so the signal can only be
# taken by the main thread, and only where it unblocks it (between executions).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

import agentwatch  # noqa: E402  (after the signal mask, on purpose)

_PACE_SECONDS = 0.02  # phase-2 pause between executions: bounds the load on a 2-core machine


class _Failure(Exception):
    """Raised by every fifth execution so both statuses appear."""


def _report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--cost", type=float, required=True, help="cost_usd of each LLM call")
    parser.add_argument("--flush-interval", type=float, default=0.2)
    args = parser.parse_args()

    agentwatch.configure(
        store_url=args.store,
        flush_interval=args.flush_interval,
        batch_size=5_000,  # a batch is written on flush_interval / flush(), not when full
    )

    @agentwatch.observe(name="checkout-service", capture_arguments=True)
    def handle_request(worker: int, seq: int) -> str:
        agentwatch.record_llm_call(
            "gpt-4o-mini",
            provider="openai",
            input_tokens=100,
            output_tokens=20,
            cost_usd=args.cost,
            duration=0.01,
        )
        if seq % 5 == 4:
            raise _Failure(f"request {seq} failed")
        return "ok"

    seq = 0
    total_cost = 0.0

    def run_one() -> None:
        nonlocal seq, total_cost
        try:
            handle_request(args.worker, seq)
            status = "completed"
        except _Failure:
            status = "failed"
        total_cost += args.cost
        _report(f"done {seq} {status} {args.cost!r}")
        seq += 1

    stop = threading.Event()
    commands: list[str] = []
    arrived = threading.Condition()

    def read_commands() -> None:
        for line in sys.stdin:
            with arrived:
                commands.append(line.strip())
                if line.strip() == "stop":
                    stop.set()
                arrived.notify_all()
        stop.set()  # stdin closed: the test is gone

    threading.Thread(target=read_commands, daemon=True).start()
    _report("ready")

    while True:
        with arrived:
            arrived.wait_for(lambda: bool(commands) or stop.is_set())
            command = commands.pop(0) if commands else "stop"
        if command.startswith("phase1"):
            for _ in range(int(command.split()[1])):
                run_one()
            _report(f"phase1 {agentwatch.flush(timeout=30)}")
        elif command == "phase2":
            while not stop.is_set():
                run_one()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                time.sleep(_PACE_SECONDS)  # pacing only; a SIGTERM is taken here
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            _report(f"stopped {seq} {total_cost!r} {agentwatch.flush(timeout=30)}")
            return
        else:
            _report(f"stopped {seq} {total_cost!r} {agentwatch.flush(timeout=30)}")
            return


if __name__ == "__main__":
    main()
