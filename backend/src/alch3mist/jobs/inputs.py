"""A job's input files, kept in its folder so a queued job survives a restart and a child job can reuse them.

- ``input.png`` — the image the material edit starts from (the caller's, or a parent's base image);
- ``input_mesh.<glb|gltf|obj|ply>`` — the mesh to texture, exactly the bytes the caller sent (the retexture flow);
- ``reference.png`` — with a mesh: a picture of the material or look.

The mesh is read by ``texturing.mesh_input.load_mesh`` when the job is submitted (so everything that can fail, fails
then, with a 4xx) and again when it runs — wherever it runs — with the options and the face limit it was accepted
with, which travel in the job's parameters (``mesh_filename``, ``decimate``, ``mesh_max_faces``): a settings change
in between cannot make an accepted job fail. :func:`generation_request` takes them out before building the chain's
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..config import Settings

if TYPE_CHECKING:
    from ..texturing.mesh_input import LoadedMesh

__all__ = [
    "INPUT_IMAGE",
    "MESH_OPTIONS",
    "REFERENCE_IMAGE",
    "JobInputs",
    "MeshUpload",
    "generation_request",
    "input_files",
    "input_mesh_name",
    "job_request",
    "load_upload",
    "save_inputs",
    "stored_mesh",
]

INPUT_IMAGE = "input.png"
INPUT_MESH = "input_mesh"  # + the format's suffix
REFERENCE_IMAGE = "reference.png"
MESH_OPTIONS = ("mesh_filename", "decimate", "mesh_max_faces")  # job parameters: how to load the mesh, not how to run


@dataclass(frozen=True)
class MeshUpload:
    """A mesh file as the caller sent it: its bytes, its name (only OBJ vs PLY text needs it) and whether a mesh
    over the face limit may be decimated."""

    data: bytes
    filename: str | None = None
    decimate: bool = False


@dataclass
class JobInputs:
    """What a job starts from besides its parameters."""

    base_image: Image.Image | None = None
    mesh: LoadedMesh | None = None
    mesh_bytes: bytes | None = None
    reference_image: Image.Image | None = None


def load_upload(upload: MeshUpload, settings: Settings) -> LoadedMesh:
    """Read and check an uploaded mesh; ``InvalidMesh`` (422) / ``MeshTooLarge`` (413) for what cannot be textured."""
    from ..texturing.mesh_input import MeshLimits, load_mesh

    limits = MeshLimits.from_settings(settings, decimate=upload.decimate)
    return load_mesh(upload.data, limits=limits, filename=upload.filename or "the mesh")


def _reload(data: bytes, params: dict[str, Any]) -> LoadedMesh:
    """The stored mesh, loaded as it was accepted (its size was checked then)."""
    from ..texturing.mesh_input import MeshLimits, load_mesh

    limits = MeshLimits(len(data), int(params["mesh_max_faces"]), decimate=bool(params.get("decimate")))
    return load_mesh(data, limits=limits, filename=params.get("mesh_filename") or "the mesh")


def save_inputs(job_dir: Path, inputs: JobInputs) -> list[str]:
    """Write the inputs into the job folder; returns the names written."""
    written = []
    if inputs.base_image is not None:
        inputs.base_image.save(job_dir / INPUT_IMAGE)
        written.append(INPUT_IMAGE)
    if inputs.mesh is not None and inputs.mesh_bytes is not None:
        name = f"{INPUT_MESH}.{inputs.mesh.source_format}"
        (job_dir / name).write_bytes(inputs.mesh_bytes)
        written.append(name)
    if inputs.reference_image is not None:
        inputs.reference_image.save(job_dir / REFERENCE_IMAGE)
        written.append(REFERENCE_IMAGE)
    return written


def input_mesh_name(names: list[str]) -> str | None:
    """Which of a job's file names is its input mesh, if any."""
    return next((name for name in sorted(names) if name.startswith(f"{INPUT_MESH}.")), None)


def stored_mesh(job_dir: Path) -> Path | None:
    """The job's input mesh file in its folder, if it has one."""
    name = input_mesh_name([path.name for path in job_dir.glob(f"{INPUT_MESH}.*")])
    return None if name is None else job_dir / name


def input_files(names: set[str]) -> set[str]:
    """Which of ``names`` (paths relative to a job folder) are inputs, not artifacts."""
    return {name for name in names if name in (INPUT_IMAGE, REFERENCE_IMAGE) or name.startswith(f"{INPUT_MESH}.")}


def generation_request(params: dict[str, Any], inputs: JobInputs) -> Any:
    """The chain's ``GenerationRequest`` for a job's stored parameters and its inputs."""
    from ..chain import GenerationRequest  # the chain module pulls in the model stack; import it late

    chain_params = {name: value for name, value in params.items() if name not in MESH_OPTIONS}
    return GenerationRequest(
        **chain_params, base_image=inputs.base_image, mesh=inputs.mesh, reference_image=inputs.reference_image
    )


def job_request(params: dict[str, Any], job_dir: Path) -> Any:
    """The request a stored job runs: its parameters and the input files in its folder (the mesh loaded again,
    with the options and face limit it was accepted with)."""
    inputs = JobInputs(base_image=_image(job_dir / INPUT_IMAGE), reference_image=_image(job_dir / REFERENCE_IMAGE))
    mesh_path = stored_mesh(job_dir)
    if mesh_path is not None:
        inputs.mesh = _reload(mesh_path.read_bytes(), params)
    return generation_request(params, inputs)


def _image(path: Path) -> Image.Image | None:
    if not path.is_file():
        return None
    with Image.open(path) as image:
        image.load()
        return image.copy()
