"""The chat-ready summary of a finished job: what was made or where it failed, every written text escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from alch3mist.api.chat import chat_summary, md_code, md_text
from alch3mist.api.schemas import JobPublic

HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) ![i](http://e/x.png) **b** $x$ \\(y\\)"


def _job(**fields: Any) -> JobPublic:
    return JobPublic.model_validate({"id": "a" * 32, "created_at": datetime.now(UTC), **fields})


def _unescaped(text: str, pattern: str) -> bool:
    return re.search(rf"(?<!\\){pattern}", text) is not None


def test_markdown_escaping() -> None:
    text = md_text(HOSTILE)
    assert not _unescaped(text, "[<>]") and not _unescaped(text, r"\]\(")  # no HTML tag, no link
    assert not _unescaped(text, r"\$") and "\\\\(" in text  # no math: $ and \ are escaped
    assert "(y" in text  # parentheses stay as they are (an escaped one would open KaTeX math)
    assert md_code("a `b` c\nd") == "a 'b' c d"


def test_a_success_lists_prompts_seed_engine_lora_and_the_marker() -> None:
    prompt = {"subject": "a cow", "materials": ["gold"], "base_prompt": HOSTILE, "edit_prompt": "Alch3mist, " + HOSTILE,
              "title": "<b>Cow</b>", "rewriter": "caller"}  # fmt: skip
    lora = {"name": "alch3mist", "scale": 0.5}
    warnings = ["careful <img src=x onerror=alert(1)>"]
    job = _job(status="succeeded", prompt=prompt, seed=7, engine_3d="preview", lora=lora, warnings=warnings)
    summary = chat_summary(job)
    lines = summary.splitlines()
    assert lines[0] == "### \\<b\\>Cow\\</b\\>"
    assert "- **Seed:** 7" in lines and "- **LoRA:** alch3mist × 0.5" in lines
    assert "- **Prompts written by:** the caller (e.g. the rewrite model in Open WebUI)" in lines
    assert any(line.startswith("- **3D engine:** preview (the built-in CPU engine") for line in lines)
    assert lines[-1] == "- *Warning:* careful \\<img src=x onerror=alert(1)\\>"
    body = "\n".join(line.removeprefix("- **").split(":**", 1)[-1] for line in lines)
    assert not _unescaped(body, "<(script|img|b)") and not _unescaped(body, r"\]\(javascript")


def test_a_failure_names_the_stage_and_keeps_the_results() -> None:
    error = {"code": "engine_unavailable", "message": "TRELLIS <down>", "stage": "mesh"}
    summary = chat_summary(_job(status="failed", stage="mesh", error=error))
    assert summary.startswith("**The generation failed at: Building the 3D mesh** — TRELLIS \\<down\\>")
    assert "The results above were finished before the failure." in summary
    assert "- **LoRA:** none" in summary
    assert chat_summary(_job(status="cancelled")).startswith("**The generation was cancelled.**")


def test_a_retextured_mesh_names_the_mesh_and_texture_engine_not_a_base_prompt_or_3d_engine() -> None:
    prompt = {"subject": "a chair", "materials": ["leather"], "base_prompt": "A chair", "rewriter": "offline",
              "edit_prompt": "Alch3mist, crocodile leather", "title": "Leather chair"}  # fmt: skip
    manifest = {
        "flow": "retexture",
        "input_mesh": {"format": "glb", "faces": 1234, "notes": ["merged 6 primitives <b>"]},
        "texture": {"engine": "alch3mist", "coverage": 0.987},
    }
    job = _job(status="succeeded", prompt=prompt, seed=3, engine_3d="preview", manifest=manifest)
    lines = chat_summary(job).splitlines()
    assert "- **Mesh:** your GLB, 1,234 faces, painted as given" in lines
    assert "- **Texture engine:** alch3mist (99% of the surface seen by its views)" in lines
    assert "- *Mesh:* merged 6 primitives \\<b\\>" in lines
    assert not any(line.startswith(("- **Base prompt:", "- **3D engine:")) for line in lines)
    assert "- **Material prompt:** Alch3mist, crocodile leather" in lines
