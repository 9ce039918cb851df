"""Our node schemas and exported workflows against something we did not write: the official ComfyUI templates.

``comfyui-workflow-templates-json`` (pinned in requirements-dev.txt) ships the templates the ComfyUI frontend offers,
saved by the frontend itself: link inputs with their types, outputs, ``widgets_values`` and, in recent templates,
``widgets_values_named`` (the widget names in order). Every node type we use must appear there with the same link
inputs, outputs and widget order, and every link of our workflows must join types the templates join.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from alch3mist.comfyui.nodes import FRONTEND_ONLY, NODES, NodeSchema
from alch3mist.comfyui.workflows import WORKFLOW_NAMES, build_workflow

REFERENCE_TEMPLATES = (
    "flux_dev_full_text_to_image",
    "flux_kontext_dev_basic",
    "3d_hunyuan3d_image_to_model",
    "3d_hunyuan3d-v2.1",
)


def templates_dir() -> Path:
    import comfyui_workflow_templates_json

    return Path(comfyui_workflow_templates_json.__file__).parent / "templates"


@cache
def template_nodes() -> dict[str, list[dict[str, Any]]]:
    """Every node of every template (subgraphs included), by type."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(templates_dir().glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "nodes" not in data:
            continue  # index files
        nodes = list(data["nodes"])
        for subgraph in data.get("definitions", {}).get("subgraphs", []):
            nodes += subgraph.get("nodes", [])
        for node in nodes:
            found[node["type"]].append({**node, "_template": path.stem})
    return found


def link_inputs(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["name"], i["type"]) for i in node.get("inputs", []) if not i.get("widget")]


def outputs(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(o["name"], o["type"]) for o in node.get("outputs", [])]


def test_the_reference_templates_are_installed() -> None:
    names = {path.stem for path in templates_dir().glob("*.json")}
    assert set(REFERENCE_TEMPLATES) <= names


@pytest.mark.parametrize("node", list(NODES.values()), ids=list(NODES))
def test_every_node_we_use_appears_in_the_templates_with_our_link_inputs_and_outputs(node: NodeSchema) -> None:
    seen = template_nodes()[node.class_type]
    assert seen, f"{node.class_type} is in no official template"
    ours_in = [(i.name, i.type) for i in node.link_inputs]
    ours_out = [(o.label, o.type) for o in node.outputs]
    assert ours_in in [link_inputs(n) for n in seen], f"{node.class_type} link inputs {ours_in}"
    assert ours_out in [outputs(n) for n in seen], f"{node.class_type} outputs {ours_out}"


@pytest.mark.parametrize("node", list(NODES.values()), ids=list(NODES))
def test_widget_order_matches_the_templates(node: NodeSchema) -> None:
    seen = template_nodes()[node.class_type]
    named = [list(n["widgets_values_named"]) for n in seen if n.get("widgets_values_named") is not None]
    counts = {len(n.get("widgets_values") or []) for n in seen if n.get("widgets_values") is not None}
    if named:  # the frontend's own names, in order, when the template records them
        assert node.widget_names() in named, f"{node.class_type}: ours {node.widget_names()}, templates {named}"
    assert len(node.widget_names()) in counts | ({0} if not counts else set()), (node.widget_names(), counts)


@pytest.mark.parametrize("node", list(NODES.values()), ids=list(NODES))
def test_template_widget_values_fit_our_widget_types(node: NodeSchema) -> None:
    """Read the templates' values through our order: each must be a value of the widget we think is there."""
    names = node.widget_names()
    kinds = {i.name: i for i in node.widget_inputs}
    checked = 0
    for template_node in template_nodes()[node.class_type]:
        values = template_node.get("widgets_values")
        if not isinstance(values, list) or len(values) != len(names):
            continue  # an older frontend's layout of the node (other widget count)
        for name, value in zip(names, values, strict=True):
            item = kinds.get(name)
            if item is None:
                continue  # frontend widgets (control_after_generate, upload, 3D preview)
            if item.type == "INT":
                assert isinstance(value, int) and not isinstance(value, bool), (template_node["_template"], name, value)
            elif item.type == "FLOAT":
                assert isinstance(value, int | float), (template_node["_template"], name, value)
            elif item.type in ("STRING", "COMBO"):
                assert isinstance(value, str), (template_node["_template"], name, value)
            if item.options and template_node["_template"] in REFERENCE_TEMPLATES:
                # other templates may use custom node packs that add choices (e.g. more schedulers)
                assert value in item.options, (template_node["_template"], name, value)
            checked += 1
    assert checked or not node.widget_inputs


def template_types() -> tuple[dict[tuple[str, int], str], dict[tuple[str, str], str]]:
    """(class, output slot) → type and (class, input name) → type, as the templates' links use them."""
    out_types: dict[tuple[str, int], str] = {}
    in_types: dict[tuple[str, str], str] = {}
    for kind, seen in template_nodes().items():
        for node in seen:
            for slot, output in enumerate(node.get("outputs", [])):
                out_types.setdefault((kind, slot), output["type"])
            for item in node.get("inputs", []):
                in_types.setdefault((kind, item["name"]), item["type"])
    return out_types, in_types


def _overlap(a: str, b: str) -> bool:
    return bool(set(a.split(",")) & set(b.split(",")))


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_every_link_of_our_workflows_joins_types_the_templates_join(name: str) -> None:
    ui = build_workflow(name).ui()
    out_types, in_types = template_types()
    nodes = {node["id"]: node for node in ui["nodes"]}
    for link_id, origin, slot, target, target_slot, link_type in ui["links"]:
        origin_type = nodes[origin]["type"]
        target_node = nodes[target]
        input_name = target_node["inputs"][target_slot]["name"]
        assert target_node["inputs"][target_slot]["link"] == link_id
        assert link_id in nodes[origin]["outputs"][slot]["links"]
        from_templates = out_types[(origin_type, slot)]
        into_templates = in_types[(target_node["type"], input_name)]
        assert _overlap(link_type, from_templates), (origin_type, slot, link_type, from_templates)
        assert _overlap(from_templates, into_templates), (target_node["type"], input_name, into_templates)


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_our_ui_nodes_have_the_templates_shape(name: str) -> None:
    for node in build_workflow(name).ui()["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY:
            assert len(node["widgets_values"]) == len(FRONTEND_ONLY[kind])
            continue
        seen = template_nodes()[kind]
        assert [(i["name"], i["type"]) for i in node["inputs"]] in [link_inputs(n) for n in seen], kind
        assert len(node["widgets_values"]) in {len(n.get("widgets_values") or []) for n in seen}, kind


def test_our_flux_samplers_use_the_reference_templates_settings() -> None:
    """KSampler after FluxGuidance with cfg 1, euler / simple: what flux_kontext_dev_basic does."""
    [reference] = [n for n in template_nodes()["KSampler"] if n["_template"] == "flux_kontext_dev_basic"]
    _seed, _control, _steps, cfg, sampler, scheduler, denoise = reference["widgets_values"]
    wizard = build_workflow("flux-kontext-texture-wizar3d-basic").api()
    flux_samplers = [n for n in wizard.values() if n["class_type"] == "KSampler" and n["inputs"]["cfg"] == cfg]
    assert len(flux_samplers) == 2
    for node in flux_samplers:
        assert (node["inputs"]["sampler_name"], node["inputs"]["scheduler"], node["inputs"]["denoise"]) == (
            sampler, scheduler, denoise,
        )  # fmt: skip
