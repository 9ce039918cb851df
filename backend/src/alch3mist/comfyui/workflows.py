"""The four workflows of the original design as ComfyUI graphs, in the UI format and the API format.

One builder per stage, shared by the exported files and by the ``comfyui`` image backend, so what a user loads in
ComfyUI and what the backend submits are the same graph with the same defaults (``FULL_DEFAULTS``, the trigger word,
the default LoRA and its strength):

* ``flux-dev-basic``                      FLUX.1-dev text → image (the base image, ``img0``)
* ``flux-kontext-dev-basic``              FLUX.1 Kontext [dev] + the Alch3mist LoRA: image → edited image (``img1``)
* ``image-to-mesh``                       Hunyuan3D 2.1 (ComfyUI core nodes): image → untextured mesh (GLB)
* ``flux-kontext-texture-wizar3d-basic``  the wizard: text → base → material edit → mesh in one graph

Only ComfyUI core nodes (``nodes.py``); every node is checked against its schema as it is added.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..models.loaded import FULL_DEFAULTS, GenerationDefaults
from ..prompting.schema import TRIGGER_WORD
from .nodes import NodeSchema, schema

__all__ = [
    "EXAMPLE",
    "WORKFLOW_NAMES",
    "BaseJob",
    "EditJob",
    "Graph",
    "ModelFiles",
    "Node",
    "base_image_graph",
    "build_workflow",
    "material_edit_graph",
]

WORKFLOW_NAMES = (
    "flux-dev-basic",
    "flux-kontext-dev-basic",
    "image-to-mesh",
    "flux-kontext-texture-wizar3d-basic",
)
# Sampler settings of the official FLUX.1 [dev] / Kontext templates: FluxGuidance carries the guidance, cfg stays 1
# (no negative pass, like diffusers' FluxPipeline with true_cfg_scale 1), euler on the "simple" schedule.
SAMPLER, SCHEDULER, CFG = "euler", "simple", 1.0
# Hunyuan3D 2.1 settings of the official 3d_hunyuan3d-v2.1 template.
HUNYUAN3D = {"steps": 30, "cfg": 5.0, "scheduler": "normal", "resolution": 4096, "shift": 1.0}
HUNYUAN3D_CHECKPOINT = "hunyuan_3d_v2.1.safetensors"
INPUT_IMAGE = "alch3mist_input.png"  # the LoadImage placeholder of the exported edit / mesh workflows
OUTPUT_PREFIX = "alch3mist"

# Where the official templates download each file from (their nodes' "models" property), by file name.
MODEL_URLS = {
    "flux1-dev.safetensors": "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors",
    "flux1-dev-kontext_fp8_scaled.safetensors": "https://huggingface.co/Comfy-Org/flux1-kontext-dev_ComfyUI/resolve/"
    "main/split_files/diffusion_models/flux1-dev-kontext_fp8_scaled.safetensors",
    "clip_l.safetensors": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
    "t5xxl_fp16.safetensors": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
    "t5xxl_fp16.safetensors",
    "ae.safetensors": "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/"
    "ae.safetensors",
    HUNYUAN3D_CHECKPOINT: "https://huggingface.co/Comfy-Org/hunyuan3D_2.1_repackaged/resolve/main/"
    "hunyuan_3d_v2.1.safetensors",
}


@dataclass(frozen=True)
class ModelFiles:
    """The file names the workflows load, each in its ComfyUI ``models/`` folder (``Settings.comfyui_*``)."""

    flux_unet: str
    kontext_unet: str
    clip_l: str
    t5: str
    vae: str

    @classmethod
    def from_settings(cls, settings: Any) -> ModelFiles:
        return cls(
            flux_unet=settings.comfyui_flux_unet,
            kontext_unet=settings.comfyui_kontext_unet,
            clip_l=settings.comfyui_clip_l,
            t5=settings.comfyui_t5,
            vae=settings.comfyui_vae,
        )

    @classmethod
    def defaults(cls) -> ModelFiles:
        """The Settings defaults, not the environment: what the committed files hold."""
        from ..config import Settings

        fields = Settings.model_fields
        return cls(
            **{name: fields[f"comfyui_{name}"].default for name in ("flux_unet", "kontext_unet", "clip_l", "t5", "vae")}
        )

    def required(self) -> dict[str, list[str]]:
        """What the image backend needs on the server, by ComfyUI model folder."""
        return {
            "diffusion_models": [self.flux_unet, self.kontext_unet],
            "text_encoders": [self.clip_l, self.t5],
            "vae": [self.vae],
        }


@dataclass(frozen=True)
class BaseJob:
    """Stage 1 as a workflow: prompt, seed, steps, guidance, size."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    size: int


