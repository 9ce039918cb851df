"""The Khronos glTF-Validator (npm ``gltf-validator``), run through node in a subprocess.

Where it is looked for: ``$ALCH3MIST_GLTF_VALIDATOR_DIR`` (a folder holding ``node_modules/gltf-validator``), else
``<repository>/.cache/gltf-validator`` where ``scripts/setup-engine-test-servers.sh`` installs the pinned version.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MeshError

logger = logging.getLogger(__name__)

ENV_DIR = "ALCH3MIST_GLTF_VALIDATOR_DIR"
_REPO_CACHE = Path(__file__).resolve().parents[4] / ".cache" / "gltf-validator"

# Reads the GLB named by the last argument, prints the validator's JSON report on stdout.
_NODE_SCRIPT = """
const validator = require('gltf-validator');
const fs = require('fs');
const path = process.argv[process.argv.length - 1];
const bytes = new Uint8Array(fs.readFileSync(path));
validator.validateBytes(bytes, {maxIssues: 100})
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((error) => { process.stderr.write(String(error)); process.exit(2); });
"""


@dataclass
class ValidationReport:
    errors: int
    warnings: int
    infos: int
    hints: int
    validator_version: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        worst = sorted(self.messages, key=lambda m: int(m.get("severity", 9)))[:limit]
        return "; ".join(f"{m.get('code')} at {m.get('pointer', '?')}: {m.get('message')}" for m in worst)

    def as_dict(self) -> dict[str, Any]:
        return {
            "validator": f"gltf-validator {self.validator_version}",
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.infos,
            "hints": self.hints,
        }


def validator_dir() -> Path | None:
    """The folder whose ``node_modules`` holds gltf-validator, or None when it is not installed."""
    candidates = [Path(os.environ[ENV_DIR])] if os.environ.get(ENV_DIR) else []
    candidates.append(_REPO_CACHE)
    for candidate in candidates:
        if (candidate / "node_modules" / "gltf-validator" / "package.json").is_file():
            return candidate
    return None


def validator_available() -> bool:
    return shutil.which("node") is not None and validator_dir() is not None


def run_validator(path: Path, timeout_s: float = 120.0) -> ValidationReport:
    """The validator's report on ``path``; ``MeshError`` only when the validator itself cannot run."""
    node = shutil.which("node")
    folder = validator_dir()
    if node is None or folder is None:
        raise MeshError(
            "the glTF validator is not installed (needs node and npm gltf-validator): "
            f"run scripts/setup-engine-test-servers.sh or set {ENV_DIR}"
        )
    env = {**os.environ, "NODE_PATH": str(folder / "node_modules")}
    try:
        done = subprocess.run(
            [node, "-e", _NODE_SCRIPT, str(path.resolve())],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MeshError(f"the glTF validator timed out after {timeout_s:.0f} s on {path.name}") from exc
    if done.returncode != 0:
        raise MeshError(f"the glTF validator could not read {path.name}: {done.stderr.strip()[:500]}")
    return _parse(done.stdout)


def validate_glb(path: Path, timeout_s: float = 120.0) -> ValidationReport:
    """Validate ``path``; ``MeshError`` (listing the first errors) when the validator finds any error."""
    report = run_validator(path, timeout_s)
    if report.errors:
        raise MeshError(f"{path.name} fails glTF validation with {report.errors} error(s): {report.summary()}")
    logger.debug("%s: glTF valid (%d warnings)", path.name, report.warnings)
    return report


def _parse(stdout: str) -> ValidationReport:
    raw = json.loads(stdout)
    issues = raw.get("issues", {})
    return ValidationReport(
        errors=int(issues.get("numErrors", 0)),
        warnings=int(issues.get("numWarnings", 0)),
        infos=int(issues.get("numInfos", 0)),
        hints=int(issues.get("numHints", 0)),
        validator_version=str(raw.get("validatorVersion", "?")),
        messages=list(issues.get("messages", [])),
    )
