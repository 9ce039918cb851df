"""Optional meshopt compression (``EXT_meshopt_compression`` + ``KHR_mesh_quantization``) with gltfpack from npm.

A compressed GLB is an extra artifact for the web viewer only (it needs a local meshopt decoder; VTK and trimesh
cannot read it). It is made from a GLB that already passed validation. gltfpack is looked for next to the glTF
validator (``scripts/setup-engine-test-servers.sh`` installs both).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshError
from .validate import validator_dir


@dataclass
class CompressionReport:
    bytes_before: int
    bytes_after: int
    tool: str = "gltfpack -cc (EXT_meshopt_compression)"

    @property
    def ratio(self) -> float:
        return self.bytes_after / self.bytes_before if self.bytes_before else 1.0


def gltfpack_cli() -> Path | None:
    folder = validator_dir()
    cli = folder / "node_modules" / "gltfpack" / "cli.js" if folder else None
    return cli if cli is not None and cli.is_file() else None


def compressor_available() -> bool:
    return shutil.which("node") is not None and gltfpack_cli() is not None


def compress_glb(src: Path, dst: Path, timeout_s: float = 120.0) -> CompressionReport:
    """Write a meshopt-compressed copy of ``src`` to ``dst``; ``MeshError`` when gltfpack is missing or fails."""
    node, cli = shutil.which("node"), gltfpack_cli()
    if node is None or cli is None:
        raise MeshError("gltfpack is not installed (needs node): run scripts/setup-engine-test-servers.sh")
    command = [node, str(cli), "-i", str(src.resolve()), "-o", str(dst.resolve()), "-cc"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MeshError(f"gltfpack timed out after {timeout_s:.0f} s on {src.name}") from exc
    if done.returncode != 0 or not dst.is_file():
        raise MeshError(f"gltfpack failed on {src.name} (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return CompressionReport(bytes_before=src.stat().st_size, bytes_after=dst.stat().st_size)