@dataclass(frozen=True)
class EditJob:
    """Stage 2 as a workflow; ``lora_file`` is the LoRA as ComfyUI names it (``None`` = bare Kontext)."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    lora_file: str | None
    lora_strength: float


@dataclass(frozen=True)
class Example:
    """What the exported workflows hold: the backend's full-preset defaults and a request that shows them."""

    defaults: GenerationDefaults
    seed: int
    base_prompt: str
    edit_prompt: str
    lora_file: str
    lora_strength: float

    def base(self) -> BaseJob:
        d = self.defaults
        return BaseJob(self.base_prompt, self.seed, d.steps, d.guidance, d.size)

    def edit(self) -> EditJob:
        d = self.defaults
        return EditJob(self.edit_prompt, self.seed, d.edit_steps, d.edit_guidance, self.lora_file, self.lora_strength)


def _example() -> Example:
    from ..config import Settings

    fields = Settings.model_fields
    return Example(
        defaults=FULL_DEFAULTS,
        seed=7,  # the seed of `make demo`
        base_prompt="a cow standing, a single object, centred, whole object in view, plain light grey background, "
        "soft studio light, no text",
        edit_prompt=f"{TRIGGER_WORD} turn its skin into crocodile leather with a mane of flames, keep the same shape, "
        "pose and background",
        lora_file=f"{fields['default_lora'].default}.safetensors",
        lora_strength=float(fields["default_lora_scale"].default),
    )


EXAMPLE = _example()


# ---------------------------------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Ref:
    """Output ``slot`` of node ``node``."""

    node: int
    slot: int


@dataclass
class Node:
    id: int
    schema: NodeSchema
    links: dict[str, Ref]
    widgets: dict[str, Any]
    group: str
    title: str | None = None

    def out(self, slot: int = 0) -> Ref:
        if slot >= len(self.schema.outputs):
            raise IndexError(f"{self.schema.class_type} has {len(self.schema.outputs)} output(s), not slot {slot}")
        return Ref(self.id, slot)


@dataclass
class Note:
    id: int
    text: str
    group: str
    title: str


@dataclass
class Graph:
    """Nodes added in execution order, each in a named group (a column of the UI layout)."""

    name: str
    nodes: list[Node] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    _next_id: int = 1

    def add(self, class_type: str, group: str, title: str | None = None, **inputs: Any) -> Node:
        """A node; a ``Node``/``Ref`` value is a link (a Node means its first output), anything else a widget."""
        node_schema = schema(class_type)
        by_name = {item.name: item for item in node_schema.inputs}
        links: dict[str, Ref] = {}
        widgets: dict[str, Any] = {}
        for name, value in inputs.items():
            item = by_name.get(name)
            if item is None:
                raise ValueError(f"{class_type} has no input {name!r}")
            if isinstance(value, Node | Ref):
                ref = value.out(0) if isinstance(value, Node) else value
                if item.is_widget:
                    raise ValueError(f"{class_type}.{name} is a widget, not a link")
                self._check_type(class_type, name, item.type, ref)
                links[name] = ref
            else:
                if not item.is_widget:
                    raise ValueError(f"{class_type}.{name} takes a link from another node, got {value!r}")
                widgets[name] = value
        missing = [i.name for i in node_schema.link_inputs if not i.optional and i.name not in links]
        if missing:
            raise ValueError(f"{class_type} needs link(s) {missing}")
        node = Node(self._take_id(), node_schema, links, widgets, self._group(group), title)
        self.nodes.append(node)
        return node

    def note(self, text: str, group: str, title: str) -> None:
        self.notes.append(Note(self._take_id(), text, self._group(group), title))

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def api(self) -> dict[str, dict[str, Any]]:
        """The API format (``POST /prompt``'s ``prompt``): ``{id: {class_type, inputs, _meta}}``, notes left out."""
        prompt: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            inputs: dict[str, Any] = {}
            for item in node.schema.inputs:
                if item.name in node.links:
                    ref = node.links[item.name]
                    inputs[item.name] = [str(ref.node), ref.slot]
                elif item.is_widget:
                    inputs[item.name] = node.widgets.get(item.name, item.default)
            prompt[str(node.id)] = {
                "class_type": node.schema.class_type,
                "inputs": inputs,
                "_meta": {"title": node.title or node.schema.display_name},
            }
        return prompt

    def ui(self) -> dict[str, Any]:
        """The UI format (what ComfyUI saves and loads by drag-and-drop), laid out in one column per group."""
        from .layout import ui_workflow

        return ui_workflow(self)

    def _take_id(self) -> int:
        taken, self._next_id = self._next_id, self._next_id + 1
        return taken

    def _group(self, group: str) -> str:
        if group not in self.groups:
            self.groups.append(group)
        return group

    def _check_type(self, class_type: str, name: str, wanted: str, ref: Ref) -> None:
        given = self.node(ref.node).schema.outputs[ref.slot].type
        # comfy_execution/validation.py validate_node_input: comma-separated types match when they overlap
        if not set(given.split(",")) & set(wanted.split(",")):
            raise ValueError(f"{class_type}.{name} takes {wanted}, but node {ref.node} gives {given}")


