"""``alch3mist retexture MESH "request"``: texture a mesh you already have, from a material request.

The chain's retexture flow (``GenerationRequest.mesh``): rewrite → texture → views → viewer, with the base image,
material edit and 3D engine skipped. The output folder holds what ``alch3mist generate`` writes — ``model.glb``,
``texture.png``, ``views/``, ``contact_sheet.png``, ``viewer.html``, ``manifest.json`` — plus what the texture engine
was shown and made (``texture_views/``).

The mesh is checked before any model loads (:func:`~alch3mist.texturing.mesh_input.load_mesh`, the loader the API
will use for uploads): a wrong file fails in a second with a clear message.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from ..config import Settings, TextureEngineName
from ..domain import LoraChoice
from ..errors import InvalidRequest
from ..stages.image_to_3d import open_image
from .mesh_input import MeshLimits, load_mesh

if TYPE_CHECKING:
    from ..chain import GenerationRequest
    from .mesh_input import LoadedMesh

__all__ = ["add_arguments", "main"]

logger = logging.getLogger(__name__)

EXAMPLE = "make it crocodile leather"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", type=Path, help="The mesh to texture: GLB, glTF (data embedded), OBJ or PLY.")
    parser.add_argument("request", nargs="?", default=None, help=f'The material, in any language (e.g. "{EXAMPLE}").')
    parser.add_argument("--out", type=Path, required=True, help="Output folder (model.glb, texture.png, views, …).")
    parser.add_argument("--image", type=Path, default=None, help="A reference picture of the material or look.")
    parser.add_argument(
        "--texture-engine",
        choices=get_args(TextureEngineName),
        default=None,
        help="alch3mist: built-in multi-view Kontext + LoRA; hunyuan3d: a Hunyuan3D-2.0 api_server with --enable_tex; "
        "trellis2: TRELLIS.2's texturing app (default: ALCH3MIST_TEXTURE_ENGINE).",
    )
    parser.add_argument("--views", type=int, default=8, help="Views edited and projected (2-16).")
    parser.add_argument("--view-size", type=int, default=512, help="Side of each edited view in pixels (64-1024).")
    parser.add_argument("--texture-size", type=int, default=2048, help="Side of the texture in pixels (64-4096).")
    parser.add_argument(
        "--seed", type=int, default=None, help="Seed; the same mesh + request + seed repeats the result."
    )
    parser.add_argument(
        "--preset",
        choices=("tiny", "full", "auto"),
        default=None,
        help="tiny: random local models (CPU, offline); full: real weights; auto: full on CUDA (default: settings).",
    )
    parser.add_argument("--lora", default=None, help="LoRA name from the LoRA folder (default: the server default).")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength; 0 runs the edit without it.")
    parser.add_argument("--edit-prompt", default=None, help="Already-written Kontext instruction (skips the rewrite).")
    parser.add_argument("--edit-steps", type=int, default=None, help="Kontext denoising steps (default: by preset).")
    parser.add_argument(
        "--camera", choices=("orthographic", "perspective"), default="orthographic", help="Camera of the views."
    )
    parser.add_argument("--elevation", type=float, default=20.0, help="Views alternate ± this many degrees (0-60).")
    parser.add_argument("--no-delight", action="store_true", help="Keep the edit's shading in the texture.")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="The mesh's up axis (glTF: y).")
    parser.add_argument(
        "--decimate", action="store_true", help="Simplify a mesh over the face limit instead of refusing it."
    )
    parser.add_argument("--render-views", type=int, default=8, help="Turntable renders of the result (0 = none).")
    parser.add_argument("--render-size", type=int, default=512, help="Side of each turntable render in pixels.")


def main(args: argparse.Namespace) -> int:
    """Check the mesh and options, load the models, run the chain's retexture flow; 0 when every stage succeeded."""
    from ..chain import build_chain
    from ..cli import finish, run_with_progress

    settings = Settings(**({"preset": args.preset} if args.preset else {}))
    # 1. Check the inputs before loading any model
    mesh = load_mesh(args.mesh, limits=MeshLimits.from_settings(settings, decimate=args.decimate), up_axis=args.up_axis)
    for note in mesh.notes:
        logger.info("mesh: %s", note)
    req = request_from_args(args, mesh)
    # 2. Load the models once, and check what needs them (LoRA names, the texture engine)
    chain = build_chain(settings)
    chain.validate(req)
    # 3. Run, with progress bars; Ctrl-C cancels at the next step
    manifest = run_with_progress(chain, req, args.out)
    coverage = manifest.texture.coverage if manifest.texture else None
    engine = manifest.texture.engine if manifest.texture else None
    return finish(manifest, args.out, texture_engine=engine, coverage=coverage)


def request_from_args(args: argparse.Namespace, mesh: LoadedMesh) -> GenerationRequest:
    """The chain request for the command line's options (pydantic's range checks as one clear ``InvalidRequest``)."""
    from ..chain import GenerationRequest, TextureRequest

    reference = None
    if args.image is not None:
        if not args.image.is_file():
            raise InvalidRequest(f"--image {args.image}: no such file")
        reference = open_image(args.image)
    lora = LoraChoice(name=args.lora, scale=args.lora_scale) if args.lora or args.lora_scale != 1.0 else None
    with _flags_named(TEXTURE_FLAGS):
        texture = TextureRequest(
            views=args.views,
            view_size=args.view_size,
            elevation=args.elevation,
            camera=args.camera,
            delight=not args.no_delight,
        )
    with _flags_named(REQUEST_FLAGS):
        return GenerationRequest(
            request=args.request,
            edit_prompt=args.edit_prompt,
            mesh=mesh,
            reference_image=reference,
            seed=args.seed,
            lora=lora,
            edit_steps=args.edit_steps,
            texture_size=args.texture_size,
            views=args.render_views,
            view_size=args.render_size,
            texture_engine=args.texture_engine,
            texture=texture,
        )


# The command line's names for the request's fields, so a refusal names the flag the person typed
TEXTURE_FLAGS = {"views": "--views", "view_size": "--view-size", "elevation": "--elevation"}
REQUEST_FLAGS = {
    "texture_size": "--texture-size",
    "seed": "--seed",
    "edit_steps": "--edit-steps",
    "views": "--render-views",
    "view_size": "--render-size",
}


@contextmanager
def _flags_named(flags: dict[str, str]) -> Iterator[None]:
    """pydantic's range checks as one ``InvalidRequest`` naming the flags."""
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "option"
            problems.append(f"{flags.get(field, field)}: {error['msg'].lower()}")
        raise InvalidRequest("; ".join(problems)) from exc
