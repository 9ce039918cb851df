"""The Alch3mist tool inside a real Open WebUI 0.12.4."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OpenWebUI
from tests.servers.llm_server import RunningServer

pytestmark = pytest.mark.e2e


def test_tool_spec_is_what_a_model_needs(owui: OpenWebUI) -> None:
    with owui.client() as client:
        # 0.12.4 keeps a local tool's specs in its record (GET .../id/{id}/specs is for MCP servers only).
        response = client.get("/api/v1/tools/export")
        assert response.status_code == 200, response.text
        specs = next(tool["specs"] for tool in response.json() if tool["id"] == "alch3mist_tool")
    assert [spec["name"] for spec in specs] == ["generate_3d_asset"]
    (spec,) = specs
    assert "3D model" in spec["description"] and "material" in spec["description"]
    params = spec["parameters"]
    # no __user__ / __event_emitter__ / __files__ leak into the spec
    assert set(params["properties"]) == {"request", "seed", "mesh_url"}
    assert params["required"] == ["request"]
    assert params["properties"]["request"]["type"] == "string" and params["properties"]["request"]["description"]
    assert params["properties"]["seed"]["type"] == "integer"
    assert params["properties"]["mesh_url"]["type"] == "string" and params["properties"]["mesh_url"]["description"]


def test_tool_valves_are_documented(owui: OpenWebUI) -> None:
    with owui.client() as client:
        spec = client.get("/api/v1/tools/id/alch3mist_tool/valves/spec").json()
    assert spec["properties"]["BACKEND_API_KEY"]["input"] == {"type": "password"}
    assert all(prop.get("description") for prop in spec["properties"].values())


def test_a_tool_call_produces_the_embed(owui: OpenWebUI, llm: RunningServer) -> None:
    _, _, message = owui.chat("tool-caller", "a chair made of crocodile leather", tool_ids=["alch3mist_tool"])

    # Open WebUI 0.12.4 stores a tool's embeds on the function_call_output item of the message's output.
    outputs = message.get("output") or []
    calls = [item for item in outputs if item.get("type") == "function_call"]
    assert [call["name"] for call in calls] == ["generate_3d_asset"], outputs
    embeds = [embed for item in outputs for embed in item.get("embeds") or []]
    assert len(embeds) == 1 and "<model-viewer" in embeds[0], outputs
    # the context string reached the model, which answered from it
    assert "Chair: crocodile leather" in message["content"]
