"""A job's input files: stored in its folder, never taken for artifacts, and read back into the same request — the
mesh loaded again with the options it was accepted with."""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh
from alch3mist.config import Settings
from alch3mist.errors import MeshTooLarge
from alch3mist.jobs.inputs import (
    JobInputs,
    MeshUpload,
    generation_request,
    input_files,
    job_request,
    load_upload,
    save_inputs,
    stored_mesh,
)
from PIL import Image


def _settings(tmp_path: Path, max_faces: int = 1000) -> Settings:
    return Settings(data_dir=tmp_path, mesh_max_faces=max_faces)


def test_inputs_round_trip_through_the_job_folder(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = bytes(trimesh.creation.icosphere(subdivisions=2).export(file_type="glb"))  # 320 faces
    upload = MeshUpload(data, "ball.glb")
    inputs = JobInputs(mesh=load_upload(upload, settings), mesh_bytes=data, reference_image=Image.new("RGB", (80, 64)))
    save_inputs(tmp_path, inputs)

    assert stored_mesh(tmp_path) == tmp_path / "input_mesh.glb"
    assert (tmp_path / "input_mesh.glb").read_bytes() == data
    params = {"request": "make it gold", "mesh_filename": "ball.glb", "mesh_max_faces": 1000}
    request = job_request(params, tmp_path)
    assert request.flow == "retexture" and len(request.mesh.mesh.faces) == 320
    assert request.reference_image.size == (80, 64) and request.base_image is None


def test_the_mesh_reloads_with_the_options_and_limit_it_was_accepted_with(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_faces=100)
    data = bytes(trimesh.creation.icosphere(subdivisions=2).export(file_type="glb"))  # 320 faces > 100
    with pytest.raises(MeshTooLarge, match="decimate=true"):
        load_upload(MeshUpload(data), settings)
    mesh = load_upload(MeshUpload(data, decimate=True), settings)
    save_inputs(tmp_path, JobInputs(mesh=mesh, mesh_bytes=data))
    params = {"request": "make it gold", "decimate": True, "mesh_max_faces": 100}
    request = job_request(params, tmp_path)  # decimated again when it runs, to the limit it was accepted with
    assert len(request.mesh.mesh.faces) <= 100
    with pytest.raises(MeshTooLarge):  # (and not to another: no decimation asked, a lower limit)
        job_request({"request": "make it gold", "mesh_max_faces": 100}, tmp_path)
    options = {"mesh_filename": "x", "decimate": False, "mesh_max_faces": 9}  # never reach the chain's request
    assert generation_request({"request": "a cup", **options}, JobInputs()).flow == "generate"


def test_inputs_are_not_artifacts() -> None:
    names = {"input.png", "reference.png", "input_mesh.obj", "model.glb", "views/view_00.png", "texture.png"}
    assert input_files(names) == {"input.png", "reference.png", "input_mesh.obj"}
