"""Editing the list of random properties: Right-click ▸ Randomize with SceneFit, pick/paste/remove/move in the
panel. Every way of adding goes through :func:`picking.add_spec`."""

from __future__ import annotations

from typing import Any

import bpy

from ....engine.errors import SceneFitError
from ...data import picking
from ...data.properties import ID_TYPE_ITEMS
from ...run.controller import CONTROLLER
from ...scene import rna
from .base import SceneFitOperator

MENU_TEXT = "Randomize with SceneFit"
_RANDOMIZABLE = {"FLOAT", "INT", "BOOLEAN", "ENUM"}
_COMPONENT_MENU_LIMIT = 4


def _editable(context: bpy.types.Context) -> bool:
    return context.scene is not None and not CONTROLLER.running


def _add(operator: bpy.types.Operator, context: bpy.types.Context, target: picking.PropertyTarget) -> set[str]:
    spec, added = picking.add_spec(context.scene.scenefit, target)
    if added:
        operator.report({"INFO"}, f"SceneFit randomizes {spec.label!r} ({spec.distribution.lower()})")
    else:
        operator.report({"INFO"}, f"{spec.label!r} is already randomized")
    for area in context.screen.areas if context.screen else ():
        area.tag_redraw()
    return {"FINISHED"}


def clicked_targets(context: Any) -> list[tuple[picking.PropertyTarget, str]]:
    """What a right-click landed on, as (target, menu text) pairs; [] when it is nothing SceneFit can randomize.

    ``context.property`` (data-block, path, index) names the exact component of a vector; without it (or where
    it is empty) the button context gives the struct and property, and a vector offers one entry per component.
    """
    prop = getattr(context, "button_prop", None)
    if prop is not None and prop.type not in _RANDOMIZABLE:
        return []
    clicked = getattr(context, "property", None)
    try:
        if isinstance(clicked, tuple) and len(clicked) == 3 and isinstance(clicked[0], bpy.types.ID):
            owner, path, index = clicked
            targets = [(picking.from_id_path(owner, path, index), MENU_TEXT)]
        else:
            targets = _button_targets(getattr(context, "button_pointer", None), prop)
        for target, _text in targets:
            target.id_type  # noqa: B018  (raises SpecError for data-blocks a spec cannot name)
        return targets
    except (SceneFitError, ReferenceError, AttributeError, ValueError, TypeError, KeyError, RuntimeError):
        return []  # drawn on every right-click in Blender: anything unexpected just means "no entry"


def _button_targets(pointer: Any, prop: Any) -> list[tuple[picking.PropertyTarget, str]]:
    if pointer is None or prop is None:
        return []
    length = getattr(prop, "array_length", 0)
    if not length:
        return [(picking.from_struct(pointer, prop.identifier), MENU_TEXT)]
    if length > _COMPONENT_MENU_LIMIT or len([d for d in prop.array_dimensions if d]) > 1:
        return []
    letters = {"COLOR": "RGBA", "COLOR_GAMMA": "RGBA", "QUATERNION": "WXYZ"}.get(prop.subtype, "XYZW")
    return [(picking.from_struct(pointer, prop.identifier, i), f"{MENU_TEXT} ({letters[i]})") for i in range(length)]


class _TargetOperator:
    """Operator properties naming one property: data-block type, name and full path (index included)."""

    id_type: bpy.props.EnumProperty(
        name="Data-block type", description="Type of the data-block that owns the property", items=ID_TYPE_ITEMS
    )
    id_name: bpy.props.StringProperty(name="Data-block", description="Name of the data-block that owns the property")
    data_path: bpy.props.StringProperty(
        name="Data path",
        description="Path of the property on the data-block, index included (e.g. rotation_euler[2], data.energy)",
    )

    def _target(self) -> picking.PropertyTarget:
        owner = rna.find_id(self.data_path, self.id_type, self.id_name)
        return picking.from_id_path(owner, self.data_path.strip())


