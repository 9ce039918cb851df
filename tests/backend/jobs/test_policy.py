"""Ownership, admission and ceilings against a real SQLite job store: who sees a job, and every quota in order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from alch3mist.config import Limits, Settings
from alch3mist.errors import JobNotFound, OverLimit, QueueFull, RateLimited, ServiceBusy
from alch3mist.jobs.policy import KEY_ALONE, Caller, admit, check_ceilings, get_owned
from alch3mist.jobs.store import JobRecord, JobStore, new_job_id


def _settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def _limits(**fields: int) -> Limits:
    return _settings().limits_for(None).model_copy(update=fields)


def _add(store: JobStore, caller: Caller, status: str = "queued", age_s: float = 0.0) -> JobRecord:
    record = JobRecord(id=new_job_id(), status=status, key_name=caller.key_name, user=caller.user)
    record.created_at = time.time() - age_s
    return store.insert(record)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path)


def test_only_the_owner_or_an_admin_sees_a_job() -> None:
    record = JobRecord(id="a" * 32, key_name="webui", user="ana")
    assert get_owned(record, Caller("webui", "ana")) is record
    assert get_owned(record, Caller("tool", "x", admin=True)) is record
    for stranger in (Caller("webui", "bo"), Caller("tool", "ana"), Caller("webui"), Caller(None, "ana")):
        with pytest.raises(JobNotFound) as caught:
            get_owned(record, stranger)
        assert caught.value.message == f"no job with id {'a' * 32!r}"  # the very answer a missing id gets


def test_a_keys_own_jobs_are_a_distinct_owner_not_a_wildcard() -> None:
    alone = JobRecord(id="b" * 32, key_name="webui", user=KEY_ALONE)
    assert Caller("webui").owns(alone)
    assert not Caller("webui", "ana").owns(alone)
    assert not Caller("webui").owns(JobRecord(id="c" * 32, key_name="webui", user="ana"))


def test_ceilings_name_the_limit() -> None:
    limits = _limits(max_steps=10, max_size=128, max_views=2, max_view_size=96, max_texture_size=512)
    check_ceilings({"steps": 10, "edit_steps": 10, "size": 128, "views": 2, "view_size": 96}, limits, "tool")
    for field, value, name in (
        ("steps", 11, "max_steps"),
        ("edit_steps", 11, "max_steps"),
        ("size", 144, "max_size"),
        ("views", 3, "max_views"),
        ("view_size", 128, "max_view_size"),
        ("texture_size", 1024, "max_texture_size"),
    ):
        with pytest.raises(OverLimit, match=f"{field}: {value} is above the ceiling {name}="):
            check_ceilings({field: value}, limits, "tool")


def test_the_whole_queue_has_a_cap_with_retry_after(store: JobStore) -> None:
    settings = _settings(max_queue=3, queue_retry_after_s=42)
    for user in ("a", "b", "c"):
        _add(store, Caller("webui", user))
    with pytest.raises(ServiceBusy) as caught:
        admit(store, Caller("tool", "d"), _limits(), settings)
    assert caught.value.http_status == 503 and caught.value.retry_after_s == 42


def test_rotating_or_leaving_out_the_user_never_passes_the_keys_quota(store: JobStore) -> None:
    """Issue 10 item 4: the per-user limit applied only when a user was named, so rotating it had no bound."""
    limits = _limits(max_active=3, max_active_per_user=1)
    for user in ("u1", "u2", "u3"):
        admit(store, Caller("webui", user), limits, _settings())
        _add(store, Caller("webui", user))
    for rotated in (Caller("webui", "u4"), Caller("webui")):
        with pytest.raises(QueueFull, match=r"API key 'webui'.* max_active is 3"):
            admit(store, rotated, limits, _settings())
    admit(store, Caller("tool", "u1"), limits, _settings())  # another key has its own quota


def test_per_user_limits_apply_inside_the_key_and_to_the_key_alone(store: JobStore) -> None:
    limits = _limits(max_active_per_user=2)
    for caller in (Caller("webui", "ana"), Caller("webui")):
        for _ in range(2):
            admit(store, caller, limits, _settings())
            _add(store, caller)
        with pytest.raises(QueueFull, match="max_active_per_user is 2"):
            admit(store, caller, limits, _settings())
    finished = Caller("webui", "bo")
    for _ in range(5):
        _add(store, finished, status="succeeded")
    admit(store, finished, limits, _settings())  # finished jobs are not active


def test_hourly_quotas_count_every_job_started_in_the_last_hour(store: JobStore) -> None:
    limits = _limits(jobs_per_hour=4, user_jobs_per_hour=2)
    ana = Caller("webui", "ana")
    _add(store, ana, status="cancelled", age_s=600)  # cancelled still counts: it was started
    _add(store, ana, status="succeeded", age_s=1800)
    _add(store, ana, status="succeeded", age_s=7200)  # over an hour ago: does not count
    with pytest.raises(RateLimited, match="started 2 jobs in the last hour") as caught:
        admit(store, ana, limits, _settings())
    assert caught.value.http_status == 429 and caught.value.retry_after_s > 0
    for user in ("bo", "cy"):
        _add(store, Caller("webui", user), status="succeeded")
    with pytest.raises(RateLimited, match="API key 'webui' started 4 jobs"):
        admit(store, Caller("webui", "dee"), limits, _settings())


def test_retry_after_is_when_the_oldest_job_of_the_hour_leaves_it(store: JobStore) -> None:
    ana = Caller("webui", "ana")
    _add(store, ana, status="succeeded", age_s=3000)  # leaves the hour in 600 s: then a place is free
    _add(store, ana, status="succeeded", age_s=100)
    now = time.time()  # a moment after the jobs' times: the wait rounds up to 600 s
    with pytest.raises(RateLimited, match="try again in 600 s") as caught:
        admit(store, ana, _limits(user_jobs_per_hour=2), _settings(), now=now)
    assert caught.value.retry_after_s == 600
    admit(store, ana, _limits(user_jobs_per_hour=2), _settings(), now=now + 601)  # it has left: admitted


def test_zero_means_no_limit(store: JobStore) -> None:
    limits = _limits(max_active=0, jobs_per_hour=0, max_active_per_user=0, user_jobs_per_hour=0)
    for _ in range(20):
        _add(store, Caller("webui", "ana"))
    admit(store, Caller("webui", "ana"), limits, _settings())
