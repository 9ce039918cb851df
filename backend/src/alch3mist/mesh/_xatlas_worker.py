"""UV-unwrap one mesh with xatlas, in its own process (xatlas is slow and can crash on large meshes).

Usage: ``python -m alch3mist.mesh._xatlas_worker IN.npz OUT.npz [RESOLUTION]``; IN holds ``vertices`` and ``faces``,
OUT gets ``vmapping``, ``indices`` and ``uvs``. Charts are packed for a RESOLUTION² texture (default 1024) with a
2-texel gutter, so bilinear filtering never mixes two charts.
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    import xatlas

    source, target = argv[0], argv[1]
    resolution = int(argv[2]) if len(argv) > 2 else 1024
    with np.load(source) as data:
        vertices = np.ascontiguousarray(data["vertices"], dtype=np.float32)
        faces = np.ascontiguousarray(data["faces"], dtype=np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices, faces)
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = 2
    atlas.generate(xatlas.ChartOptions(), pack)
    vmapping, indices, uvs = atlas[0]
    np.savez(target, vmapping=vmapping, indices=indices, uvs=uvs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
