"""Signed, expiring browser links.

A sandboxed chat iframe cannot send the API key, so every URL handed to a browser (viewer page, images, GLB,
the viewer bundle) carries ``?token=<exp>.<signature>`` instead. The signature is an HMAC-SHA256 over the job id,
the resource the link is for (an artifact path, ``viewer`` or ``bundle``) and the expiry time, keyed with
``Settings.link_secret``: a token for one file of one job opens nothing else, and it stops working at ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["LinkSigner", "TokenCheck"]

TokenCheck = Literal["ok", "expired", "invalid"]


@dataclass(frozen=True)
class LinkSigner:
    secret: bytes
    ttl_s: int

    def sign(self, job_id: str, resource: str, now: float | None = None) -> str:
        """A token for ``resource`` of ``job_id`` valid for ``ttl_s`` seconds from ``now``."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return f"{expires}.{self._mac(job_id, resource, expires)}"

    def check(self, token: str, job_id: str, resource: str, now: float | None = None) -> TokenCheck:
        """``ok``, ``expired`` (genuine but too old) or ``invalid`` (malformed, tampered, other job/resource)."""
        expires_text, sep, mac = token.partition(".")
        if not sep or not expires_text.isdigit() or len(expires_text) > 12:
            return "invalid"
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(job_id, resource, expires)):
            return "invalid"
        if (time.time() if now is None else now) > expires:
            return "expired"
        return "ok"

    def _mac(self, job_id: str, resource: str, expires: int) -> str:
        message = f"v1\n{job_id}\n{resource}\n{expires}".encode()
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
