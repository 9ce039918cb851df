"""The one-GPU queue under load: 20 submissions from 5 concurrent clients all finish, one at a time, in order."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from typing import Any

from .conftest import API_KEYS, BackendProcess, read_events, submit, wait_for

CLIENTS = 5
JOBS_PER_CLIENT = 4  # = ALCH3MIST_MAX_QUEUED_PER_USER of the shared backend: every one is accepted


def test_twenty_concurrent_submissions_finish_in_fifo_order_none_lost(backend: BackendProcess) -> None:
    created: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client_thread(index: int) -> None:
        key = list(API_KEYS.values())[index % len(API_KEYS)]
        try:
            with backend.client(key) as client:
                barrier.wait()
                for n in range(JOBS_PER_CLIENT):
                    job = submit(client, request=f"a pebble of marble {index}-{n}", user=f"fifo-{index}", views=0)
                    with lock:
                        created.append(job)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len({job["id"] for job in created}) == CLIENTS * JOBS_PER_CLIENT

    with backend.admin() as client:  # the admin key reads every client's jobs
        last = max(created, key=lambda job: job["created_at"])
        events = read_events(client, last["id"], timeout=900)
        assert events[-1]["job"]["status"] == "succeeded"
        finished = [wait_for(client, job["id"], timeout=120) for job in created]

    assert [job["status"] for job in finished] == ["succeeded"] * len(created), [j["error"] for j in finished]
    in_submission_order = sorted(finished, key=lambda job: _t(job["created_at"]))
    started = [_t(job["started_at"]) for job in in_submission_order]
    assert started == sorted(started), "jobs start in the order they were submitted (FIFO)"
    for previous, following in itertools.pairwise(in_submission_order):
        assert _t(following["started_at"]) >= _t(previous["finished_at"]), "one generation at a time"
    positions = [e["queue_position"] for e in events if e["event"] == "status" and e["queue_position"]]
    assert positions == sorted(positions, reverse=True), "the last job's queue position only goes down"


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)
