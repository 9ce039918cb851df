"""The ComfyUI core nodes our workflows use: input names and types, widget order, outputs — read from upstream.

Each schema is written from the node's definition in Comfy-Org/ComfyUI (the file and class named in ``source``) and
is checked against the official templates of the ``comfyui-workflow-templates-json`` package by
``tests/backend/comfyui/test_nodes.py`` (same link inputs, outputs and widget order, ``widgets_values_named``
included). The exporter lays out UI-format nodes from them; the test stand-in server serves them as ``/object_info``.

Two orders matter. The API format is a dict of inputs by name (order free). The UI format lists the *link* inputs in
declaration order and the *widget* values in declaration order, with the values the frontend adds itself:
``control_after_generate`` after a seed, the ``upload`` button of LoadImage, the 3D preview of SaveGLB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FRONTEND_ONLY", "NODES", "WIDGET_TYPES", "Input", "NodeSchema", "Output", "schema"]

# Value types edited in a widget; every other type (MODEL, CLIP, LATENT, IMAGE, …) is a link between nodes.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
MAX_RESOLUTION = 16384  # nodes.py MAX_RESOLUTION
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # nodes.py KSampler seed max

# comfy/samplers.py KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"] (SAMPLER_NAMES) and SCHEDULER_HANDLERS' keys.
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip
SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
)  # fmt: skip
# nodes.py DualCLIPLoader "type" options.
DUAL_CLIP_TYPES = (
    "sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15", "kandinsky5",
    "kandinsky5_image", "ltxv", "newbie", "ace",
)  # fmt: skip
# comfy_extras/nodes_hunyuan3d.py SaveGLB: IO.MultiType.Input(IO.Mesh.Input("mesh"), types=[File3DGLB, …]).
MESH_OR_3D_FILE = (
    "MESH,FILE_3D_GLB,FILE_3D_GLTF,FILE_3D_OBJ,FILE_3D_FBX,FILE_3D_STL,FILE_3D_USDZ,FILE_3D_PLY,FILE_3D_SPLAT,"
    "FILE_3D_SPZ,FILE_3D_KSPLAT,FILE_3D_SPLAT_ANY,FILE_3D_POINT_CLOUD_ANY,FILE_3D"
)


@dataclass(frozen=True)
class Input:
    """One input of a node, as its ``INPUT_TYPES`` / ``define_schema`` declares it."""

    name: str
    type: str  # MODEL, CLIP, … for links; INT, FLOAT, STRING, BOOLEAN, COMBO for widgets
    optional: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple[str, ...] = ()  # a COMBO with fixed choices
    folder: str | None = None  # a COMBO whose choices are the files of a ComfyUI model folder
    image_upload: bool = False  # LoadImage: choices are the input folder's images (+ the frontend's upload button)
    control_after_generate: bool = False  # the frontend adds its seed-control widget right after this one
    multiline: bool = False

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES


@dataclass(frozen=True)
class Output:
    type: str
    name: str = ""  # RETURN_NAMES / display_name; the type when unnamed

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class NodeSchema:
    """A node class: what ``/object_info/<class_type>`` describes, in the order the UI format needs."""

    class_type: str
    display_name: str
    category: str
    source: str  # the upstream file and class it is written from
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...] = ()
    output_node: bool = False
    hidden: tuple[str, ...] = ()  # hidden inputs (PROMPT, EXTRA_PNGINFO): filled in by the server
    combo_style: Literal["v1", "v3"] = "v1"  # how /object_info spells a COMBO: a bare list (V1) or "COMBO" (V3)
    trailing_widgets: tuple[tuple[str, Any], ...] = ()  # frontend-only widgets after the node's own
    custom_validation: tuple[str, ...] = ()  # inputs its VALIDATE_INPUTS checks instead of the generic checks

    @property
    def link_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if not i.is_widget)

    @property
    def widget_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.is_widget)

    def widget_names(self) -> list[str]:
        """Names of ``widgets_values`` in order, the frontend's own widgets included."""
        names: list[str] = []
        for item in self.widget_inputs:
            names.append(item.name)
            if item.control_after_generate:
                names.append("control_after_generate")
            if item.image_upload:
                names.append("upload")
        names.extend(name for name, _value in self.trailing_widgets)
        return names

    def widget_values(self, values: dict[str, Any]) -> list[Any]:
        """``widgets_values`` for a UI-format node: each widget's value (or default), frontend widgets included."""
        unknown = set(values) - {i.name for i in self.widget_inputs}
        if unknown:
            raise ValueError(f"{self.class_type} has no widget(s) {sorted(unknown)}")
        out: list[Any] = []
        for item in self.widget_inputs:
            out.append(values.get(item.name, item.default))
            if item.control_after_generate:
                out.append("fixed")  # our seeds are chosen on purpose: the UI must not re-randomise them
            if item.image_upload:
                out.append("image")
        out.extend(value for _name, value in self.trailing_widgets)
        return out

    def object_info(self, folder_files: dict[str, list[str]], input_images: list[str]) -> dict[str, Any]:
        """This node as ``GET /object_info`` describes it (server.py ``node_info``; V3: ``_io.get_v1_info``)."""
        required: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        for item in self.inputs:
            (optional if item.optional else required)[item.name] = self._input_spec(item, folder_files, input_images)
        described: dict[str, Any] = {"required": required}
        if optional:
            described["optional"] = optional
        if self.hidden:
            described["hidden"] = {name.lower(): name for name in self.hidden}
        return {
            "input": described,
            "input_order": {key: list(value) for key, value in described.items()},
            "output": [o.type for o in self.outputs],
            "output_is_list": [False] * len(self.outputs),
            "output_name": [o.label for o in self.outputs],
            "name": self.class_type,
            "display_name": self.display_name,
            "description": "",
            "python_module": "nodes" if self.combo_style == "v1" else "comfy_extras",
            "category": self.category,
            "output_node": self.output_node,
        }

    def _input_spec(self, item: Input, folder_files: dict[str, list[str]], input_images: list[str]) -> list[Any]:
        extra: dict[str, Any] = {
            key: value
            for key, value in (("default", item.default), ("min", item.min), ("max", item.max), ("step", item.step))
            if value is not None
        }
        if item.multiline:
            extra["multiline"] = True
        if item.control_after_generate:
            extra["control_after_generate"] = True
        if item.type != "COMBO":
            return [item.type, extra]
        choices = list(item.options)
        if item.folder is not None:
            choices = list(folder_files.get(item.folder, []))
            if item.folder == "vae":
                choices.append("pixel_space")  # nodes.py VAELoader.vae_list
        if item.image_upload:
            choices, extra["image_upload"] = sorted(input_images), True
        if self.combo_style == "v3":
            return ["COMBO", {**extra, "multiselect": False, "options": choices}]
        return [choices, extra]


