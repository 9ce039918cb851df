"""Metallic and roughness factors for the material a request names ("gold", "crocodile leather"…).

The edit paints colour only; how shiny or metallic a surface is goes into the glTF material's two factors. The table
is short and explicit: the first row with a word in the request's materials wins, metals first (a "gold leather" is
read as gold). Unknown materials keep the mesh's own factors, else a matte, non-metal default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_FACTORS", "PbrFactors", "pbr_factors"]


@dataclass(frozen=True)
class PbrFactors:
    """glTF ``metallicFactor`` and ``roughnessFactor`` (0..1), and where they came from."""

    metallic: float
    roughness: float
    source: str  # "material 'gold'", "the mesh's material" or "default"


DEFAULT_FACTORS = PbrFactors(metallic=0.0, roughness=0.8, source="default")

# (words, metallic, roughness) — first match wins
_TABLE: tuple[tuple[frozenset[str], float, float], ...] = (
    (frozenset({"mirror", "chrome", "chromed", "polished"}), 1.0, 0.08),
    (frozenset({"gold", "golden", "silver", "platinum"}), 1.0, 0.2),
    (
        frozenset(
            {"metal", "metallic", "steel", "iron", "copper", "bronze", "brass", "aluminium", "aluminum", "titanium"}
        ),
        1.0,
        0.35,
    ),
    (frozenset({"rust", "rusty", "rusted"}), 0.4, 0.85),
    (frozenset({"glass", "crystal", "ice", "diamond"}), 0.0, 0.05),
    (frozenset({"porcelain", "ceramic", "glazed", "enamel", "lacquer", "lacquered", "varnished"}), 0.0, 0.15),
    (frozenset({"plastic", "vinyl", "latex", "rubber"}), 0.0, 0.4),
    (frozenset({"marble", "jade", "pearl", "obsidian"}), 0.0, 0.25),
    (frozenset({"leather", "skin", "scales", "scaly", "crocodile", "snake", "lizard"}), 0.0, 0.55),
    (frozenset({"wood", "wooden", "bark", "oak", "walnut", "bamboo"}), 0.0, 0.7),
    (frozenset({"stone", "rock", "concrete", "clay", "sand", "brick", "terracotta"}), 0.0, 0.9),
    (frozenset({"fabric", "cloth", "wool", "felt", "fur", "velvet", "cotton", "knitted", "moss", "grass"}), 0.0, 0.95),
)


def pbr_factors(materials: Sequence[str], fallback: PbrFactors | None = None) -> PbrFactors:
    """The factors of the first known material word in ``materials``; else ``fallback``; else the default."""
    words = {word for material in materials for word in re.findall(r"[a-z]+", material.lower())}
    for names, metallic, roughness in _TABLE:
        found = sorted(names & words)
        if found:
            return PbrFactors(metallic=metallic, roughness=roughness, source=f"material {found[0]!r}")
    return fallback or DEFAULT_FACTORS