# ---------------------------------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class _FluxEncoders:
    clip: Node
    vae: Node


def _flux_encoders(g: Graph, files: ModelFiles, group: str) -> _FluxEncoders:
    clip = g.add(
        "DualCLIPLoader", group, "Text encoders (CLIP-L + T5-XXL)", clip_name1=files.clip_l, clip_name2=files.t5,
        type="flux", device="default",
    )  # fmt: skip
    vae = g.add("VAELoader", group, "FLUX VAE", vae_name=files.vae)
    return _FluxEncoders(clip, vae)


def _text_to_image(g: Graph, enc: _FluxEncoders, files: ModelFiles, job: BaseJob, group: str) -> Node:
    """FLUX.1-dev: prompt → FluxGuidance → KSampler on an empty SD3 latent → VAE decode; returns the IMAGE node."""
    model = g.add("UNETLoader", group, "FLUX.1-dev", unet_name=files.flux_unet, weight_dtype="default")
    text = g.add("CLIPTextEncode", group, "Base prompt (the plain object)", text=job.prompt, clip=enc.clip)
    positive = g.add("FluxGuidance", group, conditioning=text, guidance=job.guidance)
    negative = g.add("ConditioningZeroOut", group, conditioning=text)
    latent = g.add("EmptySD3LatentImage", group, width=job.size, height=job.size, batch_size=1)
    sampled = g.add(
        "KSampler", group, "KSampler (FLUX.1-dev)", model=model, seed=job.seed, steps=job.steps, cfg=CFG,
        sampler_name=SAMPLER, scheduler=SCHEDULER, positive=positive, negative=negative, latent_image=latent,
        denoise=1.0,
    )  # fmt: skip
    return g.add("VAEDecode", group, samples=sampled, vae=enc.vae)


def _edit(g: Graph, enc: _FluxEncoders, files: ModelFiles, image: Node, job: EditJob, group: str) -> Node:
    """Kontext: the image, snapped to Kontext's ~1 MP sizes, is the reference latent and the canvas; LoRA on top."""
    model = g.add("UNETLoader", group, "FLUX.1 Kontext [dev]", unet_name=files.kontext_unet, weight_dtype="default")
    if job.lora_file is not None and job.lora_strength != 0:
        model = g.add(
            "LoraLoaderModelOnly", group, f"{TRIGGER_WORD} LoRA", model=model, lora_name=job.lora_file,
            strength_model=job.lora_strength,
        )  # fmt: skip
    scaled = g.add("FluxKontextImageScale", group, image=image)
    encoded = g.add("VAEEncode", group, pixels=scaled, vae=enc.vae)
    text = g.add("CLIPTextEncode", group, f"Edit prompt (starts with {TRIGGER_WORD})", text=job.prompt, clip=enc.clip)
    referenced = g.add("ReferenceLatent", group, conditioning=text, latent=encoded)
    positive = g.add("FluxGuidance", group, conditioning=referenced, guidance=job.guidance)
    negative = g.add("ConditioningZeroOut", group, conditioning=text)
    sampled = g.add(
        "KSampler", group, "KSampler (Kontext)", model=model, seed=job.seed, steps=job.steps, cfg=CFG,
        sampler_name=SAMPLER, scheduler=SCHEDULER, positive=positive, negative=negative, latent_image=encoded,
        denoise=1.0,
    )  # fmt: skip
    return g.add("VAEDecode", group, samples=sampled, vae=enc.vae)


def _image_to_mesh(g: Graph, image: Node, seed: int, group: str) -> Node:
    """Hunyuan3D 2.1 shape from the image (core nodes give geometry only: no texture); returns the MESH node."""
    checkpoint = g.add("ImageOnlyCheckpointLoader", group, "Hunyuan3D 2.1", ckpt_name=HUNYUAN3D_CHECKPOINT)
    model = g.add("ModelSamplingAuraFlow", group, model=checkpoint.out(0), shift=HUNYUAN3D["shift"], sampling="flow")
    vision = g.add("CLIPVisionEncode", group, clip_vision=checkpoint.out(1), image=image, crop="center")
    conditioning = g.add("Hunyuan3Dv2Conditioning", group, clip_vision_output=vision)
    latent = g.add("EmptyLatentHunyuan3Dv2", group, resolution=HUNYUAN3D["resolution"], batch_size=1)
    sampled = g.add(
        "KSampler", group, "KSampler (Hunyuan3D)", model=model, seed=seed, steps=HUNYUAN3D["steps"],
        cfg=HUNYUAN3D["cfg"], sampler_name=SAMPLER, scheduler=HUNYUAN3D["scheduler"], positive=conditioning.out(0),
        negative=conditioning.out(1), latent_image=latent, denoise=1.0,
    )  # fmt: skip
    voxels = g.add("VAEDecodeHunyuan3D", group, samples=sampled, vae=checkpoint.out(2), num_chunks=8000,
                   octree_resolution=256)  # fmt: skip
    return g.add("VoxelToMesh", group, voxel=voxels, algorithm="surface net", threshold=0.6)


