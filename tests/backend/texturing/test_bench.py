"""bench/texture.py in its CPU ``--tiny`` form: every step runs and is timed."""

from __future__ import annotations

from bench import texture


def test_the_texture_benchmark_times_every_step() -> None:
    medians = texture.main(["--tiny"])
    steps = {
        "load + check + normalise",
        "UV check (keep the mesh's UVs?)",
        *texture.PROJECTION_STEPS,
        "G-buffers + neutral renders (VTK child)",
        "GLB: post-processing + validation",
        "xatlas unwrap (a mesh without UVs; own process)",
        "projection + fill",
    }
    assert set(medians) == steps
    assert all(seconds > 0 for seconds in medians.values())
    assert medians["projection + fill"] == sum(medians[step] for step in texture.PROJECTION_STEPS)
