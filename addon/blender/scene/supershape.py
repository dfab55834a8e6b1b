"""The Supershape object: a mesh whose shape follows 12 animatable RNA properties (two superformulas).

``obj.supershape`` holds the parameters (``m1 a1 b1 n1_1 n2_1 n3_1`` for the longitude formula, ``m2 a2 b2 n1_2
n2_2 n3_2`` for the latitude one), so a run can pick and randomize e.g. ``supershape.m1`` by RNA path like any
other property. Coordinates come from the ``supershape`` package (``supercoords``); the mesh is written with one
``foreach_set`` instead of the package's bmesh round trip (2.5 ms instead of 12 ms per update at 100×100).

Setting a parameter (UI, Python, RNA path) rebuilds through the property's ``update`` callback. Animation and
drivers never call ``update``: persistent handlers on frame change and depsgraph update rebuild every animated
supershape whose mesh differs from the parameters the handler's depsgraph evaluated (the active depsgraph writes
them back to the object too; a render's depsgraph, when rendering an animation, only to its own copy). Rendering
an animation from the UI edits meshes from the render job: turn on Render ▸ Lock Interface, as for any handler
that changes data. A linked duplicate (Alt+D) shares one mesh: the supershape that rebuilt last wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import bpy
import numpy as np

from ...engine.errors import SceneFitError

FORMULA_PARAMETERS = ("m", "a", "b", "n1", "n2", "n3")
DEFAULTS = {"m": 3.0, "a": 1.0, "b": 1.0, "n1": 3.0, "n2": 3.0, "n3": 3.0}  # blendtorch's densityopt
DEFAULT_RESOLUTION = (100, 100)  # blendtorch's densityopt (longitude, latitude)
MIN_RESOLUTION = 4


def parameter_name(parameter: str, formula: int) -> str:
    """RNA name of one superformula parameter: ``m1`` for m of formula 1, ``n2_1`` for n2 of formula 1."""
    return f"{parameter}_{formula}" if parameter[-1].isdigit() else f"{parameter}{formula}"


PARAMETER_NAMES = tuple(parameter_name(p, f) for f in (1, 2) for p in FORMULA_PARAMETERS)


class SupershapeError(SceneFitError, ValueError):
    """A supershape that cannot be built: the ``supershape`` package is missing, an invalid resolution…"""


def _supercoords():
    try:
        from supershape import supercoords
    except ModuleNotFoundError as error:
        raise SupershapeError(
            "the 'supershape' package is not importable: SceneFit ships it as a wheel "
            "(wheels/supershape-1.1.1-py3-none-any.whl); reinstall the extension or `pip install supershape==1.1.1`"
        ) from error
    return supercoords


# --- topology -------------------------------------------------------------------------------------------------
# supercoords returns a U×V grid whose first and last longitude coincide and whose first and last latitude rows
# collapse to the poles. The mesh keeps one copy of each: U-1 longitudes × V-2 rings plus two pole vertices,
# closed by quads and two triangle fans, so smooth shading shows no seam and normals face outward.


def _counts(u: int, v: int) -> tuple[int, int, int]:
    """(vertices, quads, triangles) of the closed mesh."""
    longitudes, rings = u - 1, v - 2
    return longitudes * rings + 2, longitudes * (rings - 1), 2 * longitudes


def _topology(u: int, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loop vertex indices, polygon sizes and per-loop UVs, quads first then the south and north fans."""
    longitudes, rings = u - 1, v - 2
    north = longitudes * rings + 1
    lon = np.arange(longitudes)[:, None]
    ring = np.arange(rings - 1)[None, :]

    def vertex(lon_index, ring_index):
        return 1 + (lon_index % longitudes) * rings + ring_index

    quads = np.stack(
        [vertex(lon, ring), vertex(lon + 1, ring), vertex(lon + 1, ring + 1), vertex(lon, ring + 1)], -1
    ).reshape(-1, 4)
    lon1 = np.arange(longitudes)
    south = np.stack([np.zeros(longitudes, int), vertex(lon1 + 1, 0), vertex(lon1, 0)], -1)
    northern = np.stack([np.full(longitudes, north), vertex(lon1, rings - 1), vertex(lon1 + 1, rings - 1)], -1)
    loops = np.concatenate([quads.ravel(), south.ravel(), northern.ravel()]).astype(np.int32)
    sizes = np.concatenate([np.full(len(quads), 4), np.full(2 * longitudes, 3)]).astype(np.int32)

    # UVs follow the unwrapped grid (longitude index / (U-1), latitude index / (V-1)), so the seam is a UV seam.
    lon_q = np.broadcast_to(lon, (longitudes, rings - 1)).astype(np.float32)
    lat_q = np.broadcast_to(ring + 1, (longitudes, rings - 1)).astype(np.float32)
    quad_uv = np.stack(
        [
            np.stack([lon_q, lat_q], -1),
            np.stack([lon_q + 1, lat_q], -1),
            np.stack([lon_q + 1, lat_q + 1], -1),
            np.stack([lon_q, lat_q + 1], -1),
        ],
        -2,
    ).reshape(-1, 2)
    lon_t = lon1.astype(np.float32)
    ones = np.ones(longitudes, np.float32)
    south_uv = np.stack(
        [np.stack([lon_t + 0.5, 0 * ones], -1), np.stack([lon_t + 1, ones], -1), np.stack([lon_t, ones], -1)], -2
    ).reshape(-1, 2)
    top, below = (v - 1) * ones, (v - 2) * ones
    north_uv = np.stack(
        [np.stack([lon_t + 0.5, top], -1), np.stack([lon_t, below], -1), np.stack([lon_t + 1, below], -1)], -2
    ).reshape(-1, 2)
    uvs = np.concatenate([quad_uv, south_uv, north_uv]) / np.array([u - 1, v - 1], np.float32)
    return loops, sizes, uvs.astype(np.float32)


