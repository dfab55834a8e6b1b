"""The engine never imports bpy, directly or through anything it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "addon" / "engine"


def engine_modules() -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in ENGINE.rglob("*.py")
    )


def test_engine_has_the_expected_modules():
    modules = engine_modules()
    for name in ("distributions", "estimators", "objectives", "networks", "optimizer", "training", "synthetic"):
        assert f"addon.engine.{name}" in modules


def test_importing_every_engine_module_does_not_load_bpy():
    script = (
        "import importlib, sys\n"
        f"for name in {engine_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'bpy' or m.startswith(('bpy.', 'bpy_', '_bpy')))\n"
        "assert not loaded, loaded\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


BLENDER_MODULES = {"bpy", "bpy_extras", "bmesh", "mathutils", "gpu", "bl_math", "bl_ui", "addon_utils"}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, relative imports resolved against ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # "from .. import blender" imports the module addon.blender: keep the imported name.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            found += [(node.lineno, arg.value) for arg in node.args[:1] if isinstance(arg, ast.Constant)]
    return found


def is_blender(name: str) -> bool:
    return name.split(".")[0] in BLENDER_MODULES or name.startswith("addon.blender")


def test_no_engine_file_imports_blender_modules():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(ENGINE.rglob("*.py"))
        for line, name in imported_modules(
            path.read_text(encoding="utf-8"), ".".join(path.relative_to(ROOT).parent.parts)
        )
        if is_blender(name)
    ]
    assert not offenders, offenders


def test_the_import_scan_sees_direct_relative_and_dynamic_imports():
    source = "import bpy.props\nfrom ..blender import rna\nfrom .. import blender\nimportlib.import_module('bmesh')\n"
    names = [name for _, name in imported_modules(source, "addon.engine")]
    assert names == ["bpy.props", "addon.blender.rna", "addon.blender", "bmesh"]
    assert all(is_blender(name) for name in names)
    assert not is_blender("addon.engine.optimizer") and not is_blender("torch")
