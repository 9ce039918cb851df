"""Validation errors read as one clear sentence."""

from __future__ import annotations

import pytest
from alch3mist.api.errors import validation_message
from alch3mist.api.schemas import JobCreate
from pydantic import ValidationError


def _message(data: object) -> str:
    with pytest.raises(ValidationError) as caught:
        JobCreate.model_validate(data)
    return validation_message(caught.value.errors())


def test_field_errors_name_the_field() -> None:
    message = _message({"seed": -1, "steps": 1000})
    assert "seed: must be at least 0" in message
    assert "steps: must be at most 100" in message


def test_nested_field_path() -> None:
    assert "lora.scale: must be at most 2" in _message({"lora": {"scale": 5}})


def test_special_cases() -> None:
    assert validation_message([{"loc": ("body",), "type": "missing", "msg": "Field required"}]) == (
        "request body is missing: send a JSON object"
    )
    assert "not valid JSON" in validation_message([{"loc": ("body", 3), "type": "json_invalid", "msg": "x"}])
