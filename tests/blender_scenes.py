"""Scenes and scene-state dumps shared by the Blender-layer tests (imported as ``tests.blender_scenes``)."""

from __future__ import annotations

import math
import struct
from typing import Any

YAW_PATH = "rotation_euler[2]"


def cube_scene(bpy: Any) -> Any:
    """A cube whose side faces have different colours, an off-axis camera and a sun; returns the scene.

    +X red, +Y green, -X blue, -Y and top grey: no two yaws in a full turn give the same picture.
    """
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("Cube")
    corners = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    # -X, +X, -Y, +Y, -Z, +Z (outward winding)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh.from_pydata(corners, [], faces)
    mesh.update()
    colours = {
        "Grey": (0.5, 0.5, 0.5, 1.0),
        "Red": (0.8, 0.05, 0.02, 1.0),
        "Green": (0.05, 0.7, 0.05, 1.0),
        "Blue": (0.03, 0.1, 0.8, 1.0),
    }
    for name, colour in colours.items():
        mesh.materials.append(_material(bpy, name, colour))
    for face, slot in zip(mesh.polygons, (3, 1, 0, 2, 0, 0), strict=True):
        face.material_index = slot
    cube = bpy.data.objects.new("Cube", mesh)
    scene.collection.objects.link(cube)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = (2.0, -5.0, 3.0)
    direction = [-c for c in camera.location]
    camera.rotation_euler = (math.atan2(math.hypot(*direction[:2]), -direction[2]), 0.0, math.atan2(2.0, 5.0))
    camera.data.lens = 55
    scene.camera = camera
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 2.0
    sun.rotation_euler = (0.6, 0.2, 0.9)
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")
    world.color = (0.05, 0.05, 0.05)
    scene.world = world
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    return scene


def _material(bpy: Any, name: str, color: tuple[float, float, float, float]) -> Any:
    material = bpy.data.materials.new(name)
    material.diffuse_color = color  # Workbench
    if bpy.app.version < (5, 0, 0):  # always on from 5.0, where setting it warns (as addon/blender/scene/compat.py)
        material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = color  # Cycles/EEVEE
    return material


def _exact(value: Any) -> Any:
    """A value in a form where equality means bit-for-bit equality (floats by their bytes)."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, (list, tuple)):
        return tuple(_exact(v) for v in value)
    return value


def rna_dump(owner: Any) -> dict[str, Any]:
    """Every plain (non-pointer, non-collection) property of a struct, exact."""
    dump = {}
    for prop in owner.bl_rna.properties:
        if prop.type in {"POINTER", "COLLECTION"} or prop.identifier == "rna_type":
            continue
        value = getattr(owner, prop.identifier)
        if hasattr(value, "__len__") and not isinstance(value, str):
            value = tuple(value) if not hasattr(value[0] if len(value) else 0, "__len__") else tuple(map(tuple, value))
        dump[prop.identifier] = _exact(value)
    return dump


def custom_properties(owner: Any) -> dict[str, Any]:
    return {k: _exact(v.to_dict() if hasattr(v, "to_dict") else v) for k, v in owner.items()}


def scene_state(bpy: Any, scene: Any, ignore_keys: tuple[str, ...] = ("scenefit",)) -> dict[str, Any]:
    """Objects' transforms and custom properties, lights, materials, and every render/colour setting, exact.

    ``ignore_keys``: custom properties a run is meant to write (the learned distributions).
    """
    state: dict[str, Any] = {}
    for obj in bpy.data.objects:
        state[f"object {obj.name}"] = {
            "location": _exact(tuple(obj.location)),
            "rotation": _exact(tuple(obj.rotation_euler)),
            "scale": _exact(tuple(obj.scale)),
            "hide_render": obj.hide_render,
            "custom": {k: v for k, v in custom_properties(obj).items() if k not in ignore_keys},
        }
        for modifier in obj.modifiers:
            state[f"modifier {obj.name}.{modifier.name}"] = custom_properties(modifier)
    for light in bpy.data.lights:
        state[f"light {light.name}"] = rna_dump(light)
    for material in bpy.data.materials:
        if material.node_tree:
            state[f"material {material.name}"] = {
                f"{n.name}.{i.identifier}": _exact(_plain(i.default_value))
                for n in material.node_tree.nodes
                for i in n.inputs
                if hasattr(i, "default_value")
            }
    state["scene.camera"] = scene.camera.name if scene.camera else None
    for name, owner in [
        ("render", scene.render),
        ("image_settings", scene.render.image_settings),
        ("view_settings", scene.view_settings),
        ("display_settings", scene.display_settings),
        ("display", scene.display),
        ("shading", scene.display.shading),
        ("eevee", scene.eevee),
        ("cycles", getattr(scene, "cycles", None)),
    ]:
        if owner is not None:
            state[name] = rna_dump(owner)
    return state


def _plain(value: Any) -> Any:
    return tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two scene_state dumps (empty when identical)."""
    problems = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            problems += [f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed]
        elif a != b:
            problems.append(f"{key}: {a!r} -> {b!r}")
    return problems
