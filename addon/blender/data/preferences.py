"""Add-on preferences: where torch lives when Blender's Python lacks it, and the default output folder."""

from __future__ import annotations

from pathlib import Path

import bpy

from .... import torch_vendor

# The extension's top-level package (bl_ext.<repo>.scenefit): preferences, user folder, and what a worker enables.
ADDON_PACKAGE = __package__.removesuffix(".addon.blender.data")


def preferences() -> SCENEFIT_AddonPreferences:
    return bpy.context.preferences.addons[ADDON_PACKAGE].preferences


def user_dir() -> Path:
    """The extension's writable user folder (never the extension's own folder)."""
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))


def torch_status() -> torch_vendor.TorchStatus:
    return torch_vendor.resolve(user_dir(), preferences().torch_site_packages or None)


class SCENEFIT_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    torch_site_packages: bpy.props.StringProperty(
        name="torch site-packages",
        description="A site-packages folder that holds torch, used when Blender's own Python has none",
        subtype="DIR_PATH",
    )
    output_dir: bpy.props.StringProperty(
        name="Default output folder",
        description="Where runs write result.json, reports and checkpoints unless a run names its own folder",
        subtype="DIR_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        status = torch_status()
        box = layout.box()
        icon = "CHECKMARK" if status.found else "ERROR"
        box.label(text=status.message if status.found else "torch not found", icon=icon)
        if not status.found:
            box.label(text="Set a site-packages folder with torch below, or install torch==2.13.0 into:")
            box.label(text=str(torch_vendor.abi_site_dir(user_dir())))
        layout.prop(self, "torch_site_packages")
        layout.prop(self, "output_dir")


register, unregister = bpy.utils.register_classes_factory((SCENEFIT_AddonPreferences,))
