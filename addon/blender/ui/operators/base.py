"""The base every SceneFit operator shares: how an error becomes one line in the status bar.

An operator puts its work in :meth:`SceneFitOperator.run`; whatever it raises is reported once (SceneFit's own
errors as they are, anything else with its type, never a traceback) and the operator ends CANCELLED. Modal
operators call :meth:`SceneFitOperator.fail` from their own event handling to the same effect.
"""

from __future__ import annotations

from typing import Any

import bpy

from ....engine.errors import SceneFitError, message_line


class SceneFitOperator:
    """Mixin before ``bpy.types.Operator``: ``execute`` runs :meth:`run` and reports what it raises."""

    def run(self, context: bpy.types.Context) -> set[str]:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            return self.run(context)
        except Exception as error:
            return self.fail(error)

    def fail(self, error: BaseException) -> set[str]:
        self.report({"ERROR"}, message_line(error))
        return {"CANCELLED"}


def redraw_view3d(context: bpy.types.Context, sidebar_only: bool = False) -> None:
    """Tag the 3D Viewports for a redraw; ``sidebar_only``: only their sidebars (the scene did not change)."""
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen is not None else ():
        if area.type != "VIEW_3D":
            continue
        if not sidebar_only:
            area.tag_redraw()
            continue
        for region in area.regions:
            if region.type == "UI":
                region.tag_redraw()


def preset_items() -> list[tuple[str, str, str]]:
    """The shipped presets as enum items (they do not change while Blender runs: operators read them once)."""
    from ....engine.presets import preset_titles

    return [(stem, name, description) for stem, name, description in preset_titles()] or [
        ("NONE", "No presets", "No preset files were found in the extension's presets folder")
    ]


def load_shipped_preset(stem: str) -> Any:
    """The shipped preset ``stem`` (presets/<stem>.json), validated; SceneFitError when torch is missing."""
    from ..... import torch_vendor
    from ....engine.presets import PRESET_DIR, load_preset
    from ...data import preferences

    try:  # presets are validated with the engine's distributions, which need torch
        torch_vendor.activate(preferences.torch_status())
    except ModuleNotFoundError as error:
        raise SceneFitError(str(error)) from None
    return load_preset(PRESET_DIR / f"{stem}.json")
