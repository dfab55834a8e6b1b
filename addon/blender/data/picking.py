"""Turn "this property, here" into a random-property spec: the data logic behind Right-click ▸ Randomize with
SceneFit and the panel's Paste Data Path.

A clicked property arrives as (struct, RNA identifier, index) from the button context or as (data-block, path,
index) from ``context.property``; a pasted one as Blender's full data path. All become a :class:`PropertyTarget`
(a data-block a spec can name + the path on it, index included), and :func:`add_spec` fills a spec with a default
distribution centred on the property's current value. The operators are thin wrappers around these functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpy

from ...engine.errors import SpecError
from ..scene import rna
from .properties import MAX_LABEL

# ID.id_type -> the spec's id_type where the two differ.
_SPEC_ID_TYPES = {"KEY": "SHAPE_KEY"}
# Data-blocks that may embed a node tree: (bpy.data collection, attribute holding the tree).
_NODE_TREE_OWNERS = (
    ("materials", "node_tree"),
    ("worlds", "node_tree"),
    ("lights", "node_tree"),
    ("textures", "node_tree"),
    ("scenes", "node_tree"),
    ("linestyles", "node_tree"),
)
_COMPONENTS = {
    "COLOR": "RGBA",
    "COLOR_GAMMA": "RGBA",
    "QUATERNION": "WXYZ",
    "AXISANGLE": "WXYZ",
}
_FULL_PATH = re.compile(r'^bpy\.data\.(?P<collection>\w+)\["(?P<name>(?:[^"\\]|\\.)*)"\](?P<rest>.*)$')
_FLOAT_LIMIT = 1e30  # RNA's "no limit" is ±FLT_MAX; anything beyond this is treated as unbounded
_INT_LIMIT = 1 << 30
MAX_CATEGORIES = 16  # an integer with at most this many allowed values becomes a categorical
RELATIVE_SIGMA = 0.1
MIN_ANGLE_SIGMA = math.radians(10.0)
FALLBACK_SIGMA = 0.1
UNBOUNDED_HALF_WIDTH = 3.0  # σ each side: the bounds offered (off) for a property without limits; angles ±180°


@dataclass(frozen=True)
class PropertyTarget:
    """One scalar on a data-block that a spec can name: ``owner`` is never an embedded data-block (a material's
    node tree is reached through the material), ``data_path`` is the full path from it, index included."""

    owner: bpy.types.ID
    data_path: str

    @property
    def id_type(self) -> str:
        id_type = _SPEC_ID_TYPES.get(self.owner.id_type, self.owner.id_type)
        if id_type not in rna.ID_COLLECTIONS:
            kinds = ", ".join(noun.lower() for _, noun in rna.ID_COLLECTIONS.values())
            noun = self.owner.id_type.lower().replace("_", " ")
            raise SpecError(f"{self.owner.name!r} is a {noun} data-block; SceneFit randomizes properties of: {kinds}")
        return id_type


def indexed(path: str, index: int | None) -> str:
    return path if index is None or index < 0 else f"{path}[{index}]"


def from_id_path(owner: bpy.types.ID, path: str, index: int | None = None) -> PropertyTarget:
    """A target from a data-block and the path on it (``context.property`` gives these; index −1: not an array)."""
    if owner.is_embedded_data:
        owner, path = _embedding_owner(owner, path)
    return PropertyTarget(owner, indexed(path, index))


def from_struct(struct: Any, identifier: str, index: int | None = None) -> PropertyTarget:
    """A target from the struct a button shows and the property's identifier (``context.button_pointer`` and
    ``context.button_prop.identifier``); custom and Geometry Nodes inputs are ID properties, named ``["key"]``."""
    owner = struct.id_data
    if owner is None:
        raise SpecError(
            f"{identifier!r} belongs to no data-block (interface or preference settings cannot be randomized)"
        )
    is_rna = struct.bl_rna.properties.get(identifier) is not None
    key = identifier if is_rna else f'["{bpy.utils.escape_identifier(identifier)}"]'
    if struct.as_pointer() == owner.as_pointer():
        path = key
    else:
        try:
            base = struct.path_from_id()
        except ValueError:
            raise SpecError(f"the path of {identifier!r} on {owner.name!r} cannot be found") from None
        path = f"{base}.{key}" if is_rna else f"{base}{key}"
    return from_id_path(owner, path, index)


def from_full_path(text: str) -> PropertyTarget:
    """A target from a full data path, as Right-click ▸ Copy Full Data Path gives it:
    ``bpy.data.objects["Cube"].rotation_euler[2]``."""
    match = _FULL_PATH.match(text.strip())
    if match is None:
        raise SpecError(
            f'{text.strip()[:80]!r} is not a full data path such as bpy.data.objects["Cube"].rotation_euler[2] '
            "(right-click a field ▸ Copy Full Data Path)"
        )
    collection = getattr(bpy.data, match["collection"], None)
    if not isinstance(collection, bpy.types.bpy_prop_collection):
        raise SpecError(f"bpy.data has no collection {match['collection']!r}")
    name = bpy.utils.unescape_identifier(match["name"])
    owner = collection.get(name)
    if owner is None:
        raise SpecError(f"no data-block {name!r} in bpy.data.{match['collection']}")
    return from_id_path(owner, match["rest"].removeprefix("."))


def _embedding_owner(tree: bpy.types.ID, path: str) -> tuple[bpy.types.ID, str]:
    """The data-block embedding ``tree`` (a material's, world's, light's… node tree) and the path from it."""
    for collection_name, attribute in _NODE_TREE_OWNERS:
        for owner in getattr(bpy.data, collection_name, ()):
            embedded = getattr(owner, attribute, None)
            if embedded is not None and embedded.as_pointer() == tree.as_pointer():
                return owner, f"{attribute}.{path}"
    raise SpecError(f"{tree.name!r} is embedded in a data-block SceneFit cannot name")


# --- default distribution ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    low: float | None
    high: float | None
    soft_low: float | None
    soft_high: float | None
    subtype: str
    ui_name: str


def _finite(value: float, limit: float) -> float | None:
    return float(value) if abs(value) < limit else None


def _limits(bound: rna.BoundProperty) -> _Limits:
    owner = bound.owner
    struct = owner.path_resolve(bound.struct_path) if bound.struct_path else owner
    limit = _INT_LIMIT if bound.value_type == "int" else _FLOAT_LIMIT
    if bound.is_id_property:
        ui = struct.id_properties_ui(bound.key).as_dict() if bound.value_type in ("int", "float") else {}
        return _Limits(
            _finite(ui.get("min", -math.inf), limit),
            _finite(ui.get("max", math.inf), limit),
            _finite(ui.get("soft_min", -math.inf), limit),
            _finite(ui.get("soft_max", math.inf), limit),
            ui.get("subtype", "NONE"),
            _id_property_name(struct, bound.key),
        )
    prop = struct.bl_rna.properties[bound.key]
    numeric = bound.value_type in ("int", "float")
    name = struct.name if isinstance(struct, bpy.types.NodeSocket) and bound.key == "default_value" else prop.name
    return _Limits(
        _finite(prop.hard_min, limit) if numeric else None,
        _finite(prop.hard_max, limit) if numeric else None,
        _finite(prop.soft_min, limit) if numeric else None,
        _finite(prop.soft_max, limit) if numeric else None,
        prop.subtype,
        name or bound.key,
    )


def _id_property_name(struct: Any, key: str) -> str:
    """A Geometry Nodes input's socket name (its key is an identifier such as Socket_2), else the key itself."""
    group = getattr(struct, "node_group", None)
    interface = getattr(group, "interface", None)
    for item in getattr(interface, "items_tree", ()):
        if getattr(item, "identifier", None) == key:
            return item.name
    return key


def _bounds(value: float, limits: _Limits) -> tuple[float, float] | None:
    """[low, high] from the hard limits, a missing side completed from the soft limits; None when unbounded."""
    low = limits.low if limits.low is not None else limits.soft_low
    high = limits.high if limits.high is not None else limits.soft_high
    if limits.low is None and limits.high is None:
        return None
    if low is None or high is None or not low < high or not low <= value <= high:
        return None
    return low, high


def _integer_choices(limits: _Limits) -> list[int] | None:
    """The allowed values of an integer with a small range (soft limits first: Geometry Nodes inputs keep their
    socket's range there)."""
    for low, high in ((limits.soft_low, limits.soft_high), (limits.low, limits.high)):
        if low is not None and high is not None and 0 < high - low + 1 <= MAX_CATEGORIES:
            return list(range(int(low), int(high) + 1))
    return None


def default_distribution(bound: rna.BoundProperty) -> dict[str, Any]:
    """Spec fields of a default distribution centred on the property's current value.

    bool → Bernoulli(0.5); enum → Categorical over all items; int with ≤ 16 allowed values → Categorical over
    them; other numbers → Normal(value, σ) with σ = 10 % of |value| (angles at least 10°, otherwise 0.1 when
    the value is 0, or 10 % of the soft range), truncated to the property's limits when it has any; without
    limits the bounds are off and centred on the value (angles ±180°, others ±3σ).
    """
    value = bound.get()
    if bound.value_type == "bool":
        return {"distribution": "BERNOULLI", "p": 0.5}
    if bound.value_type == "enum":
        return {"distribution": "CATEGORICAL", "choices": ", ".join(bound.enum_items), "probs": ""}
    limits = _limits(bound)
    if bound.value_type == "int":
        choices = _integer_choices(limits)
        if choices is not None and value in choices:
            return {"distribution": "CATEGORICAL", "choices": ", ".join(map(str, choices)), "probs": ""}
    value = float(value)
    sigma = RELATIVE_SIGMA * abs(value)
    if bound.unit == "ROTATION":
        sigma = max(sigma, MIN_ANGLE_SIGMA)
    elif sigma < 1e-6:
        soft = (limits.soft_low, limits.soft_high)
        span = soft[1] - soft[0] if None not in soft else math.inf
        sigma = RELATIVE_SIGMA * span if 0 < span < 1e3 else FALLBACK_SIGMA
    if bound.value_type == "int":
        sigma = max(sigma, 1.0)
    fields: dict[str, Any] = {"distribution": "NORMAL", "mu": value, "sigma": sigma, "use_bounds": False}
    bounds = _bounds(value, limits)
    if bounds is not None:
        fields.update(use_bounds=True, low=bounds[0], high=bounds[1])
    else:  # off, but ready centred on the value should the user turn them on (not the fields' 0–1: 0°–57°)
        half = math.pi if bound.unit == "ROTATION" else UNBOUNDED_HALF_WIDTH * sigma
        fields.update(low=value - half, high=value + half)
    return fields


def default_label(bound: rna.BoundProperty, taken: Iterable[str] = ()) -> str:
    """A readable label such as "Cube Rotation Z" or "Grey Roughness", made unique among ``taken``."""
    name = _limits(bound).ui_name
    component = ""
    if bound.index is not None:
        letters = _COMPONENTS.get(_limits(bound).subtype, "XYZW")
        component = letters[bound.index] if bound.index < len(letters) else str(bound.index)
    base = " ".join(part for part in (bound.owner.name, name, component) if part)[:MAX_LABEL]
    taken = set(taken)
    label, n = base, 2
    while label in taken:
        suffix = f" {n}"
        label, n = base[: MAX_LABEL - len(suffix)] + suffix, n + 1
    return label


# --- adding to the scene's specs -----------------------------------------------------------------------------


def find_spec(settings: Any, target: PropertyTarget) -> int | None:
    """Index of the spec already naming ``target``, if any."""
    for i, spec in enumerate(settings.specs):
        if (spec.id_type, spec.id_name, spec.data_path.strip()) == (
            target.id_type,
            target.owner.name,
            target.data_path,
        ):
            return i
    return None


def add_spec(settings: Any, target: PropertyTarget) -> tuple[Any, bool]:
    """Add ``target`` to ``settings.specs`` (a ``SCENEFIT_Settings``) with a default distribution centred on its
    current value, and make it the active spec. Returns (spec, added): an existing spec for the same property is
    returned and made active instead of adding a duplicate. Raises :class:`SpecError` (nothing added) when the
    property cannot be randomized."""
    existing = find_spec(settings, target)
    if existing is not None:
        settings.active_spec_index = existing
        return settings.specs[existing], False
    id_type = target.id_type
    bound = rna.resolve(target.data_path, id_type, target.owner.name, target.data_path)
    label = default_label(bound, (spec.label for spec in settings.specs))
    fields = {"label": label, "learn": True, **default_distribution(bound)}
    spec = settings.specs.add()
    spec.id_type = id_type
    spec.id_name = target.owner.name
    spec.data_path = target.data_path
    for key, value in fields.items():
        setattr(spec, key, value)
    settings.active_spec_index = len(settings.specs) - 1
    return spec, True
