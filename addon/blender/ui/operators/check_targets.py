"""Check Targets: load the target images at the training size now and say how many load and which are skipped."""

from __future__ import annotations

import bpy

from ...targets import check as target_check
from .base import SceneFitOperator


class SCENEFIT_OT_check_targets(SceneFitOperator, bpy.types.Operator):
    """Load the target images at the training size and show how many load, which are skipped and why"""

    bl_idname = "scenefit.check_targets"
    bl_label = "Check Targets"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.scenefit if context.scene is not None else None
        if settings is None or not settings.targets:
            return False
        if settings.use_clips:
            cls.poll_message_set("Target clips are checked when a run starts")
            return False
        return True

    def run(self, context: bpy.types.Context) -> set[str]:
        result = target_check.check(context.scene)
        if result.error:
            self.report({"ERROR"}, result.error)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Targets: {result.summary()}")
        return {"FINISHED"}
