"""`alch3mist` as a person runs it: a real subprocess, the tiny preset, the preview engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "alch3mist.cli"]


def _alch3mist(*args: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the command on the tiny preset, offline; ``settings`` are more ``ALCH3MIST_*`` variables by field name."""
    env = {
        **os.environ,
        "ALCH3MIST_CACHE_DIR": str(REPO / ".cache" / "alch3mist-tests"),
        "ALCH3MIST_DATA_DIR": str(tmp_path / "data"),
        "ALCH3MIST_PRESET": "tiny",
        "ALCH3MIST_LLM_URL": "",
        **{f"ALCH3MIST_{name.upper()}": value for name, value in settings.items()},
    }
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def test_generate_writes_the_outputs_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _alch3mist(
        "generate",
        "une chaise en cuir de crocodile",
        "--seed",
        "3",
        "--views",
        "2",
        "--view-size",
        "128",
        "--out",
        str(out),
        tmp_path=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["seed"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompt"]["language"] == "fr"
    assert manifest["preset"] == "tiny" and manifest["engine_3d"] == "preview"
    for name in ["base.png", "textured.png", "model.glb", "views/view_01.png", "contact_sheet.png", "viewer.html"]:
        assert (out / name).exists(), name
    assert "material_edit" in result.stderr  # the per-stage progress bars


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["generate", "   "], "empty"),
        (["generate", "a vase of jade", "--lora", "missing"], "unknown LoRA 'missing'"),
        (["generate", "a vase of jade", "--image", "README.md"], "not a readable image"),
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_line(args: list[str], says: str, tmp_path: Path) -> None:
    result = _alch3mist(*args, "--out", str(tmp_path / "out"), tmp_path=tmp_path)

    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_without_a_broker_exits_with_one_clear_line(tmp_path: Path) -> None:
    result = _alch3mist("worker", "--preset", "tiny", tmp_path=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "needs ALCH3MIST_BROKER_URL" in result.stderr and "Traceback" not in result.stderr