def base_image_graph(files: ModelFiles, job: BaseJob) -> Graph:
    """``flux-dev-basic``: what the base-image stage submits (and the exported workflow with the defaults)."""
    g = Graph("flux-dev-basic")
    enc = _flux_encoders(g, files, "Models")
    image = _text_to_image(g, enc, files, job, "Text to image (FLUX.1-dev)")
    g.add("SaveImage", "Output", "Save img0 (base image)", images=image, filename_prefix=f"{OUTPUT_PREFIX}/img0")
    return g


def material_edit_graph(files: ModelFiles, job: EditJob, input_image: str) -> Graph:
    """``flux-kontext-dev-basic``: what the material-edit stage submits, ``input_image`` uploaded to the server."""
    g = Graph("flux-kontext-dev-basic")
    enc = _flux_encoders(g, files, "Models")
    source = g.add("LoadImage", "Input", "img0 (the base image)", image=input_image)
    edited = _edit(g, enc, files, source, job, "Material edit (FLUX.1 Kontext [dev] + LoRA)")
    g.add("SaveImage", "Output", "Save img1 (material edit)", images=edited, filename_prefix=f"{OUTPUT_PREFIX}/img1")
    return g


def image_to_mesh_graph(seed: int, input_image: str) -> Graph:
    g = Graph("image-to-mesh")
    source = g.add("LoadImage", "Input", "img1 (the textured image)", image=input_image)
    mesh = _image_to_mesh(g, source, seed, "Image to mesh (Hunyuan3D 2.1)")
    g.add("SaveGLB", "Output", "Save mesh (GLB)", mesh=mesh, filename_prefix=f"{OUTPUT_PREFIX}/mesh")
    return g


def wizard_graph(files: ModelFiles, base: BaseJob, edit: EditJob) -> Graph:
    """Text → base image → material edit → mesh in one graph; the text encoders and VAE serve both FLUX stages."""
    g = Graph("flux-kontext-texture-wizar3d-basic")
    enc = _flux_encoders(g, files, "Models")
    image = _text_to_image(g, enc, files, base, "1. Base image (FLUX.1-dev)")
    g.add("SaveImage", "1. Base image (FLUX.1-dev)", "Save img0", images=image, filename_prefix=f"{OUTPUT_PREFIX}/img0")
    edited = _edit(g, enc, files, image, edit, "2. Material edit (Kontext + LoRA)")
    g.add(
        "SaveImage", "2. Material edit (Kontext + LoRA)", "Save img1", images=edited,
        filename_prefix=f"{OUTPUT_PREFIX}/img1",
    )  # fmt: skip
    mesh = _image_to_mesh(g, edited, base.seed, "3. Mesh (Hunyuan3D 2.1)")
    g.add("SaveGLB", "3. Mesh (Hunyuan3D 2.1)", "Save mesh (GLB)", mesh=mesh, filename_prefix=f"{OUTPUT_PREFIX}/mesh")
    return g


def build_workflow(name: str, files: ModelFiles | None = None, example: Example = EXAMPLE) -> Graph:
    """One of ``WORKFLOW_NAMES`` with the backend's defaults and notes on where each model file goes."""
    from .layout import add_notes

    files = files or ModelFiles.defaults()
    builders = {
        "flux-dev-basic": lambda: base_image_graph(files, example.base()),
        "flux-kontext-dev-basic": lambda: material_edit_graph(files, example.edit(), INPUT_IMAGE),
        "image-to-mesh": lambda: image_to_mesh_graph(example.seed, INPUT_IMAGE),
        "flux-kontext-texture-wizar3d-basic": lambda: wizard_graph(files, example.base(), example.edit()),
    }
    if name not in builders:
        raise ValueError(f"unknown workflow {name!r}; known: {', '.join(WORKFLOW_NAMES)}")
    graph = builders[name]()
    add_notes(graph, example)
    return graph


def workflow_uuid(name: str) -> str:
    """A stable id per workflow, so an export is byte-for-byte repeatable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/material-alch3mist/comfyui/{name}"))
