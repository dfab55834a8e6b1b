"""Resolve a random-property spec to one scalar on a data-block, read and write it, snapshot and restore it.

A spec names a data-block (its type and name) and a full RNA data path on it, index included:
``rotation_euler[2]``, ``data.energy``, ``["my_prop"]``, ``modifiers["GeometryNodes"]["Socket_2"]``,
``node_tree.nodes["Principled BSDF"].inputs[2].default_value``, ``rigid_body.mass``. Every failure is a
:class:`SpecError` naming the spec, the data-block and the path.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import bpy

from ...engine.errors import SpecError
from . import compat, supershape

Value = float | int | bool | str

# Spec id_type -> bpy.data collection. The keys are the identifiers of SCENEFIT_Spec.id_type.
ID_COLLECTIONS: dict[str, tuple[str, str]] = {
    "OBJECT": ("objects", "Object"),
    "MESH": ("meshes", "Mesh"),
    "MATERIAL": ("materials", "Material"),
    "WORLD": ("worlds", "World"),
    "LIGHT": ("lights", "Light"),
    "CAMERA": ("cameras", "Camera"),
    "NODETREE": ("node_groups", "Node group"),
    "SCENE": ("scenes", "Scene"),
    "COLLECTION": ("collections", "Collection"),
    "CURVE": ("curves", "Curve"),
    "TEXTURE": ("textures", "Texture"),
    "SHAPE_KEY": ("shape_keys", "Shape keys"),
    "PARTICLE": ("particles", "Particle settings"),
}

_INDEX = re.compile(r"^(?P<base>.+)\[(?P<index>\d+)\]$")
_ID_PROPERTY = re.compile(r'^(?P<struct>.*)\["(?P<key>(?:[^"\\]|\\.)*)"\]$')
_ATTRIBUTE = re.compile(r"^(?:(?P<struct>.+)\.)?(?P<name>[A-Za-z_]\w*)$")
_NUMERIC_RNA = {"FLOAT": "float", "INT": "int", "BOOLEAN": "bool", "ENUM": "enum"}


@dataclass(frozen=True)
class BoundProperty:
    """One scalar scene value a spec points at.

    The struct holding the value is looked up again from ``owner`` on every access, so a data-block deleted
    during a run raises :class:`SpecError` instead of touching freed memory.
    """

    label: str
    owner: bpy.types.ID
    data_path: str
    struct_path: str  # path of the struct holding the value, relative to owner ("" = owner itself)
    key: str  # RNA identifier, or the ID-property key when is_id_property
    is_id_property: bool
    index: int | None  # component of a vector property
    value_type: str  # "float" | "int" | "bool" | "enum"
    unit: str  # RNA unit ("ROTATION", "LENGTH", … "NONE"); angle ID properties report "ROTATION"
    enum_items: tuple[str, ...] = ()

    @property
    def culprit(self) -> str:
        return f"'{self.label}' ({_describe_id(self.owner)} path {self.data_path!r})"

    def _struct(self) -> Any:
        try:
            if not self.struct_path:
                self.owner.as_pointer()  # raises ReferenceError once the data-block is removed
                return self.owner
            return self.owner.path_resolve(self.struct_path)
        except ReferenceError:
            raise SpecError(f"{self.label!r}: its data-block was deleted during the run") from None
        except ValueError:
            raise SpecError(f"{self.culprit}: the path no longer resolves") from None

    def get(self) -> Value:
        struct = self._struct()
        value = struct[self.key] if self.is_id_property else getattr(struct, self.key)
        return value[self.index] if self.index is not None else value

    def set(self, value: Value) -> None:
        """Write a scene value, converted to the property's type (ints round, enums take identifiers)."""
        coerced = self.coerce(value)
        struct = self._struct()
        if self.index is not None:
            container = struct[self.key] if self.is_id_property else getattr(struct, self.key)
            container[self.index] = coerced
        elif self.is_id_property:
            struct[self.key] = coerced
        else:
            setattr(struct, self.key, coerced)
        # ID properties (Geometry Nodes inputs, custom properties read by drivers) send no depsgraph update of
        # their own: without the tag Cycles' persistent data renders the previous value, and so does anything
        # that depends on the owner through a driver.
        self.owner.update_tag()

    def coerce(self, value: Value) -> Value:
        if self.value_type == "enum":
            if isinstance(value, str) and value in self.enum_items:
                return value
            raise SpecError(f"{self.culprit}: {value!r} is not one of {', '.join(self.enum_items)}")
        if isinstance(value, str):
            raise SpecError(f"{self.culprit}: got the text {value!r} for a {self.value_type} property")
        if not math.isfinite(float(value)):
            raise SpecError(f"{self.culprit}: refusing to set the non-finite value {value!r}")
        if self.value_type == "float":
            return float(value)
        if self.value_type == "int":
            return int(round(float(value)))
        return bool(value)