def _link(name: str, type_: str, optional: bool = False) -> Input:
    return Input(name, type_, optional=optional)


def _int(name: str, default: int, low: int, high: int, step: int | None = None, **extra: Any) -> Input:
    return Input(name, "INT", default=default, min=low, max=high, step=step, **extra)


def _float(name: str, default: float, low: float, high: float, step: float, optional: bool = False) -> Input:
    return Input(name, "FLOAT", default=default, min=low, max=high, step=step, optional=optional)


def _combo(name: str, options: tuple[str, ...], optional: bool = False) -> Input:
    return Input(name, "COMBO", default=options[0], options=options, optional=optional)


def _files(name: str, folder: str) -> Input:
    return Input(name, "COMBO", folder=folder)


NODES: dict[str, NodeSchema] = {
    node.class_type: node
    for node in (
        # ---- loaders (nodes.py)
        NodeSchema(
            "UNETLoader", "Load Diffusion Model", "model/loaders", "nodes.py UNETLoader",
            inputs=(
                _files("unet_name", "diffusion_models"),
                _combo("weight_dtype", ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")),
            ),
            outputs=(Output("MODEL"),),
        ),
        NodeSchema(
            "DualCLIPLoader", "Load CLIP (Dual)", "model/loaders", "nodes.py DualCLIPLoader",
            inputs=(
                _files("clip_name1", "text_encoders"),
                _files("clip_name2", "text_encoders"),
                _combo("type", DUAL_CLIP_TYPES),
                _combo("device", ("default", "cpu"), optional=True),
            ),
            outputs=(Output("CLIP"),),
        ),
        NodeSchema(
            "VAELoader", "Load VAE", "model/loaders", "nodes.py VAELoader",
            inputs=(_files("vae_name", "vae"),),
            outputs=(Output("VAE"),),
        ),
        NodeSchema(
            "LoraLoaderModelOnly", "Load LoRA", "model/loaders", "nodes.py LoraLoaderModelOnly",
            inputs=(
                _link("model", "MODEL"),
                _files("lora_name", "loras"),
                _float("strength_model", 1.0, -100.0, 100.0, 0.01),
            ),
            outputs=(Output("MODEL"),),
        ),
        NodeSchema(
            "ImageOnlyCheckpointLoader", "Image Only Checkpoint Loader (img2vid model)", "loaders/video_models",
            "comfy_extras/nodes_video_model.py ImageOnlyCheckpointLoader",
            inputs=(_files("ckpt_name", "checkpoints"),),
            outputs=(Output("MODEL"), Output("CLIP_VISION"), Output("VAE")),
        ),
        # ---- conditioning
        NodeSchema(
            "CLIPTextEncode", "CLIP Text Encode (Prompt)", "model/conditioning", "nodes.py CLIPTextEncode",
            inputs=(Input("text", "STRING", default="", multiline=True), _link("clip", "CLIP")),
            outputs=(Output("CONDITIONING"),),
        ),
        NodeSchema(
            "FluxGuidance", "FluxGuidance", "advanced/conditioning/flux", "comfy_extras/nodes_flux.py FluxGuidance",
            inputs=(_link("conditioning", "CONDITIONING"), _float("guidance", 3.5, 0.0, 100.0, 0.1)),
            outputs=(Output("CONDITIONING"),),
            combo_style="v3",
        ),
        NodeSchema(
            "ConditioningZeroOut", "Conditioning Zero Out", "model/conditioning/transform",
            "nodes.py ConditioningZeroOut",
            inputs=(_link("conditioning", "CONDITIONING"),),
            outputs=(Output("CONDITIONING"),),
        ),
        NodeSchema(
            "ReferenceLatent", "ReferenceLatent", "advanced/conditioning/edit_models",
            "comfy_extras/nodes_edit_model.py ReferenceLatent",
            inputs=(_link("conditioning", "CONDITIONING"), _link("latent", "LATENT", optional=True)),
            outputs=(Output("CONDITIONING"),),
            combo_style="v3",
        ),
        NodeSchema(
            "CLIPVisionEncode", "CLIP Vision Encode", "model/conditioning", "nodes.py CLIPVisionEncode",
            inputs=(_link("clip_vision", "CLIP_VISION"), _link("image", "IMAGE"), _combo("crop", ("center", "none"))),
            outputs=(Output("CLIP_VISION_OUTPUT"),),
        ),
        NodeSchema(
            "Hunyuan3Dv2Conditioning", "Hunyuan3Dv2Conditioning", "conditioning/video_models",
            "comfy_extras/nodes_hunyuan3d.py Hunyuan3Dv2Conditioning",
            inputs=(_link("clip_vision_output", "CLIP_VISION_OUTPUT"),),
            outputs=(Output("CONDITIONING", "positive"), Output("CONDITIONING", "negative")),
            combo_style="v3",
        ),
        # ---- latents, sampling, images
        NodeSchema(
            "EmptySD3LatentImage", "EmptySD3LatentImage", "latent/sd3",
            "comfy_extras/nodes_sd3.py EmptySD3LatentImage",
            inputs=(
                _int("width", 1024, 16, MAX_RESOLUTION, 16),
                _int("height", 1024, 16, MAX_RESOLUTION, 16),
                _int("batch_size", 1, 1, 4096),
            ),
            outputs=(Output("LATENT"),),
            combo_style="v3",
        ),
        NodeSchema(
            "KSampler", "KSampler", "model/sampling", "nodes.py KSampler",
            inputs=(
                _link("model", "MODEL"),
                _int("seed", 0, 0, MAX_SEED, control_after_generate=True),
                _int("steps", 20, 1, 10000),
                _float("cfg", 8.0, 0.0, 100.0, 0.1),
                _combo("sampler_name", SAMPLERS),
                _combo("scheduler", SCHEDULERS),
                _link("positive", "CONDITIONING"),
                _link("negative", "CONDITIONING"),
                _link("latent_image", "LATENT"),
                _float("denoise", 1.0, 0.0, 1.0, 0.01),
            ),
            outputs=(Output("LATENT"),),
        ),
        NodeSchema(
            "ModelSamplingAuraFlow", "ModelSamplingAuraFlow", "model/patch",
            "comfy_extras/nodes_model_advanced.py ModelSamplingAuraFlow",
            inputs=(
                _link("model", "MODEL"),
                _float("shift", 1.73, 0.0, 100.0, 0.01),
                _combo("sampling", ("flow", "img_to_img_velocity"), optional=True),
            ),
            outputs=(Output("MODEL"),),
        ),
        NodeSchema(
            "VAEEncode", "VAE Encode", "model/latent", "nodes.py VAEEncode",
            inputs=(_link("pixels", "IMAGE"), _link("vae", "VAE")),
            outputs=(Output("LATENT"),),
        ),
        NodeSchema(
            "VAEDecode", "VAE Decode", "model/latent", "nodes.py VAEDecode",
            inputs=(_link("samples", "LATENT"), _link("vae", "VAE")),
            outputs=(Output("IMAGE"),),
        ),
        NodeSchema(
            "FluxKontextImageScale", "FluxKontextImageScale", "advanced/conditioning/flux",
            "comfy_extras/nodes_flux.py FluxKontextImageScale",
            inputs=(_link("image", "IMAGE"),),
            outputs=(Output("IMAGE"),),
            combo_style="v3",
        ),
        NodeSchema(
            "LoadImage", "Load Image", "image", "nodes.py LoadImage",
            inputs=(Input("image", "COMBO", image_upload=True),),
            outputs=(Output("IMAGE"), Output("MASK")),
            custom_validation=("image",),  # LoadImage.VALIDATE_INPUTS: the file exists (subfolders allowed)
        ),
        NodeSchema(
            "SaveImage", "Save Image", "image", "nodes.py SaveImage",
            inputs=(_link("images", "IMAGE"), Input("filename_prefix", "STRING", default="ComfyUI")),
            outputs=(Output("IMAGE", "images"),),
            output_node=True,
            hidden=("PROMPT", "EXTRA_PNGINFO"),
        ),
        # ---- Hunyuan3D 2.x (comfy_extras/nodes_hunyuan3d.py)
        NodeSchema(
            "EmptyLatentHunyuan3Dv2", "EmptyLatentHunyuan3Dv2", "latent/3d",
            "comfy_extras/nodes_hunyuan3d.py EmptyLatentHunyuan3Dv2",
            inputs=(_int("resolution", 3072, 1, 8192), _int("batch_size", 1, 1, 4096)),
            outputs=(Output("LATENT"),),
            combo_style="v3",
        ),
        NodeSchema(
            "VAEDecodeHunyuan3D", "VAEDecodeHunyuan3D", "latent/3d",
            "comfy_extras/nodes_hunyuan3d.py VAEDecodeHunyuan3D",
            inputs=(
                _link("samples", "LATENT"),
                _link("vae", "VAE"),
                _int("num_chunks", 8000, 1000, 500000),
                _int("octree_resolution", 256, 16, 512),
            ),
            outputs=(Output("VOXEL"),),
            combo_style="v3",
        ),
        NodeSchema(
            "VoxelToMesh", "VoxelToMesh", "3d", "comfy_extras/nodes_hunyuan3d.py VoxelToMesh",
            inputs=(
                _link("voxel", "VOXEL"),
                _combo("algorithm", ("surface net", "basic")),
                _float("threshold", 0.6, -1.0, 1.0, 0.01),
            ),
            outputs=(Output("MESH"),),
            combo_style="v3",
        ),
        NodeSchema(
            "SaveGLB", "Save 3D Model", "3d", "comfy_extras/nodes_hunyuan3d.py SaveGLB",
            inputs=(_link("mesh", MESH_OR_3D_FILE), Input("filename_prefix", "STRING", default="3d/ComfyUI")),
            output_node=True,
            hidden=("PROMPT", "EXTRA_PNGINFO"),
            combo_style="v3",
            trailing_widgets=(("image", ""),),  # the frontend's 3D preview widget
        ),
    )
}  # fmt: skip

# Nodes that exist only in the frontend (notes): UI format only, never sent to /prompt.
FRONTEND_ONLY: dict[str, tuple[str, ...]] = {"MarkdownNote": ("text",), "Note": ("text",)}


def schema(class_type: str) -> NodeSchema:
    try:
        return NODES[class_type]
    except KeyError:
        raise KeyError(f"no schema for ComfyUI node {class_type!r}; known: {', '.join(sorted(NODES))}") from None
