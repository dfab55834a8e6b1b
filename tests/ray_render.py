"""One small Workbench render of a cube at a given yaw, from a .blend given as bytes (``tests.ray_render``).

The same function renders inside a Ray actor on the worker node (the module travels to it by value through Ray,
not through the shared file system) and in a plain bpy subprocess (``python tests/ray_render.py BLEND OUT YAW…``,
which also builds the .blend), so that the two images can be compared bit for bit.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SIZE = 32


def import_bpy():
    """Import bpy with Blender's config and caches in a folder of this process's own (set before the import)."""
    if "bpy" not in sys.modules:
        own = Path(tempfile.mkdtemp(prefix="sf-bpy-"))
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(own / "blender"))
        os.environ.setdefault("XDG_CACHE_HOME", str(own / "cache"))
    import bpy

    return bpy


def build_blend(path: Path) -> None:
    """tests/blender_scenes.py's cube, rendered by Workbench at SIZE×SIZE without anti-aliasing."""
    bpy = import_bpy()
    from tests.blender_scenes import cube_scene

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = cube_scene(bpy)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    scene.display.render_aa = "OFF"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def render_yaw(blend: bytes, yaw_degrees: float) -> np.ndarray:
    """Open ``blend`` (written to a file of this process's own first), turn the cube, render.

    Returns the (SIZE, SIZE, 3) float32 image read back from the 8-bit PNG Blender wrote.
    """
    bpy = import_bpy()
    with tempfile.TemporaryDirectory(prefix="sf-render-", dir="/dev/shm") as folder:
        blend_path = Path(folder) / "scene.blend"
        blend_path.write_bytes(blend)
        bpy.ops.wm.open_mainfile(filepath=str(blend_path))
        scene = bpy.context.scene
        scene.objects["Cube"].rotation_euler[2] = math.radians(yaw_degrees)
        scene.render.filepath = str(Path(folder) / "frame.png")
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(scene.render.filepath, check_existing=False)
        try:
            pixels = np.empty(len(image.pixels), dtype=np.float32)
            image.pixels.foreach_get(pixels)
            width, height = image.size
        finally:
            bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[..., :3].copy()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    blend_file, out, *yaws = sys.argv[1:]
    build_blend(Path(blend_file))
    data = Path(blend_file).read_bytes()
    np.savez(out, images=np.stack([render_yaw(data, float(yaw)) for yaw in yaws]))
