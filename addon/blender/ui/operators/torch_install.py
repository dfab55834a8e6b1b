"""Getting torch from the panel: Install torch (pip in the background), Copy Install Command, Check Again."""

from __future__ import annotations

import bpy

from ..... import torch_vendor
from ...data import preferences
from .. import torch_setup
from .base import SceneFitOperator


class SCENEFIT_OT_install_torch(SceneFitOperator, bpy.types.Operator):
    """Download and install torch (CPU build, pinned version) into SceneFit's user folder with pip, in the
    background; needs Allow Online Access"""

    bl_idname = "scenefit.install_torch"
    bl_label = "Install torch"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not bpy.app.online_access:
            cls.poll_message_set("Online access is off: Preferences ▸ System ▸ Network ▸ Allow Online Access")
            return False
        if torch_setup.installing():
            cls.poll_message_set("torch is being installed")
            return False
        return not torch_setup.status().found

    def run(self, context: bpy.types.Context) -> set[str]:
        torch_setup.start_install()
        self.report({"INFO"}, f"Installing {torch_vendor.TORCH_REQUIREMENT} in the background")
        return {"FINISHED"}


class SCENEFIT_OT_copy_torch_command(SceneFitOperator, bpy.types.Operator):
    """Copy the pip command that installs torch where SceneFit finds it (run it in a terminal, then restart
    Blender or press Check Again)"""

    bl_idname = "scenefit.copy_torch_command"
    bl_label = "Copy Install Command"
    bl_options = {"REGISTER", "INTERNAL"}

    def run(self, context: bpy.types.Context) -> set[str]:
        command = torch_vendor.pip_install_command(torch_vendor.abi_site_dir(preferences.user_dir()))
        context.window_manager.clipboard = " ".join(f'"{part}"' if " " in part else part for part in command)
        self.report({"INFO"}, "Install command copied to the clipboard")
        return {"FINISHED"}


class SCENEFIT_OT_check_torch(SceneFitOperator, bpy.types.Operator):
    """Look for torch again (after installing it or changing the site-packages folder in the preferences)"""

    bl_idname = "scenefit.check_torch"
    bl_label = "Check Again"
    bl_options = {"REGISTER", "INTERNAL"}

    def run(self, context: bpy.types.Context) -> set[str]:
        found = torch_setup.status(refresh=True)
        self.report({"INFO"} if found.found else {"WARNING"}, found.message)
        return {"FINISHED"}
