"""Schemathesis against the live ``/openapi.json``: no 5xx, status codes, content types and bodies as documented.

Examples are bounded (``MAX_EXAMPLES`` per operation) so the run stays short, and generated jobs that would be
valid are shrunk to the smallest sizes (values outside the schema are left alone, so invalid input is still sent):
the point is the API's answers, not a queue of huge CPU jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import API_KEYS, BackendProcess

MAX_EXAMPLES = 12
AUTH = {"Authorization": f"Bearer {API_KEYS['webui']}"}
# field: (largest value a generated valid job may keep, the schema's maximum)
SMALL_JOB = {"steps": (2, 100), "edit_steps": (2, 100), "size": (64, 2048), "texture_size": (256, 4096),
             "views": (1, 36), "view_size": (64, 2048)}  # fmt: skip


@pytest.fixture(scope="module")
def api_schema(backend: BackendProcess) -> Iterator[Any]:
    schema = schemathesis.openapi.from_url(f"{backend.base_url}/openapi.json")

    @schema.hook
    def map_body(context: Any, body: Any) -> Any:
        if isinstance(body, dict):
            for field, (small, maximum) in SMALL_JOB.items():
                value = body.get(field)
                if isinstance(value, int) and not isinstance(value, bool) and small < value <= maximum:
                    body[field] = small
        return body

    yield schema
    with backend.client() as client:  # leave the shared backend idle for the next tests
        for status in ("queued", "running"):
            for job in client.get("/v1/jobs", params={"status": status, "limit": 200}).json()["jobs"]:
                client.delete(f"/v1/jobs/{job['id']}")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_answers_5xx_and_matches_its_schema(case: Any) -> None:
    response = case.call(headers=AUTH, timeout=30)
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