def _build_topology(mesh: bpy.types.Mesh, u: int, v: int) -> None:
    loops, sizes, uvs = _topology(u, v)
    mesh.clear_geometry()
    mesh.vertices.add(_counts(u, v)[0])
    mesh.loops.add(len(loops))
    mesh.loops.foreach_set("vertex_index", loops)
    mesh.polygons.add(len(sizes))
    mesh.polygons.foreach_set("loop_start", np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(sizes), bool))
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uvs.ravel())
    mesh.update(calc_edges=True)


def _coordinates(params: np.ndarray, u: int, v: int) -> np.ndarray:
    """Vertex positions (n, 3) float32 of the closed mesh for a 2×6 parameter array."""
    x, y, z = _supercoords()(params, shape=(u, v))
    grid = np.stack([x, y, z], -1)
    # Extreme exponents overflow; a vertex at the origin keeps the mesh valid where the formula has no value.
    grid = np.nan_to_num(grid, nan=0.0, posinf=0.0, neginf=0.0)
    co = np.empty((_counts(u, v)[0], 3), np.float32)
    co[0] = grid[0, 0]
    co[-1] = grid[0, -1]
    co[1:-1] = grid[:-1, 1:-1].reshape(-1, 3)
    return co


# --- properties ------------------------------------------------------------------------------------------------


def _parameters(props: SCENEFIT_SupershapeProperties) -> np.ndarray:
    return np.array([getattr(props, name) for name in PARAMETER_NAMES], np.float64)


def _evaluated_parameters(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None) -> np.ndarray:
    # A render's own depsgraph animates its copy of the object only; the active one also writes the original.
    return _parameters((obj.evaluated_get(depsgraph) if depsgraph is not None else obj).supershape)


def is_stale(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None = None) -> bool:
    """Whether a supershape's mesh no longer matches its parameters, as ``depsgraph`` evaluated them (animation,
    drivers) or, without one, as stored on the object."""
    props = obj.supershape
    if tuple(props.built_resolution) != tuple(props.resolution):
        return True
    built = np.array(props.built_parameters, np.float64)
    return bool(np.any(built != _evaluated_parameters(obj, depsgraph).astype(np.float32)))


