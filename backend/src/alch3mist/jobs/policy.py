"""Who may see and start which jobs: owners, quotas and parameter ceilings.

A job belongs to an **owner**: the API key that submitted it and the end user that key vouches for (``user`` in the
body or the ``X-Alch3mist-User`` header, an opaque id such as Open WebUI's user id). A key's requests that name no
end user belong to the key alone (``KEY_ALONE``): a distinct owner, not a wildcard. Only the owner reads, lists,
follows, cancels or refines a job; to anyone else it does not exist (``JobNotFound``, the same answer as a missing
id). An admin key (``name@admin:key`` in ``ALCH3MIST_API_KEYS``) sees every job.

Admission, in order (``admit``), each against ``Settings.limits_for(key)``:

1. the whole queue: at most ``ALCH3MIST_MAX_QUEUE`` queued jobs, else ``ServiceBusy`` (503 + Retry-After);
2. the key: queued + running jobs and jobs started in the last hour, all its end users together (``QueueFull`` /
   ``RateLimited``, 429) — so rotating or leaving out ``user`` never gets past the key's quota;
3. the end user inside the key: the same two counts for that owner alone.

Parameter ceilings (``check_ceilings``) bound what a caller may ask for; above one is ``OverLimit`` (422) naming it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import Limits, Settings
from ..errors import JobNotFound, OverLimit, QueueFull, RateLimited, ServiceBusy
from .store import JobRecord

__all__ = ["CEILINGS", "KEY_ALONE", "Caller", "OwnerCounts", "admit", "check_ceilings", "get_owned"]

KEY_ALONE = ""  # the end user of a key's requests that name none
CEILINGS = {  # JobCreate field -> the Limits field that bounds it
    "steps": "max_steps",
    "edit_steps": "max_steps",
    "size": "max_size",
    "views": "max_views",
    "view_size": "max_view_size",
    "texture_size": "max_texture_size",
}
HOUR_S = 3600.0


@dataclass(frozen=True)
class Caller:
    """Who is asking: the API key's name (None when the service runs without keys), the end user it vouches for,
    and whether the key is an admin key."""

    key_name: str | None
    user: str = KEY_ALONE
    admin: bool = False

    def owns(self, record: JobRecord) -> bool:
        return self.admin or (record.key_name == self.key_name and (record.user or KEY_ALONE) == self.user)


def get_owned(record: JobRecord, caller: Caller) -> JobRecord:
    """``record`` if ``caller`` may see it; else ``JobNotFound`` with the very answer a missing id gets."""
    if not caller.owns(record):
        raise JobNotFound(f"no job with id {record.id!r}")
    return record


def check_ceilings(params: dict[str, Any], limits: Limits, key_name: str | None, prefix: str = "") -> None:
    """Raise ``OverLimit`` naming the first parameter above the key's ceiling (``prefix``: where ``params`` sit in
    the body, e.g. ``texture.``)."""
    for field, ceiling_name in CEILINGS.items():
        value, ceiling = params.get(field), getattr(limits, ceiling_name)
        if isinstance(value, int) and value > ceiling:
            raise OverLimit(
                f"{prefix}{field}: {value} is above the ceiling {ceiling_name}={ceiling} of API key {key_name!r} "
                f"(ALCH3MIST_{ceiling_name.upper()}, or ALCH3MIST_KEY_LIMITS for this key)"
            )


class OwnerCounts(Protocol):
    """The job-store queries admission needs (``JobStore`` and the cluster's store both have them)."""

    def count_active(self, *, key_name: str | None = None, user: str | None = None) -> int: ...

    def count_created_since(self, since: float, *, key_name: str | None = None, user: str | None = None) -> int: ...

    def oldest_created_since(
        self, since: float, *, key_name: str | None = None, user: str | None = None
    ) -> float | None: ...

    def count_queued(self) -> int: ...


def admit(store: OwnerCounts, caller: Caller, limits: Limits, settings: Settings, now: float | None = None) -> None:
    """Raise unless one more job of ``caller`` fits: the whole queue, then the key's quota, then the end user's.

    Call it and insert the job under one lock, or two requests can both take the last place.
    """
    now = time.time() if now is None else now
    # 1. The whole queue
    queued = store.count_queued()
    if queued >= settings.max_queue:
        raise ServiceBusy(
            f"the queue is full ({queued} jobs waiting, ALCH3MIST_MAX_QUEUE={settings.max_queue}); try again later",
            retry_after_s=settings.queue_retry_after_s,
        )
    # 2. The API key, all its end users together
    key, who = caller.key_name, f"API key {caller.key_name!r}"
    _check_active(store.count_active(key_name=key), limits.max_active, who, "max_active")
    _check_hourly(store, now, who, limits.jobs_per_hour, "jobs_per_hour", key_name=key)
    # 3. The end user inside the key
    who = f"end user {caller.user!r} of {who}" if caller.user != KEY_ALONE else f"{who} (no end user named)"
    active = store.count_active(key_name=key, user=caller.user)
    _check_active(active, limits.max_active_per_user, who, "max_active_per_user")
    _check_hourly(store, now, who, limits.user_jobs_per_hour, "user_jobs_per_hour", key_name=key, user=caller.user)


def _check_active(count: int, limit: int, who: str, limit_name: str) -> None:
    if limit > 0 and count >= limit:
        raise QueueFull(
            f"{who} already has {count} queued or running jobs (the limit {limit_name} is {limit}); "
            "wait for one to finish or cancel one"
        )


def _check_hourly(
    store: OwnerCounts,
    now: float,
    who: str,
    limit: int,
    limit_name: str,
    *,
    key_name: str | None,
    user: str | None = None,
) -> None:
    """Raise ``RateLimited`` when ``limit`` jobs were started in the last hour, with the seconds until the oldest of
    them leaves the window."""
    hour_ago = now - HOUR_S
    count = store.count_created_since(hour_ago, key_name=key_name, user=user)
    if limit <= 0 or count < limit:
        return
    oldest = store.oldest_created_since(hour_ago, key_name=key_name, user=user)
    retry_after = max(1, math.ceil((oldest if oldest is not None else now) + HOUR_S - now))
    raise RateLimited(
        f"{who} started {count} jobs in the last hour (the limit {limit_name} is {limit}); try again in "
        f"{retry_after} s",
        retry_after_s=retry_after,
    )
