"""The UI format of a workflow: nodes laid out one column per group, links, groups and the notes on model files.

The shape is what the ComfyUI frontend saves (litegraph, ``"version": 0.4``), as in the official templates:
``nodes[]`` with ``inputs`` (links only), ``outputs`` (with the ids of their links), ``widgets_values`` in the
schema's widget order; ``links[]`` as ``[id, from_node, from_slot, to_node, to_slot, type]``; ``groups[]`` with a
``bounding`` box. Loader nodes carry the ``models`` property (name, url, directory) the frontend offers to download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..prompting.schema import TRIGGER_WORD

if TYPE_CHECKING:
    from .workflows import Example, Graph, Node, Note

__all__ = ["add_notes", "ui_workflow"]

NODE_WIDTH, NOTE_WIDTH, COLUMN_GAP, ROW_GAP = 340, 400, 80, 40
MAX_COLUMN_HEIGHT = 900  # a group taller than this wraps into another column
GROUP_PAD, GROUP_TITLE = 20, 50
GROUP_COLOURS = ("#3f789e", "#8A8", "#a1309b", "#b58b2a", "#444")
FOLDER_OF = {"unet_name": "diffusion_models", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
             "vae_name": "vae", "lora_name": "loras", "ckpt_name": "checkpoints"}  # fmt: skip


def model_files(graph: Graph) -> list[tuple[str, str]]:
    """``(folder, file)`` of every model file the graph loads, once each, in graph order."""
    found = {
        (folder, str(node.widgets[name])): None
        for node in graph.nodes
        for name, folder in FOLDER_OF.items()
        if name in node.widgets
    }
    return list(found)


def add_notes(graph: Graph, example: Example) -> None:
    """A note per workflow: what it does, the backend defaults it holds, and where each model file goes."""
    from .workflows import MODEL_URLS

    files = []
    for folder, file in model_files(graph):
        where, url = f"`ComfyUI/models/{folder}/{file}`", MODEL_URLS.get(file)
        if folder == "loras":
            files.append(
                f"- {where}: your Alch3mist LoRA (`alch3mist lora train`, or the backend's LoRA folder). "
                "Without it, bypass the Load LoRA node (Ctrl+B) for the bare Kontext edit."
            )
        else:
            files.append(f"- {where}" + (f" ([download]({url}))" if url else ""))
    d = example.defaults
    lines = [
        f"## {graph.name}",
        "",
        _PURPOSE[graph.name],
        "",
        f"Made by `alch3mist comfyui export` with the backend's defaults: FLUX.1-dev {d.steps} steps, guidance "
        f"{d.guidance}, {d.size}x{d.size}; Kontext {d.edit_steps} steps, guidance {d.edit_guidance}, input snapped "
        f"to Kontext's ~1 MP sizes; edit prompts start with the trigger word **{TRIGGER_WORD}**; LoRA "
        f"`{example.lora_file}` at strength {example.lora_strength}; seed {example.seed} (fixed).",
        "",
        "### Model files",
        "",
        *files,
    ]
    graph.note("\n".join(lines), graph.groups[0], "Read me: what this workflow does and where the models go")


_PURPOSE = {
    "flux-dev-basic": "FLUX.1-dev text → image: the plain object (centred, whole, plain background) that the "
    "material edit starts from. Saves `img0`.",
    "flux-kontext-dev-basic": "FLUX.1 Kontext [dev] + the Alch3mist LoRA: repaints the surface of the image in "
    "Load Image (upload `img0`) with the material of the edit prompt, keeping shape and pose. Saves `img1`.",
    "image-to-mesh": "Hunyuan3D 2.1 from ComfyUI's core nodes: the image in Load Image (upload `img1`) → a mesh, "
    "saved as GLB. Core nodes make geometry only; the Alch3mist backend textures it (`texture` stage).",
    "flux-kontext-texture-wizar3d-basic": "The wizard: text → base image (FLUX.1-dev) → material edit (Kontext + "
    "LoRA) → mesh (Hunyuan3D 2.1) in one graph. The text encoders and the VAE serve both FLUX stages.",
}


def ui_workflow(graph: Graph) -> dict[str, Any]:
    from .workflows import MODEL_URLS, workflow_uuid

    links, link_ids = _links(graph)
    positions, sizes = _layout(graph)
    items: list[dict[str, Any]] = [_note_json(note, positions[note.id], sizes[note.id]) for note in graph.notes]
    for order, node in enumerate(graph.nodes):
        items.append(_node_json(node, order, positions[node.id], sizes[node.id], links, link_ids, MODEL_URLS))
    return {
        "id": workflow_uuid(graph.name),
        "revision": 0,
        "last_node_id": max(positions),
        "last_link_id": len(links),
        "nodes": items,
        "links": links,
        "groups": _groups(graph, positions, sizes),
        "config": {},
        "extra": {"ds": {"scale": 0.7, "offset": [40, 80]}},
        "version": 0.4,
    }


def _links(graph: Graph) -> tuple[list[list[Any]], dict[tuple[int, str], int]]:
    links: list[list[Any]] = []
    ids: dict[tuple[int, str], int] = {}
    for node in graph.nodes:
        for item in node.schema.link_inputs:
            ref = node.links.get(item.name)
            if ref is None:
                continue
            source = graph.node(ref.node).schema.outputs[ref.slot]
            links.append([len(links) + 1, ref.node, ref.slot, node.id, _link_slot(node, item.name), source.type])
            ids[(node.id, item.name)] = len(links)
    return links, ids


def _link_slot(node: Node, name: str) -> int:
    return [i.name for i in node.schema.link_inputs].index(name)


def _node_height(node: Node) -> int:
    widgets = len(node.schema.widget_names())
    rows = max(len(node.schema.link_inputs), len(node.schema.outputs))
    multiline = sum(1 for i in node.schema.widget_inputs if i.multiline)
    return 46 + 24 * rows + 26 * widgets + 110 * multiline


def _note_height(note: Note) -> int:
    return 60 + 22 * sum(1 + len(line) // 52 for line in note.text.splitlines())


def _layout(graph: Graph) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    positions: dict[int, list[int]] = {}
    sizes: dict[int, list[int]] = {}
    x = 0
    for group in graph.groups:
        y = 0
        members: list[tuple[int, int, int]] = [
            (n.id, NOTE_WIDTH, _note_height(n)) for n in graph.notes if n.group == group
        ] + [(n.id, NODE_WIDTH, _node_height(n)) for n in graph.nodes if n.group == group]
        column_width = 0
        for item_id, width, height in members:
            if y > 0 and y + height > MAX_COLUMN_HEIGHT:  # wrap: the next column of the same group
                x, y = x + column_width + COLUMN_GAP // 2, 0
            positions[item_id], sizes[item_id] = [x, y], [width, height]
            column_width = max(column_width, width)
            y += height + ROW_GAP
        x += column_width + COLUMN_GAP + 2 * GROUP_PAD
    return positions, sizes


def _groups(graph: Graph, positions: dict[int, list[int]], sizes: dict[int, list[int]]) -> list[dict[str, Any]]:
    groups = []
    for index, group in enumerate(graph.groups):
        ids = [n.id for n in graph.notes if n.group == group] + [n.id for n in graph.nodes if n.group == group]
        left = min(positions[i][0] for i in ids) - GROUP_PAD
        top = min(positions[i][1] for i in ids) - GROUP_TITLE
        right = max(positions[i][0] + sizes[i][0] for i in ids) + GROUP_PAD
        bottom = max(positions[i][1] + sizes[i][1] for i in ids) + GROUP_PAD
        groups.append({
            "id": index + 1, "title": group, "bounding": [left, top, right - left, bottom - top],
            "color": GROUP_COLOURS[index % len(GROUP_COLOURS)], "font_size": 24, "flags": {},
        })  # fmt: skip
    return groups


def _note_json(note: Note, pos: list[int], size: list[int]) -> dict[str, Any]:
    return {
        "id": note.id, "type": "MarkdownNote", "pos": pos, "size": size, "flags": {}, "order": 0, "mode": 0,
        "inputs": [], "outputs": [], "title": note.title, "properties": {}, "widgets_values": [note.text],
        "color": "#432", "bgcolor": "#653",
    }  # fmt: skip


def _node_json(
    node: Node,
    order: int,
    pos: list[int],
    size: list[int],
    links: list[list[Any]],
    link_ids: dict[tuple[int, str], int],
    urls: dict[str, str],
) -> dict[str, Any]:
    inputs = [
        {"name": i.name, "type": i.type, "link": link_ids.get((node.id, i.name))} for i in node.schema.link_inputs
    ]
    outputs = []
    for slot, output in enumerate(node.schema.outputs):
        targets = [link[0] for link in links if (link[1], link[2]) == (node.id, slot)]
        outputs.append({"name": output.label, "type": output.type, "links": targets or None, "slot_index": slot})
    properties: dict[str, Any] = {"Node name for S&R": node.schema.class_type, "cnr_id": "comfy-core"}
    models = [
        {"name": str(node.widgets[name]), "url": urls[str(node.widgets[name])], "directory": folder}
        for name, folder in FOLDER_OF.items()
        if str(node.widgets.get(name)) in urls
    ]
    if models:
        properties["models"] = models
    item: dict[str, Any] = {
        "id": node.id, "type": node.schema.class_type, "pos": pos, "size": size, "flags": {}, "order": order + 1,
        "mode": 0, "inputs": inputs, "outputs": outputs, "properties": properties,
        "widgets_values": node.schema.widget_values(node.widgets),
    }  # fmt: skip
    if node.title:
        item["title"] = node.title
    return item
