"""Metallic / roughness factors from the request's materials."""

from __future__ import annotations

import pytest
from alch3mist.texturing.pbr import DEFAULT_FACTORS, PbrFactors, pbr_factors


@pytest.mark.parametrize(
    ("materials", "metallic", "roughness", "word"),
    [
        (["polished gold"], 1.0, 0.08, "polished"),
        (["gold"], 1.0, 0.2, "gold"),
        (["crocodile leather"], 0.0, 0.55, "crocodile"),
        (["Gold leather"], 1.0, 0.2, "gold"),  # metals come first
        (["weathered oak wood"], 0.0, 0.7, "oak"),
        (["rusty iron"], 1.0, 0.35, "iron"),
    ],
)
def test_known_materials(materials: list[str], metallic: float, roughness: float, word: str) -> None:
    factors = pbr_factors(materials)
    assert (factors.metallic, factors.roughness) == (metallic, roughness)
    assert word in factors.source


def test_unknown_materials_keep_the_mesh_factors_else_the_default() -> None:
    mesh = PbrFactors(metallic=0.3, roughness=0.4, source="the mesh's material")
    assert pbr_factors(["flames"], mesh) is mesh
    assert pbr_factors(["flames"]) is DEFAULT_FACTORS
