"""Copies that must exist stay copies (issue 18 item 6).

The plugins are single files Open WebUI ``exec()``s: they cannot import the package, so what they share with it is
copied and marked on the line above with ``# Copied from alch3mist.<module>.<name>`` (as diffusers marks its copies).
Each marked copy must equal its source: a constant by value, a function by its code (docstring included).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted([*ROOT.glob("pipelines/*.py"), *ROOT.glob("tools/*.py")])
MARKER = re.compile(r"^# Copied from (alch3mist(?:\.\w+)+)\.(\w+)\s*$")


@dataclass
class Copy:
    path: Path
    line: int
    source: str  # "alch3mist.domain.STAGE_LABELS"
    node: ast.stmt

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} (copy of {self.source})"


def marked_copies(path: Path) -> list[Copy]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    copies = []
    for node in ast.parse(text).body:
        match = MARKER.match(lines[node.lineno - 2]) if node.lineno >= 2 else None
        if match:
            copies.append(Copy(path, node.lineno, f"{match.group(1)}.{match.group(2)}", node))
    return copies


def drift(copy: Copy) -> str | None:
    """Why the copy differs from its source; None when it is equal."""
    module_name, _, name = copy.source.rpartition(".")
    original: Any = getattr(importlib.import_module(module_name), name)
    node = copy.node
    if isinstance(node, ast.Assign | ast.AnnAssign):
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        if not isinstance(target, ast.Name) or target.id != name or node.value is None:
            return f"the marked statement does not assign {name}"
        value = ast.literal_eval(node.value)
        return None if value == original else f"value {value!r} != {original!r}"
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        if node.name != name:
            return f"the marked definition is {node.name}, not {name}"
        theirs = ast.unparse(ast.parse(textwrap.dedent(inspect.getsource(original))).body[0])
        return None if ast.unparse(node) == theirs else f"the code differs from {inspect.getsourcefile(original)}"
    return f"a {type(node).__name__} cannot be checked"


ALL_COPIES = [copy for path in PLUGINS for copy in marked_copies(path)]


@pytest.mark.parametrize("copy", ALL_COPIES, ids=str)
def test_each_marked_copy_equals_its_source(copy: Copy) -> None:
    assert drift(copy) is None, f"{copy}: {drift(copy)}"


def test_the_copies_the_plugins_need_are_marked() -> None:
    marked = {(copy.path.name, copy.source) for copy in ALL_COPIES}
    for plugin in ("alch3mist_pipe.py", "alch3mist_pipeline.py", "alch3mist_tool.py"):
        assert (plugin, "alch3mist.domain.STAGE_LABELS") in marked, plugin  # the labels that had drifted
    for plugin in ("alch3mist_pipe.py", "alch3mist_pipeline.py"):
        assert (plugin, "alch3mist.api.chat.md_text") in marked, plugin
        assert (plugin, "alch3mist.api.chat.md_code") in marked, plugin


def test_a_drifted_copy_is_caught(tmp_path: Path) -> None:
    """The checker itself: the labels as they had drifted in the tool, and an edited md_text, are both reported."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "# Copied from alch3mist.domain.STAGE_LABELS\n"
        'STAGE_LABELS = {"rewrite": "Writing the prompts", "base_image": "Painting the base image"}\n\n\n'
        "# Copied from alch3mist.api.chat.md_code\n"
        "def md_code(text):\n    return str(text)\n"
    )
    found = marked_copies(plugin)
    assert [copy.source for copy in found] == ["alch3mist.domain.STAGE_LABELS", "alch3mist.api.chat.md_code"]
    assert all(drift(copy) for copy in found)
