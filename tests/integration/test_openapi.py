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
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
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


def _shrink_valid_jobs(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        for field, (small, maximum) in SMALL_JOB.items():
            value = body.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and small < value <= maximum:
                body[field] = small
    return body


@pytest.fixture(scope="module")
def api_schema(backend: BackendProcess) -> Iterator[Any]:
    schema = schemathesis.openapi.from_url(f"{backend.base_url}/openapi.json")
    schema.hooks.register_hook_with_name(_shrink_valid_jobs, "map_body")
    yield schema
    with backend.client() as client:  # leave the shared backend idle for the next tests
        for status in ("queued", "running"):
            for job in client.get("/v1/jobs", params={"status": status, "limit": 200}).json()["jobs"]:
                client.delete(f"/v1/jobs/{job['id']}")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_answers_5xx_and_matches_its_schema(api_schema: Any, mode: GenerationMode, subtests: Any) -> None:
    """Every operation of the live spec, positive and negative examples (schemathesis' own pytest loader relies on
    pytest internals that pytest 9 removed, so the operations are driven here with ``as_strategy``)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid (e.g. GET /healthz): covered by the positive run
        with subtests.test(msg=f"{operation.method.upper()} {operation.path}"):
            _run_operation(operation, api_schema, mode)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_browser_routes_with_only_a_token_never_answer_5xx(
    api_schema: Any, mode: GenerationMode, subtests: Any
) -> None:
    """The routes a browser loads, called the way a browser does — no key, only the generated ``token`` (and job id,
    file name, ``inline``) — so the link check itself is fuzzed, not skipped because a key was present."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    browser = [op for op in operations if "token" in {p.get("name") for p in op.definition.raw.get("parameters", [])}]
    assert len(browser) == 3
    for operation in browser:
        with subtests.test(msg=f"{operation.method.upper()} {operation.path} (token only)"):
            _run_operation(operation, api_schema, mode, headers={})


def _has_inputs(operation: Any) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


def _run_operation(
    operation: Any, api_schema: Any, mode: GenerationMode, headers: dict[str, str] | None = None
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, hooks=api_schema.hooks))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)  # fmt: skip
    def check(case: Any) -> None:
        response = case.call(headers=AUTH if headers is None else headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    check()
