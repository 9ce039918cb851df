"""API-key checks: named keys, constant-time matching against every key, open mode without keys."""

from __future__ import annotations

import pytest
from alch3mist.api.deps import check_key, match_key
from alch3mist.api.errors import ApiError
from alch3mist.config import Settings
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr


def _settings(keys: str) -> Settings:
    return Settings(_env_file=None, api_keys=SecretStr(keys))  # type: ignore[call-arg]


def _bearer(key: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


def test_named_and_bare_keys_resolve_to_their_names() -> None:
    settings = _settings("webui:abc, tool:def,ghi")
    assert check_key(settings, _bearer("abc")).key_name == "webui"
    assert check_key(settings, _bearer("def")).key_name == "tool"
    assert check_key(settings, _bearer("ghi")).key_name == "key3"


@pytest.mark.parametrize("presented", ["", "ab", "abcd", "ABC", "webui:abc"])
def test_wrong_keys_are_401(presented: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_key(_settings("webui:abc"), _bearer(presented))
    assert caught.value.status_code == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_missing_key_is_401_with_a_hint() -> None:
    with pytest.raises(ApiError, match="Authorization: Bearer"):
        check_key(_settings("webui:abc"), None)


def test_no_keys_configured_means_open() -> None:
    assert check_key(_settings(""), None).key_name is None


def test_match_key_checks_every_key() -> None:
    assert match_key({"a": "same", "b": "other"}, "other") == "b"
    assert match_key({"a": "x"}, "y") is None
