"""After a run: Apply Mean to Scene (each random property set to its learned mean) and Open Results Folder."""

from __future__ import annotations

import bpy

from ...run.controller import CONTROLLER
from ...run.results import apply_means, folder_opener, results_folder
from .base import SceneFitOperator


class SCENEFIT_OT_apply_mean(SceneFitOperator, bpy.types.Operator):
    """Set each random property to the mean (or most likely value) of its learned distribution"""

    bl_idname = "scenefit.apply_mean"
    bl_label = "Apply Mean to Scene"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if CONTROLLER.running:
            cls.poll_message_set("Stop the run first")
            return False
        if context.scene is None or not any(spec.learned for spec in context.scene.scenefit.specs):
            cls.poll_message_set("Nothing learned yet: run Optimize first")
            return False
        return True

    def run(self, context: bpy.types.Context) -> set[str]:
        labels = apply_means(context.scene)
        self.report({"INFO"}, f"Set {len(labels)} properties to their learned means: {', '.join(labels)}")
        return {"FINISHED"}


class SCENEFIT_OT_open_results(SceneFitOperator, bpy.types.Operator):
    """Open the run's output folder (result.json, checkpoint) in the system file browser"""

    bl_idname = "scenefit.open_results"
    bl_label = "Open Results Folder"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        folder = results_folder(context.scene) if context.scene is not None else None
        if folder is None or not folder.is_dir():
            cls.poll_message_set("No results yet: run Optimize first")
            return False
        return True

    def run(self, context: bpy.types.Context) -> set[str]:
        folder = str(results_folder(context.scene))
        opener = folder_opener()
        if opener is not None:
            context.window_manager.clipboard = folder
            self.report({"WARNING"}, f"Cannot open folders here ({opener} is missing); path copied: {folder}")
            return {"CANCELLED"}
        return bpy.ops.wm.path_open(filepath=folder)