class SCENEFIT_OT_randomize_property(_TargetOperator, SceneFitOperator, bpy.types.Operator):
    """Add this property to SceneFit's random properties, with a distribution centred on its current value"""

    bl_idname = "scenefit.randomize_property"
    bl_label = MENU_TEXT
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _editable(context)

    def run(self, context: bpy.types.Context) -> set[str]:
        if not self.data_path.strip():
            targets = clicked_targets(context)
            if len(targets) != 1:
                self.report({"ERROR"}, "Right-click a single number, checkbox or menu of a data-block to randomize it")
                return {"CANCELLED"}
            return _add(self, context, targets[0][0])
        return _add(self, context, self._target())


class SCENEFIT_OT_spec_add(_TargetOperator, SceneFitOperator, bpy.types.Operator):
    """Pick a data-block and one of its properties to randomize (right-clicking a field ▸ Randomize with SceneFit
    does the same)"""

    bl_idname = "scenefit.spec_add"
    bl_label = "Add Random Property"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _editable(context)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.id_name and context.active_object is not None:
            self.id_type, self.id_name = "OBJECT", context.active_object.name
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "id_type")
        collection = rna.ID_COLLECTIONS[self.id_type][0]
        layout.prop_search(self, "id_name", bpy.data, collection)
        layout.prop(self, "data_path")
        layout.label(text="Tip: right-click any field ▸ Randomize with SceneFit", icon="INFO")

    def run(self, context: bpy.types.Context) -> set[str]:
        return _add(self, context, self._target())


class SCENEFIT_OT_spec_paste(SceneFitOperator, bpy.types.Operator):
    """Add the property whose full data path is on the clipboard (right-click a field ▸ Copy Full Data Path)"""

    bl_idname = "scenefit.spec_paste"
    bl_label = "Paste Full Data Path"
    bl_options = {"REGISTER", "UNDO"}

    path: bpy.props.StringProperty(
        name="Full data path",
        description='Full data path such as bpy.data.objects["Cube"].rotation_euler[2] (empty: the clipboard)',
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _editable(context)

    def run(self, context: bpy.types.Context) -> set[str]:
        return _add(self, context, picking.from_full_path(self.path or context.window_manager.clipboard))


class SCENEFIT_OT_spec_remove(SceneFitOperator, bpy.types.Operator):
    """Stop randomizing the selected property (removes it from the list; the scene is not changed)"""

    bl_idname = "scenefit.spec_remove"
    bl_label = "Remove Random Property"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _editable(context) and len(context.scene.scenefit.specs) > 0

    def run(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.scenefit
        index = min(settings.active_spec_index, len(settings.specs) - 1)
        settings.specs.remove(index)
        settings.active_spec_index = max(0, min(index, len(settings.specs) - 1))
        return {"FINISHED"}


class SCENEFIT_OT_spec_move(SceneFitOperator, bpy.types.Operator):
    """Move the selected random property up or down the list (the order of columns in results)"""

    bl_idname = "scenefit.spec_move"
    bl_label = "Move Random Property"
    bl_options = {"REGISTER", "UNDO"}

    direction: bpy.props.EnumProperty(
        name="Direction",
        description="Where to move the selected property",
        items=[("UP", "Up", "Move one place up"), ("DOWN", "Down", "Move one place down")],
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _editable(context) and len(context.scene.scenefit.specs) > 1

    def run(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.scenefit
        index = settings.active_spec_index
        new = index - 1 if self.direction == "UP" else index + 1
        if not (0 <= index < len(settings.specs) and 0 <= new < len(settings.specs)):
            return {"CANCELLED"}
        settings.specs.move(index, new)
        settings.active_spec_index = new
        return {"FINISHED"}


def draw_button_context(menu: bpy.types.Menu, context: bpy.types.Context) -> None:
    """Entries appended to the right-click menu of every property button."""
    targets = clicked_targets(context)
    if not targets:
        return
    layout = menu.layout
    layout.separator()
    for target, text in targets:
        operator = layout.operator(SCENEFIT_OT_randomize_property.bl_idname, text=text, icon="MOD_NOISE")
        operator.id_type = target.id_type
        operator.id_name = target.owner.name
        operator.data_path = target.data_path
