"""Startup refuses settings that would expose the service (issue 10 item 9), before anything loads."""

from __future__ import annotations

from typing import Any

import pytest
from alch3mist.api.main import check_settings
from alch3mist.config import Settings
from alch3mist.errors import UnsafeConfiguration
from pydantic import SecretStr


def _settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gpu.example.org"])
def test_no_keys_on_a_public_address_is_refused(host: str) -> None:
    with pytest.raises(UnsafeConfiguration, match="--insecure-no-auth"):
        check_settings(_settings(host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_no_keys_on_loopback_is_allowed(host: str) -> None:
    check_settings(_settings(host=host))


def test_keys_or_the_explicit_flag_allow_a_public_address() -> None:
    check_settings(_settings(host="0.0.0.0", api_keys=SecretStr("webui:abc")))
    check_settings(_settings(host="0.0.0.0", insecure_no_auth=True))


def test_malformed_keys_and_limits_for_unknown_keys_are_refused() -> None:
    with pytest.raises(UnsafeConfiguration, match="ALCH3MIST_API_KEYS entry 1"):
        check_settings(_settings(api_keys=SecretStr("a b:c")))
    with pytest.raises(UnsafeConfiguration, match="names 'tool', which is not a key"):
        check_settings(_settings(api_keys=SecretStr("webui:abc"), key_limits={"tool": {"max_steps": 10}}))
    with pytest.raises(UnsafeConfiguration, match="max_steps"):
        check_settings(_settings(max_steps=10, api_keys=SecretStr("webui:abc"), key_limits={"webui": {"max_steps": 0}}))
