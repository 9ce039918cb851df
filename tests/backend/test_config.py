"""Settings the safety features read: API keys (named, bare, admin), per-key limits."""

from __future__ import annotations

from typing import Any

import pytest
from alch3mist.config import ApiKey, Settings
from pydantic import SecretStr


def _settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_api_keys_named_bare_and_admin() -> None:
    keys = _settings(api_keys=SecretStr("webui:abc, ghi ,ops@admin:k:with:colons")).parsed_api_keys()
    assert keys == {
        "webui": ApiKey("webui", "abc"),
        "key2": ApiKey("key2", "ghi"),
        "ops": ApiKey("ops", "k:with:colons", admin=True),
    }


@pytest.mark.parametrize(
    "entry", ["ops@root:sekrit-1", "we bui:sekrit-1", "a:", "a:sekrit-0,a:sekrit-1", "@admin:sekrit-1"]
)
def test_malformed_keys_are_refused_without_showing_the_key(entry: str) -> None:
    with pytest.raises(ValueError, match="ALCH3MIST_API_KEYS entry") as caught:
        _settings(api_keys=SecretStr(entry)).parsed_api_keys()
    assert "sekrit" not in str(caught.value)


def test_limits_for_a_key_override_the_defaults() -> None:
    settings = _settings(max_steps=40, key_limits={"tool": {"max_steps": 20, "max_active": 2}})
    assert settings.limits_for("tool").max_steps == 20 and settings.limits_for("tool").max_active == 2
    assert settings.limits_for("webui").max_steps == 40 and settings.limits_for(None).max_steps == 40
    with pytest.raises(ValueError, match="unknown limit"):
        _settings(key_limits={"tool": {"max_stepz": 1}}).limits_for("tool")
    with pytest.raises(ValueError, match=r"ALCH3MIST_KEY_LIMITS.*max_steps"):
        _settings(key_limits={"tool": {"max_steps": 500}}).limits_for("tool")


def test_chat_links_live_as_long_as_the_job() -> None:
    assert _settings(retention_days=30).chat_link_ttl_s == 30 * 86400
    assert _settings(retention_days=0).chat_link_ttl_s is None
