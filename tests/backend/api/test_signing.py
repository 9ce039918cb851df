"""Signed links: bound to job and resource, expire, refuse tampering — and never raise on any text."""

from __future__ import annotations

from alch3mist.api.signing import LinkSigner
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = [1000.0]
SIGNER = LinkSigner(b"secret", clock=lambda: NOW[0])


def _sign(job_id: str = "job1", resource: str = "base.png", ttl_s: int | None = 60) -> str:
    NOW[0] = 1000.0
    return SIGNER.sign(job_id, resource, ttl_s)


def _check(token: str, job_id: str = "job1", resource: str = "base.png", at: float = 1000.0) -> str:
    NOW[0] = at
    return SIGNER.check(token, job_id, resource)


def test_valid_token_checks_ok_until_it_expires() -> None:
    token = _sign()
    assert _check(token, at=1059) == "ok"
    assert _check(token, at=1061) == "expired"


def test_a_token_without_expiry_stays_valid() -> None:
    assert _check(_sign(ttl_s=None), at=1e12) == "ok"


def test_token_is_bound_to_job_and_resource() -> None:
    token = _sign()
    assert _check(token, job_id="job2") == "invalid"
    assert _check(token, resource="model.glb") == "invalid"


def test_tampered_tokens_are_invalid() -> None:
    token = _sign()
    expires, mac = token.split(".")
    later = f"{int(expires) + 3600}.{mac}"  # pushing the expiry breaks the signature
    never = f"0.{mac}"  # so does claiming "no expiry"
    flipped = f"{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    for bad in (later, never, flipped, "", ".", "abc.def", f"{expires}", "9" * 40 + "." + mac, token + "\n"):
        assert _check(bad) == "invalid", bad


def test_non_ascii_tokens_are_invalid_not_errors() -> None:
    """Issue 10 item 7: ``"²".isdigit()`` is True and ``int("²")`` raises; a non-ASCII MAC made
    ``hmac.compare_digest`` raise TypeError. Both were unauthenticated 500s."""
    token = _sign()
    expires, mac = token.split(".")
    for bad in (f"{expires}².{mac}", f"²³.{mac}", f"{expires}.{mac[:-1]}é", f"{expires}.{'ß' * len(mac)}", "\x00.\x00"):
        assert _check(bad) == "invalid", bad


def test_other_secret_is_invalid() -> None:
    token = LinkSigner(b"other", clock=lambda: 1000.0).sign("job1", "base.png", 60)
    assert _check(token) == "invalid"


@settings(max_examples=300, deadline=None, database=None)
@given(token=st.text(max_size=300), job_id=st.text(max_size=40), resource=st.text(max_size=80))
def test_any_text_is_a_verdict_never_an_exception(token: str, job_id: str, resource: str) -> None:
    assert _check(token, job_id, resource) in ("invalid", "expired", "ok")