def rebuild(obj: bpy.types.Object, parameters: np.ndarray | None = None) -> None:
    """Rewrite the supershape's vertices (and topology when the resolution changed) from ``parameters`` (12
    values in ``PARAMETER_NAMES`` order), by default the object's own."""
    props = obj.supershape
    if not props.is_supershape:
        raise SupershapeError(f"object {obj.name!r} is not a supershape")
    if obj.type != "MESH":
        raise SupershapeError(f"supershape {obj.name!r} has no mesh (type {obj.type})")
    u, v = props.resolution
    params = _parameters(props) if parameters is None else np.asarray(parameters, np.float64)
    co = _coordinates(params.reshape(2, 6), u, v)
    mesh = obj.data
    vertices, quads, triangles = _counts(u, v)
    if len(mesh.vertices) != vertices or len(mesh.polygons) != quads + triangles:
        _build_topology(mesh, u, v)
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.update()
    props.built_parameters = params
    props.built_resolution = (u, v)


# Supershapes whose parameters changed inside rebuilds_deferred(), by pointer; None outside it.
_pending: dict[int, bpy.types.Object] | None = None


@contextmanager
def rebuilds_deferred() -> Iterator[None]:
    """Within it, a parameter change marks its supershape instead of rebuilding it; each marked one is rebuilt once
    on leaving, so a sample that sets m1 and m2 costs one rebuild, not two (3.3 ms each at 100×100)."""
    global _pending
    if _pending is not None:  # nested: the outermost one rebuilds
        yield
        return
    _pending = {}
    try:
        yield
    finally:
        pending, _pending = _pending, None
        for obj in pending.values():
            if obj.supershape.is_supershape:
                rebuild(obj)


def _on_change(props: SCENEFIT_SupershapeProperties, _context) -> None:
    if not props.is_supershape:
        return
    obj = props.id_data
    if _pending is not None:
        _pending[obj.as_pointer()] = obj
    else:
        rebuild(obj)


def _formula_property(parameter: str, formula: int):
    axis = "longitude" if formula == 1 else "latitude"
    common = {
        "name": parameter,
        "default": DEFAULTS[parameter],
        "update": _on_change,
        "precision": 3,
    }
    if parameter == "m":
        return bpy.props.FloatProperty(
            description=f"Symmetry (lobe frequency) of the {axis} superformula", soft_min=0.0, soft_max=20.0, **common
        )
    if parameter in ("a", "b"):
        term = "first" if parameter == "a" else "second"
        return bpy.props.FloatProperty(
            description=f"Inverse amplitude of the {term} term of the {axis} superformula",
            min=1e-3,
            soft_max=5.0,
            **common,
        )
    if parameter == "n1":
        return bpy.props.FloatProperty(
            description=f"Overall exponent of the {axis} superformula (radius = (…)^(-1/n1))",
            min=1e-3,
            soft_max=20.0,
            **common,
        )
    term = "cosine" if parameter == "n2" else "sine"
    return bpy.props.FloatProperty(
        description=f"Exponent of the {term} term of the {axis} superformula", min=0.0, soft_max=20.0, **common
    )


class SCENEFIT_SupershapeProperties(bpy.types.PropertyGroup):
    is_supershape: bpy.props.BoolProperty(
        name="Is Supershape",
        description="This object's mesh is rebuilt from the superformula parameters below",
        options={"HIDDEN"},
    )
    resolution: bpy.props.IntVectorProperty(
        name="Resolution",
        description="Longitude × latitude samples of the superformulas (changing it rebuilds the topology)",
        size=2,
        min=MIN_RESOLUTION,
        max=2000,
        default=DEFAULT_RESOLUTION,
        options=set(),
        update=_on_change,
    )
    built_parameters: bpy.props.FloatVectorProperty(size=len(PARAMETER_NAMES), options={"HIDDEN"})
    built_resolution: bpy.props.IntVectorProperty(size=2, options={"HIDDEN"})