def resolve(label: str, id_type: str, id_name: str, data_path: str) -> BoundProperty:
    """Find the scalar a spec names, or raise :class:`SpecError` saying what is wrong with it."""
    owner = find_id(label, id_type, id_name)
    where = f"{label!r} ({_describe_id(owner)})"
    path = data_path.strip()
    if not path:
        raise SpecError(f"{where}: no data path given (e.g. rotation_euler[2])")
    if _resolves_to_struct(owner, path):
        raise SpecError(f"{where}: path {path!r} is not numeric (it names a data struct, not one of its values)")
    index = None
    match = _INDEX.match(path)
    base = path
    if match:
        base, index = match["base"], int(match["index"])
    bound = _bind_id_property(label, owner, base, index, where) if base.endswith('"]') else None
    if bound is None:
        bound = _bind_rna(label, owner, base, index, where, data_path)
    _check_not_animated(bound, where)
    return bound


def find_id(label: str, id_type: str, id_name: str) -> bpy.types.ID:
    if id_type not in ID_COLLECTIONS:
        raise SpecError(f"{label!r}: unknown data-block type {id_type!r}; one of {', '.join(ID_COLLECTIONS)}")
    collection_name, noun = ID_COLLECTIONS[id_type]
    collection = getattr(bpy.data, collection_name)
    owner = collection.get(id_name)
    if owner is None:
        close = difflib.get_close_matches(id_name, collection.keys(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SpecError(f"{label!r}: {noun} {id_name!r} not found (deleted or renamed?).{hint}")
    return owner


def assign(values: Iterable[tuple[BoundProperty, Value]]) -> None:
    """Set several properties as one change (a sample): geometry that follows them is rebuilt once at the end,
    not once per property."""
    with supershape.rebuilds_deferred():
        for bound, value in values:
            bound.set(value)


def snapshot(bound: Sequence[BoundProperty]) -> list[tuple[BoundProperty, Value]]:
    """Current values of every bound property (vector components separately), for :func:`restore`."""
    return [(b, b.get()) for b in bound]


def restore(saved: Sequence[tuple[BoundProperty, Value]]) -> list[str]:
    """Write every snapshot value back exactly; returns one message per value that could not be restored."""
    problems = []
    for b, value in reversed(saved):
        try:
            b.set(value)
        except (SpecError, ReferenceError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{b.label!r} not restored: {error}")
    return problems


def _describe_id(owner: bpy.types.ID) -> str:
    try:
        return f"{type(owner).__name__} {owner.name!r}"
    except ReferenceError:
        return "a deleted data-block"


def _resolves_to_struct(owner: bpy.types.ID, path: str) -> bool:
    """Whether ``path`` names a struct (a collection item, a modifier…) rather than a value."""
    try:
        return isinstance(owner.path_resolve(path), bpy.types.bpy_struct)
    except ValueError:
        return False


def _resolve_struct(owner: bpy.types.ID, struct_path: str, where: str, data_path: str) -> Any:
    if not struct_path:
        return owner
    try:
        struct = owner.path_resolve(struct_path)
    except ValueError:
        raise SpecError(f"{where}: path {data_path!r} does not resolve (no {struct_path!r})") from None
    if not isinstance(struct, bpy.types.bpy_struct):
        raise SpecError(f"{where}: path {data_path!r} does not resolve ({struct_path!r} is not a data struct)")
    return struct


def _bind_id_property(
    label: str, owner: bpy.types.ID, base: str, index: int | None, where: str
) -> BoundProperty | None:
    match = _ID_PROPERTY.match(base)
    if match is None:
        return None
    struct_path, key = match["struct"], bpy.utils.unescape_identifier(match["key"])
    full = base if index is None else f"{base}[{index}]"
    struct = _resolve_struct(owner, struct_path, where, full)
    if not hasattr(struct, "keys") or key not in struct.keys():
        raise SpecError(f"{where}: path {full!r} does not resolve (no custom property {key!r})")
    if not owner.is_editable:
        raise SpecError(f"{where}: path {full!r} is read-only (linked from a library)")
    value = struct[key]
    if index is not None:
        if not hasattr(value, "__len__") or isinstance(value, str) or not len(value):
            raise SpecError(f"{where}: path {full!r} indexes {key!r}, which is not a vector")
        if index >= len(value):
            raise SpecError(f"{where}: index {index} is out of range for {key!r} (length {len(value)})")
        value = value[index]
    elif hasattr(value, "__len__") and not isinstance(value, str):
        raise SpecError(f"{where}: {key!r} is not a single number; add an index such as {base}[0]")
    if isinstance(value, bool):
        value_type = "bool"
    elif isinstance(value, int):
        value_type = "int"
    elif isinstance(value, float):
        value_type = "float"
    else:
        raise SpecError(f"{where}: path {full!r} is not numeric ({type(value).__name__})")
    unit = "NONE"
    if value_type == "float":
        subtype = struct.id_properties_ui(key).as_dict().get("subtype", "NONE")
        unit = "ROTATION" if subtype in {"ANGLE", "EULER"} else "NONE"
    return BoundProperty(label, owner, full, struct_path, key, True, index, value_type, unit)


def _bind_rna(
    label: str, owner: bpy.types.ID, base: str, index: int | None, where: str, data_path: str
) -> BoundProperty:
    match = _ATTRIBUTE.match(base)
    if match is None:
        raise SpecError(f"{where}: path {data_path!r} does not resolve")
    struct_path, name = match["struct"] or "", match["name"]
    struct = _resolve_struct(owner, struct_path, where, data_path)
    prop = struct.bl_rna.properties.get(name)
    if prop is None:
        raise SpecError(f"{where}: path {data_path!r} does not resolve ({struct.bl_rna.identifier} has no {name!r})")
    value_type = _NUMERIC_RNA.get(prop.type)
    if value_type is None:
        kind = {"STRING": "text", "POINTER": "a data-block/struct reference", "COLLECTION": "a collection"}
        raise SpecError(f"{where}: path {data_path!r} is not numeric (it is {kind.get(prop.type, prop.type)})")
    if value_type == "enum" and prop.is_enum_flag:
        raise SpecError(f"{where}: path {data_path!r} is a multiple-choice enum, which is not supported")
    if struct.is_property_readonly(name):
        raise SpecError(f"{where}: path {data_path!r} is read-only")
    length = getattr(prop, "array_length", 0)
    if length:
        if len([d for d in prop.array_dimensions if d]) > 1:
            raise SpecError(f"{where}: path {data_path!r} is a matrix, which is not supported")
        if index is None:
            raise SpecError(f"{where}: {name!r} is a vector of {length}; add an index such as {name}[0]")
        if index >= length:
            raise SpecError(f"{where}: index {index} is out of range for {name!r} (length {length})")
    elif index is not None:
        raise SpecError(f"{where}: path {data_path!r} indexes {name!r}, which is not a vector")
    items = tuple(item.identifier for item in prop.enum_items) if value_type == "enum" else ()
    return BoundProperty(label, owner, data_path.strip(), struct_path, name, False, index, value_type, prop.unit, items)


def _rna_path_in_data_block(bound: BoundProperty) -> tuple[bpy.types.ID, str] | None:
    """The data-block that really stores the value and the path to it there, as animation curves name it.

    A material's node socket lives in the material's embedded node tree, ``data.energy`` lives in the light:
    drivers and keyframes sit on that data-block, not on the one the spec names.
    """
    struct = bound._struct()
    data_block = struct.id_data
    key = f'["{bpy.utils.escape_identifier(bound.key)}"]' if bound.is_id_property else bound.key
    try:
        if struct.as_pointer() == data_block.as_pointer():
            return data_block, key
        prefix = struct.path_from_id()
    except ValueError:  # some structs cannot name their path; their animation cannot be checked
        return None
    return data_block, f"{prefix}{key}" if bound.is_id_property else f"{prefix}.{key}"


def _fcurves(data_block: bpy.types.ID) -> Iterator[tuple[str, Any]]:
    anim = getattr(data_block, "animation_data", None)
    if anim is None:
        return
    for fcurve in anim.drivers:
        yield "driven by a driver", fcurve
    actions = [(anim.action, getattr(anim, "action_slot", None))]
    actions += [(strip.action, getattr(strip, "action_slot", None)) for t in anim.nla_tracks for strip in t.strips]
    for action, slot in actions:
        if action is None:
            continue
        for fcurve in compat.action_fcurves(action, slot):
            yield "animated with keyframes", fcurve


def _check_not_animated(bound: BoundProperty, where: str) -> None:
    located = _rna_path_in_data_block(bound)
    if located is None:
        return
    data_block, path = located
    index = bound.index or 0
    for reason, fcurve in _fcurves(data_block):
        if fcurve.data_path == path and fcurve.array_index == index and not fcurve.mute:
            raise SpecError(
                f"{where}: path {bound.data_path!r} is {reason}; a sampled value would be overwritten. "
                "Remove the driver/keyframes or pick another property"
            )
