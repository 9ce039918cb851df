"""API-key checks and the caller: named and admin keys, constant-time matching against every key, the end user a
key vouches for, open mode without keys."""

from __future__ import annotations

import pytest
from alch3mist.api.deps import check_key, match_key, require_caller, vouched_user
from alch3mist.api.errors import ApiError
from alch3mist.config import ApiKey, Settings
from alch3mist.jobs.policy import KEY_ALONE, Caller
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr


def _settings(keys: str) -> Settings:
    return Settings(_env_file=None, api_keys=SecretStr(keys))  # type: ignore[call-arg]


def _bearer(key: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


def test_named_bare_and_admin_keys_resolve_to_their_names() -> None:
    settings = _settings("webui:abc, tool:def,ghi, ops@admin:jkl")
    assert check_key(settings, _bearer("abc")) == ApiKey("webui", "abc")
    assert check_key(settings, _bearer("def")) == ApiKey("tool", "def")
    assert check_key(settings, _bearer("ghi")) == ApiKey("key3", "ghi")
    assert check_key(settings, _bearer("jkl")) == ApiKey("ops", "jkl", admin=True)


@pytest.mark.parametrize("presented", ["", "ab", "abcd", "ABC", "webui:abc", "abc\u00b2", "\udcff"])
def test_wrong_keys_are_401(presented: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_key(_settings("webui:abc"), _bearer(presented))
    assert caught.value.status_code == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_missing_key_is_401_with_a_hint() -> None:
    with pytest.raises(ApiError, match="Authorization: Bearer"):
        check_key(_settings("webui:abc"), None)


def test_no_keys_configured_means_anonymous_callers() -> None:
    assert check_key(_settings(""), None) is None
    assert require_caller(_settings(""), None, "u1") == Caller(key_name=None, user="u1", admin=False)


def test_the_caller_is_the_key_and_the_end_user_it_vouches_for() -> None:
    settings = _settings("webui:abc,ops@admin:x")
    assert require_caller(settings, _bearer("abc"), None) == Caller("webui", KEY_ALONE, admin=False)
    assert require_caller(settings, _bearer("abc"), "u1") == Caller("webui", "u1", admin=False)
    assert require_caller(settings, _bearer("x"), None).admin


def test_the_body_user_and_the_header_must_agree() -> None:
    header = Caller("webui", "u1")
    assert vouched_user(header, None) == header and vouched_user(header, "u1") == header
    assert vouched_user(Caller("webui"), "u2") == Caller("webui", "u2")
    with pytest.raises(ApiError, match="differs from the X-Alch3mist-User header"):
        vouched_user(header, "u2")


def test_match_key_checks_every_key() -> None:
    keys = {"a": ApiKey("a", "same"), "b": ApiKey("b", "other")}
    assert match_key(keys, "other") == keys["b"]
    assert match_key(keys, "y") is None