for _formula in (1, 2):
    for _parameter in FORMULA_PARAMETERS:
        SCENEFIT_SupershapeProperties.__annotations__[parameter_name(_parameter, _formula)] = _formula_property(
            _parameter, _formula
        )


# --- creation --------------------------------------------------------------------------------------------------


def validated_resolution(resolution: Iterable[int]) -> tuple[int, int]:
    values = tuple(int(r) for r in resolution)
    if len(values) != 2 or min(values) < MIN_RESOLUTION:
        raise SupershapeError(f"supershape resolution must be two integers ≥ {MIN_RESOLUTION}, got {values}")
    return values


def make_supershape(obj: bpy.types.Object, resolution: tuple[int, int], parameters: dict[str, float]) -> None:
    unknown = sorted(set(parameters) - set(PARAMETER_NAMES))
    if unknown:
        raise SupershapeError(f"unknown supershape parameter(s) {unknown}; known: {list(PARAMETER_NAMES)}")
    props = obj.supershape
    props.resolution = resolution
    for name, value in parameters.items():
        setattr(props, name, float(value))
    props.is_supershape = True
    rebuild(obj)


def create_supershape(
    collection: bpy.types.Collection,
    name: str = "Supershape",
    resolution: Iterable[int] = DEFAULT_RESOLUTION,
    location: Iterable[float] = (0.0, 0.0, 0.0),
    **parameters: float,
) -> bpy.types.Object:
    """A new supershape object linked to ``collection``; ``parameters`` override the defaults (``m1=2.5``…)."""
    resolution = validated_resolution(resolution)
    mesh = bpy.data.meshes.new(name)
    obj = bpy.data.objects.new(name, mesh)
    try:
        obj.location = tuple(location)
        make_supershape(obj, resolution, parameters)
    except Exception:
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        raise
    collection.objects.link(obj)
    return obj


# --- animation -------------------------------------------------------------------------------------------------


def rebuild_stale(objects: Iterable[bpy.types.Object], depsgraph: bpy.types.Depsgraph | None = None) -> int:
    """Rebuild the supershapes among ``objects`` (originals) whose mesh is stale with respect to the parameters
    ``depsgraph`` evaluated; returns how many were rebuilt."""
    count = 0
    for obj in objects:
        # Reading ``obj.supershape`` of an object that never had it would store an empty group on that object.
        is_supershape = obj.type == "MESH" and obj.is_property_set("supershape") and obj.supershape.is_supershape
        if is_supershape and is_stale(obj, depsgraph):
            rebuild(obj, _evaluated_parameters(obj, depsgraph))
            count += 1
    return count


@bpy.app.handlers.persistent
def on_frame_change(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph | None = None) -> None:
    # Only animated objects can have been changed by a frame change (fcurves and drivers both live there). When
    # rendering an animation, ``depsgraph`` is the render's: the rebuilt mesh is re-evaluated before it renders.
    rebuild_stale((obj for obj in scene.objects if obj.animation_data is not None), depsgraph)


@bpy.app.handlers.persistent
def on_depsgraph_update(_scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    # Drivers reading other objects re-evaluate without a frame change. Rebuilding tags another update, which
    # finds the mesh up to date and stops.
    rebuild_stale(
        (
            update.id.original
            for update in depsgraph.updates
            if isinstance(update.id, bpy.types.Object) and update.id.original.animation_data is not None
        ),
        depsgraph,
    )


_register_classes, _unregister_classes = bpy.utils.register_classes_factory((SCENEFIT_SupershapeProperties,))
_HANDLERS = (
    (bpy.app.handlers.frame_change_post, on_frame_change),
    (bpy.app.handlers.depsgraph_update_post, on_depsgraph_update),
)


def register() -> None:
    _register_classes()
    bpy.types.Object.supershape = bpy.props.PointerProperty(type=SCENEFIT_SupershapeProperties)
    for handlers, handler in _HANDLERS:
        handlers.append(handler)


def unregister() -> None:
    for handlers, handler in _HANDLERS:
        if handler in handlers:
            handlers.remove(handler)
    del bpy.types.Object.supershape
    _unregister_classes()
