"""Every SceneFit operator, one concern per module over :class:`base.SceneFitOperator`, registered from one list;
and the menu entries that call them."""

from __future__ import annotations

import bpy

from .. import torch_setup
from .add_supershape import SCENEFIT_OT_add_supershape
from .apply_preset import SCENEFIT_OT_apply_preset
from .check_targets import SCENEFIT_OT_check_targets
from .generate_dataset import SCENEFIT_OT_generate_dataset
from .optimize import SCENEFIT_OT_optimize, SCENEFIT_OT_stop
from .results import SCENEFIT_OT_apply_mean, SCENEFIT_OT_open_results
from .specs import (
    SCENEFIT_OT_randomize_property,
    SCENEFIT_OT_spec_add,
    SCENEFIT_OT_spec_move,
    SCENEFIT_OT_spec_paste,
    SCENEFIT_OT_spec_remove,
    draw_button_context,
)
from .torch_install import SCENEFIT_OT_check_torch, SCENEFIT_OT_copy_torch_command, SCENEFIT_OT_install_torch

CLASSES = (
    SCENEFIT_OT_apply_preset,
    SCENEFIT_OT_add_supershape,
    SCENEFIT_OT_install_torch,
    SCENEFIT_OT_copy_torch_command,
    SCENEFIT_OT_check_torch,
    SCENEFIT_OT_randomize_property,
    SCENEFIT_OT_spec_add,
    SCENEFIT_OT_spec_paste,
    SCENEFIT_OT_spec_remove,
    SCENEFIT_OT_spec_move,
    SCENEFIT_OT_check_targets,
    SCENEFIT_OT_optimize,
    SCENEFIT_OT_stop,
    SCENEFIT_OT_apply_mean,
    SCENEFIT_OT_open_results,
    SCENEFIT_OT_generate_dataset,
)


def _add_mesh_entry(menu: bpy.types.Menu, _context: bpy.types.Context) -> None:
    menu.layout.operator(SCENEFIT_OT_add_supershape.bl_idname, text="Supershape", icon="MESH_UVSPHERE")


_MENUS = (
    (bpy.types.VIEW3D_MT_mesh_add, _add_mesh_entry),
    (bpy.types.UI_MT_button_context_menu, draw_button_context),
)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    for menu, entry in _MENUS:
        menu.append(entry)


def unregister() -> None:
    for menu, entry in _MENUS:
        menu.remove(entry)
    _unregister_classes()
    torch_setup.release()  # its install poll: a registered timer can keep Blender from exiting
