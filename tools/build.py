"""Build ``dist/scenefit-<version>.zip`` with Blender's own extension builder, then validate it.

Uses ``$BLENDER --command extension build|validate`` when BLENDER names a Blender executable, otherwise the
``blender_ext.py`` that ships inside the ``bpy`` wheel (the same code). Exits non-zero on an invalid manifest.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extension_cli() -> list[str]:
    blender = os.environ.get("BLENDER")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    spec = importlib.util.find_spec("bpy")  # only to find the wheel's folder, without starting Blender
    if spec is None:
        sys.exit("no Blender: install the bpy module (pip install bpy==4.5.*) or set BLENDER=/path/to/blender")
    version_dir = next(Path(spec.origin).parent.glob("[0-9]*.[0-9]*"))
    return [sys.executable, str(version_dir / "scripts/addons_core/bl_pkg/cli/blender_ext.py")]


def build(output_dir: Path = ROOT / "dist") -> Path:
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path.unlink(missing_ok=True)
    cli = extension_cli()
    subprocess.run([*cli, "build", "--source-dir", str(ROOT), "--output-filepath", str(zip_path)], check=True)
    subprocess.run([*cli, "validate", str(zip_path)], check=True)
    return zip_path


if __name__ == "__main__":
    try:
        print(build())
    except subprocess.CalledProcessError as error:
        sys.exit(f"extension build failed: {error}")
