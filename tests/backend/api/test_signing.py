"""Signed links: bound to job and resource, expire, refuse tampering."""

from __future__ import annotations

from alch3mist.api.signing import LinkSigner

SIGNER = LinkSigner(b"secret", ttl_s=60)


def test_valid_token_checks_ok() -> None:
    token = SIGNER.sign("job1", "base.png", now=1000)
    assert SIGNER.check(token, "job1", "base.png", now=1059) == "ok"


def test_token_expires() -> None:
    token = SIGNER.sign("job1", "base.png", now=1000)
    assert SIGNER.check(token, "job1", "base.png", now=1061) == "expired"


def test_token_is_bound_to_job_and_resource() -> None:
    token = SIGNER.sign("job1", "base.png", now=1000)
    assert SIGNER.check(token, "job2", "base.png", now=1000) == "invalid"
    assert SIGNER.check(token, "job1", "model.glb", now=1000) == "invalid"


def test_tampered_tokens_are_invalid() -> None:
    token = SIGNER.sign("job1", "base.png", now=1000)
    expires, mac = token.split(".")
    later = f"{int(expires) + 3600}.{mac}"  # pushing the expiry breaks the signature
    flipped = f"{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    for bad in (later, flipped, "", ".", "abc.def", f"{expires}", "9" * 40 + "." + mac):
        assert SIGNER.check(bad, "job1", "base.png", now=1000) == "invalid", bad


def test_other_secret_is_invalid() -> None:
    token = LinkSigner(b"other", ttl_s=60).sign("job1", "base.png", now=1000)
    assert SIGNER.check(token, "job1", "base.png", now=1000) == "invalid"
