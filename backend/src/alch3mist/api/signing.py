"""Signed, expiring browser links.

A sandboxed chat iframe cannot send the API key, so every URL handed to a browser (viewer page, images, GLB,
the viewer bundle) carries ``?token=<expiry>.<signature>`` instead. The signature is itsdangerous' HMAC-SHA256
``Signer`` over the expiry, salted with the job id and the resource the link is for (an artifact path, ``viewer`` or
``bundle``) and keyed with ``Settings.link_secret``: a token for one file of one job opens nothing else, and it stops
working at its expiry. Links are bearer links: whoever holds one may load that one resource until then.

Parsing is strict and total: any text (non-ASCII digits such as ``²``, non-ASCII signatures, control characters,
megabytes of junk) is ``"invalid"``, never an exception — a link check must not become a 500.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from itsdangerous import BadSignature, Signer

__all__ = ["LinkSigner", "TokenCheck"]

TokenCheck = Literal["ok", "expired", "invalid"]
NEVER = 0  # the expiry written into a token that does not expire
MAX_TOKEN_CHARS = 200  # a genuine token is ~60 characters
_TOKEN = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{20,100})", re.ASCII)


@dataclass(frozen=True)
class LinkSigner:
    """Signs and checks link tokens; ``clock`` (Unix seconds) is injectable, so tests can move time."""

    secret: bytes
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def sign(self, job_id: str, resource: str, ttl_s: int | None) -> str:
        """A token for ``resource`` of ``job_id``, valid ``ttl_s`` seconds from now (None: until the job is gone)."""
        expires = NEVER if ttl_s is None else int(self.clock()) + ttl_s
        return self._signer(job_id, resource).sign(str(expires)).decode("ascii")

    def check(self, token: str, job_id: str, resource: str) -> TokenCheck:
        """``ok``, ``expired`` (genuine but too old) or ``invalid`` (malformed, tampered, other job/resource)."""
        match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
        if match is None:
            return "invalid"
        try:
            self._signer(job_id, resource).unsign(token.encode("ascii"))
        except (BadSignature, UnicodeEncodeError):
            return "invalid"
        expires = int(match.group(1))
        if expires != NEVER and self.clock() > expires:
            return "expired"
        return "ok"

    def _signer(self, job_id: str, resource: str) -> Signer:
        # The salt binds the token to one job and one resource; surrogates in a decoded path cannot break encoding.
        salt = f"alch3mist-link-v2\n{job_id}\n{resource}".encode("utf-8", "surrogatepass")
        return Signer(self.secret, salt=salt, sep=".", key_derivation="hmac", digest_method=hashlib.sha256)
