"""UV-unwrap one mesh with xatlas, in its own process (xatlas is slow and can crash on large meshes).

Usage: ``python -m alch3mist.mesh._xatlas_worker IN.npz OUT.npz``; IN holds ``vertices`` and ``faces``, OUT gets
``vmapping``, ``indices`` and ``uvs`` (xatlas.parametrize's results).
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    import xatlas

    source, target = argv
    with np.load(source) as data:
        vertices = np.ascontiguousarray(data["vertices"], dtype=np.float32)
        faces = np.ascontiguousarray(data["faces"], dtype=np.uint32)
    vmapping, indices, uvs = xatlas.parametrize(vertices, faces)
    np.savez(target, vmapping=vmapping, indices=indices, uvs=uvs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
