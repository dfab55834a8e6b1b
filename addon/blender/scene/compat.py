"""What differs between the Blender versions SceneFit runs on (4.2 LTS minimum; tested on the 4.3.2 executable, the
4.5 LTS and 5.0.1 modules), in one place. Everything else in addon/blender uses the same API on all of them.

* Actions: 4.4 introduced slotted (layered) actions, F-curves live in the channel bag of the slot an ID uses;
  4.2–4.3 have ``action.fcurves`` (removed in 5.0).
* EEVEE: the engine is ``BLENDER_EEVEE_NEXT`` in 4.2–4.5 and ``BLENDER_EEVEE`` again from 5.0; SceneFit's own
  settings and presets always say ``BLENDER_EEVEE_NEXT``.
* ``bpy.app.handlers.save_post_fail`` exists from 4.3 only: None where it does not.
* Node trees: materials and worlds always use nodes from 5.0 (``use_nodes`` is deprecated there, to go in 6.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bpy

EEVEE_SETTING = "BLENDER_EEVEE_NEXT"  # the name in SceneFit's settings, presets and batch options


def render_engine(setting: str) -> str:
    """The ``scene.render.engine`` identifier of this Blender for a SceneFit engine setting."""
    if setting == EEVEE_SETTING and bpy.app.version >= (5, 0, 0):
        return "BLENDER_EEVEE"
    return setting


def action_fcurves(action: bpy.types.Action, slot: Any) -> Sequence[Any]:
    """The F-curves of ``action`` that animate the ID using ``slot`` (ignored before slotted actions)."""
    if hasattr(action, "layers"):  # 4.4+ slotted actions
        from bpy_extras import anim_utils

        channelbag = anim_utils.action_get_channelbag_for_slot(action, slot) if slot is not None else None
        return channelbag.fcurves if channelbag is not None else ()
    return action.fcurves


def handler_list(name: str) -> list | None:
    """``bpy.app.handlers.<name>``, or None in a Blender that lacks it."""
    return getattr(bpy.app.handlers, name, None)


def use_nodes(data_block: bpy.types.ID) -> None:
    """Give a material or world its node tree (always there from 5.0, where setting ``use_nodes`` warns)."""
    if bpy.app.version < (5, 0, 0):
        data_block.use_nodes = True
