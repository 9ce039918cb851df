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


def test_every_error_leaves_as_json_never_a_traceback() -> None:
    from alch3mist.api.errors import ApiError, install_error_handlers
    from alch3mist.errors import InvalidRequest
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/bad")
    def bad() -> None:
        raise InvalidRequest("no good")

    @app.get("/gone")
    def gone() -> None:
        raise ApiError(404, "job_not_found", "no such job")

    client = TestClient(app, raise_server_exceptions=False)
    boom_response = client.get("/boom")
    assert boom_response.status_code == 500 and boom_response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in boom_response.text and "Traceback" not in boom_response.text
    assert client.get("/bad").json() == {"error": {"code": "invalid_request", "message": "no good"}}
    assert client.get("/gone").status_code == 404
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"
    assert client.post("/bad").json()["error"]["code"] == "method_not_allowed"
