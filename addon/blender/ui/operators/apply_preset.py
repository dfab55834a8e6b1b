"""Apply Preset: build a shipped preset's demo scene (in a new scene by default) and set up its random properties
and run settings."""

from __future__ import annotations

import bpy

from ...scene.presets import apply_preset
from .base import SceneFitOperator, load_shipped_preset, preset_items


class SCENEFIT_OT_apply_preset(SceneFitOperator, bpy.types.Operator):
    """Build a preset's demo scene and set up its random properties and run settings"""

    bl_idname = "scenefit.apply_preset"
    bl_label = "Apply SceneFit Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Preset", description="Preset to apply", items=preset_items())
    new_scene: bpy.props.BoolProperty(
        name="New Scene",
        description="Build the demo in a new scene (named after the preset) instead of the current one",
        default=True,
    )

    def run(self, context: bpy.types.Context) -> set[str]:
        preset = load_shipped_preset(self.preset)
        scene = bpy.data.scenes.new(preset.name) if self.new_scene else context.scene
        try:
            apply_preset(preset, scene)
        except BaseException:
            if self.new_scene:
                bpy.data.scenes.remove(scene)
            raise
        if self.new_scene and context.window is not None:
            context.window.scene = scene
        self.report({"INFO"}, f"Preset {preset.name!r} applied to scene {scene.name!r}")
        return {"FINISHED"}
