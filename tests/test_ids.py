"""Execution ids: the text form users see, time order, and uniqueness across fork/seed."""

from __future__ import annotations

import os
import random
import re
import sys
import time

import pytest

from agentwatch.ids import new_execution_id, short_id

EXEC_ID = re.compile(r"^exec_[0-9a-f]{32}$")


def test_ids_keep_the_text_form() -> None:
    ex_id = new_execution_id()
    assert EXEC_ID.match(ex_id)
    assert short_id(ex_id) == ex_id[:23]


def test_short_forms_of_runs_started_together_differ() -> None:
    ids = [new_execution_id() for _ in range(2_000)]  # mostly within one millisecond or two
    # 24 random bits after the time: two of ~1,000 ids of one millisecond share a short form
    # about once in ten such bursts (the birthday bound), and the console then lists both as
    # candidates. What must hold is that such collisions stay rare, never systematic.
    assert len({short_id(i) for i in ids}) >= len(ids) - 5


def test_ids_start_with_the_time_so_later_runs_sort_after() -> None:
    before = new_execution_id()
    time.sleep(0.003)
    after = new_execution_id()
    assert before < after
    millis = int(after[5:17], 16)
    assert abs(millis / 1000 - time.time()) < 5


def test_many_ids_are_distinct() -> None:
    ids = {new_execution_id() for _ in range(100_000)}
    assert len(ids) == 100_000


def test_seeding_the_host_random_does_not_repeat_ids() -> None:
    random.seed(7)
    first = [new_execution_id() for _ in range(50)]
    random.seed(7)
    second = [new_execution_id() for _ in range(50)]
    assert not {i[17:] for i in first} & {i[17:] for i in second}


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")
def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next ids and leave without running pytest's atexit
        try:
            os.write(writer, " ".join(new_execution_id() for _ in range(200)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    parent = {new_execution_id() for _ in range(200)}
    with os.fdopen(reader, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child) == 200
    # The random part (after the 12 hex digits of time) would repeat without a reseed.
    assert not {i[17:] for i in parent} & {i[17:] for i in child}
