"""Apply a preset: build its demo scene (one builder per name of the closed vocabulary in ``engine.presets``) and
fill ``scene.scenefit`` with its random properties and run settings, ready to run.

Builders only create data-blocks; names Blender had to change because they were taken (``Supershape.001``) are
mapped back, so a preset's ``id_name`` always points at what its builder made. Applying either completes or
leaves the scene and ``bpy.data`` as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import bmesh
import bpy
from mathutils import Matrix, Vector

from ...engine import presets as engine_presets
from ...engine.errors import SceneFitError
from . import compat, physics, rna, supershape

Builder = Callable[[bpy.types.Scene, Mapping[str, Any]], list[bpy.types.ID]]

CAMERA_NAME = "SceneFit Camera"
LIGHT_NAME = "SceneFit Sun"
WORLD_NAME = "SceneFit World"
CHOICE_MODIFIER = "Shape"  # the primitive_choice object's Geometry Nodes modifier; its input "Shape" picks
BACKGROUND = (0.05, 0.05, 0.06)
OBJECT_COLOUR = (0.8, 0.55, 0.25, 1.0)


# --- shared staging --------------------------------------------------------------------------------------------


def _link(scene: bpy.types.Scene, obj: bpy.types.Object) -> bpy.types.Object:
    scene.collection.objects.link(obj)
    return obj


def _material(name: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.diffuse_color = OBJECT_COLOUR  # what Workbench shows with colour type MATERIAL
    compat.use_nodes(material)
    principled = material.node_tree.nodes.get("Principled BSDF")
    if principled is not None:
        principled.inputs["Base Color"].default_value = OBJECT_COLOUR
    return material


def _stage(scene: bpy.types.Scene, camera_location: Iterable[float], look_at: Iterable[float]) -> list[bpy.types.ID]:
    """Camera (made the scene camera), a sun, a dark world and Workbench shading that shows material colours."""
    camera_data = bpy.data.cameras.new(CAMERA_NAME)
    camera = _link(scene, bpy.data.objects.new(CAMERA_NAME, camera_data))
    camera.location = Vector(camera_location)
    camera.rotation_euler = (Vector(look_at) - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera

    light_data = bpy.data.lights.new(LIGHT_NAME, "SUN")
    light_data.energy = 3.0
    light = _link(scene, bpy.data.objects.new(LIGHT_NAME, light_data))
    light.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))

    world = bpy.data.worlds.new(WORLD_NAME)
    world.color = BACKGROUND  # Workbench background
    compat.use_nodes(world)
    background = world.node_tree.nodes.get("Background")
    if background is not None:
        background.inputs["Color"].default_value = (*BACKGROUND, 1.0)
    scene.world = world

    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "MATERIAL"
    return [camera, camera_data, light, light_data, world]


# --- builders --------------------------------------------------------------------------------------------------


def build_supershape(scene: bpy.types.Scene, options: Mapping[str, Any]) -> list[bpy.types.ID]:
    """A supershape at the origin seen from the front (blendtorch's densityopt scene)."""
    obj = supershape.create_supershape(scene.collection, name=options["name"], resolution=options["resolution"])
    material = _material(options["name"])
    obj.data.materials.append(material)
    return [obj, obj.data, material, *_stage(scene, (0.0, -4.5, 1.5), (0.0, 0.0, 0.0))]


def _car(bm: bmesh.types.BMesh) -> None:
    """Meta-Sim's object: a car-like block pointing along +X, its cabin toward the back, a bumper at the front."""
    for centre, size in (((0.0, 0.0, 0.0), (1.6, 0.75, 0.35)), ((-0.25, 0.0, 0.33), (0.75, 0.65, 0.32))):
        geometry = bmesh.ops.create_cube(bm, size=1.0)
        bmesh.ops.scale(bm, vec=size, verts=geometry["verts"])
        bmesh.ops.translate(bm, vec=centre, verts=geometry["verts"])
    bumper = bmesh.ops.create_cone(bm, segments=4, radius1=0.3, radius2=0.0, depth=0.4)
    bmesh.ops.rotate(bm, cent=(0, 0, 0), matrix=Matrix.Rotation(math.radians(90), 3, "Y"), verts=bumper["verts"])
    bmesh.ops.translate(bm, vec=(0.95, 0.0, 0.0), verts=bumper["verts"])


_YAW_MESHES: dict[str, Callable[[bmesh.types.BMesh], Any]] = {
    "car": _car,
    "monkey": lambda bm: bmesh.ops.create_monkey(bm),
    "cone": lambda bm: bmesh.ops.create_cone(bm, segments=3, radius1=0.8, radius2=0.0, depth=1.6),
    "cube": lambda bm: bmesh.ops.create_cube(bm, size=1.2),
}


def build_yaw_object(scene: bpy.types.Scene, options: Mapping[str, Any]) -> list[bpy.types.ID]:
    """An asymmetric mesh at the origin seen from above-front and a little from the side: its yaw,
    ``rotation_euler[2]``, is plain to see (Suzanne faces the camera at yaw 0 and looks sideways at 90°; the car
    is seen side-on at 0° and drives away at 90°). Off the mesh's mirror plane, yaw −θ is not the mirror image
    of +θ: the way from 0° to 90° is visible from the start."""
    bm = bmesh.new()
    _YAW_MESHES[options["mesh"]](bm)
    mesh = bpy.data.meshes.new(options["name"])
    bm.to_mesh(mesh)
    bm.free()
    obj = _link(scene, bpy.data.objects.new(options["name"], mesh))
    material = _material(options["name"])
    mesh.materials.append(material)
    return [obj, mesh, material, *_stage(scene, (1.2, -3.2, 3.0), (0.0, 0.0, 0.0))]


_PRIMITIVE_NODES: dict[str, tuple[str, dict[str, Any]]] = {
    "cube": ("GeometryNodeMeshCube", {"Size": (1.4, 1.4, 1.4)}),
    "uv_sphere": ("GeometryNodeMeshUVSphere", {"Radius": 0.9}),
    "ico_sphere": ("GeometryNodeMeshIcoSphere", {"Radius": 0.9, "Subdivisions": 1}),
    "cone": ("GeometryNodeMeshCone", {"Radius Bottom": 0.9, "Depth": 1.8}),
    "cylinder": ("GeometryNodeMeshCylinder", {"Radius": 0.8, "Depth": 1.6}),
}


def build_primitive_choice(scene: bpy.types.Scene, options: Mapping[str, Any]) -> list[bpy.types.ID]:
    """One object whose Geometry Nodes modifier makes one of ``primitives``: the modifier's integer input
    ``Shape`` (path ``modifiers["Shape"]["Socket_1"]``) is the index into the list."""
    primitives = options["primitives"]
    material = _material(options["name"])
    tree = bpy.data.node_groups.new(f"{options['name']} choice", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    shape = tree.interface.new_socket("Shape", in_out="INPUT", socket_type="NodeSocketInt")
    shape.description = "Index of the primitive: " + ", ".join(f"{i} {p}" for i, p in enumerate(primitives))
    shape.min_value, shape.max_value = 0, len(primitives) - 1
    nodes, links = tree.nodes, tree.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    switch = nodes.new("GeometryNodeIndexSwitch")
    switch.data_type = "GEOMETRY"
    while len(switch.index_switch_items) < len(primitives):
        switch.index_switch_items.new()
    links.new(group_in.outputs["Shape"], switch.inputs["Index"])
    for i, primitive in enumerate(primitives):
        node_type, inputs = _PRIMITIVE_NODES[primitive]
        node = nodes.new(node_type)
        node.label = primitive
        for name, value in inputs.items():
            node.inputs[name].default_value = value
        links.new(node.outputs["Mesh"], switch.inputs[i + 1])
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = material
    links.new(switch.outputs[0], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])

    mesh = bpy.data.meshes.new(options["name"])
    obj = _link(scene, bpy.data.objects.new(options["name"], mesh))
    modifier = obj.modifiers.new(CHOICE_MODIFIER, "NODES")
    modifier.node_group = tree
    modifier[shape.identifier] = 0
    return [obj, mesh, material, tree, *_stage(scene, (0.0, -5.0, 2.5), (0.0, 0.0, 0.0))]


FLOOR_NAME = "Floor"
FLOOR_COLOUR = (0.35, 0.37, 0.4, 1.0)
BALL_RADIUS = 0.2


def _rigid_body(scene: bpy.types.Scene, obj: bpy.types.Object, kind: str) -> bpy.types.RigidBodyObject:
    with bpy.context.temp_override(scene=scene, object=obj, active_object=obj, selected_objects=[obj]):
        bpy.ops.rigidbody.object_add(type=kind)
    return obj.rigid_body


def build_bouncing_ball(scene: bpy.types.Scene, options: Mapping[str, Any]) -> list[bpy.types.ID]:
    """A rigid-body sphere (radius 0.2 m, centre at ``height``) dropped on a passive floor at z = 0, seen from the
    side by an orthographic camera. The floor's restitution is 1 and damping is off, so the ball's
    ``rigid_body.restitution`` alone sets how high it bounces (Bullet multiplies the two bodies' restitutions).
    With ``launch_frames`` > 0 the ball gets a sampled initial velocity (:mod:`physics`)."""
    if scene.rigidbody_world is None:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.rigidbody.world_add()
    world = scene.rigidbody_world
    world.enabled = True
    world.point_cache.frame_start = scene.frame_start
    world.point_cache.frame_end = max(world.point_cache.frame_end, scene.frame_end)

    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=12, radius=BALL_RADIUS)
    mesh = bpy.data.meshes.new(options["name"])
    bm.to_mesh(mesh)
    bm.free()
    for polygon in mesh.polygons:
        polygon.use_smooth = True
    ball = _link(scene, bpy.data.objects.new(options["name"], mesh))
    ball.location = (0.0, 0.0, options["height"])
    material = _material(options["name"])
    mesh.materials.append(material)

    floor_mesh = bpy.data.meshes.new(FLOOR_NAME)
    floor_mesh.from_pydata([(-4, -4, 0), (4, -4, 0), (4, 4, 0), (-4, 4, 0)], [], [(0, 1, 2, 3)])
    floor = _link(scene, bpy.data.objects.new(FLOOR_NAME, floor_mesh))
    floor_material = bpy.data.materials.new(FLOOR_NAME)
    floor_material.diffuse_color = FLOOR_COLOUR
    floor_mesh.materials.append(floor_material)

    body = _rigid_body(scene, ball, "ACTIVE")
    body.collision_shape = "SPHERE"
    body.restitution = options["restitution"]
    body.linear_damping = body.angular_damping = 0.0
    ground = _rigid_body(scene, floor, "PASSIVE")
    ground.collision_shape = "BOX"
    ground.restitution = 1.0
    if options["launch_frames"]:
        physics.add_initial_velocity(scene, ball, frames=options["launch_frames"])

    staged = _stage(scene, (0.0, -10.0, 1.15), (0.0, 0.0, 1.15))
    camera_data = staged[1]
    camera_data.type = "ORTHO"
    camera_data.ortho_scale = 2.7
    return [ball, mesh, material, floor, floor_mesh, floor_material, *staged]


BUILDERS: dict[str, Builder] = {
    "supershape": build_supershape,
    "yaw_object": build_yaw_object,
    "primitive_choice": build_primitive_choice,
    "bouncing_ball": build_bouncing_ball,
}


# --- applying --------------------------------------------------------------------------------------------------

_SPEC_KINDS = {"normal": "NORMAL", "truncnormal": "NORMAL", "lognormal": "LOGNORMAL"}


def _fill_spec(spec: Any, parameter: engine_presets.PresetParameter, id_name: str) -> None:
    """One ``SCENEFIT_Spec`` from a preset parameter (the inverse of how a run reads the spec)."""
    d = parameter.distribution
    spec.label = parameter.label
    spec.id_type = parameter.id_type
    spec.id_name = id_name
    spec.data_path = parameter.data_path
    spec.learn = not d.get("fixed", False)
    kind = d["kind"]
    if kind in _SPEC_KINDS:
        spec.distribution = _SPEC_KINDS[kind]
        spec.mu, spec.sigma = d["mu"], d["sigma"]
        spec.use_bounds = kind == "truncnormal"
        if spec.use_bounds:
            spec.low, spec.high = d["low"], d["high"]
    elif kind == "categorical":
        spec.distribution = "CATEGORICAL"
        spec.probs = ", ".join(repr(float(p)) for p in d["probs"])
        spec.choices = ", ".join(str(c) for c in d.get("choices", range(len(d["probs"]))))
    else:
        spec.distribution = "BERNOULLI"
        spec.p = d["p"]


def _fill_settings(settings: Any, run: Mapping[str, Any]) -> None:
    settings.objective = run["objective"]
    settings.estimator = run["estimator"] or engine_presets.default_baseline(run["objective"])
    settings.batch_size = run["batch_size"]
    settings.steps = run["steps"]
    settings.seed = run["seed"]
    settings.resolution_x, settings.resolution_y = run["resolution"]
    settings.render_engine = run["render_engine"]
    settings.samples = run["samples"]
    clips = run.get("clips")
    settings.use_clips = clips is not None
    if clips is not None:
        settings.clip_frame_start, settings.clip_frame_end = clips["frame_start"], clips["frame_end"]
        settings.clip_stride = clips["stride"]


Names = dict[tuple[str, str], str]  # (id_type, intended name) -> actual name


def build_scene(preset: engine_presets.Preset, scene: bpy.types.Scene) -> Names:
    """Run the preset's builder in ``scene``; returns (id_type, intended name) → actual name of everything made.

    On failure everything the builder made is removed and the scene's camera and world are put back.
    """
    before = {collection: set(getattr(bpy.data, collection)) for collection in _BUILT_COLLECTIONS}
    camera, world = scene.camera, scene.world
    try:
        created = BUILDERS[preset.scene_builder](scene, preset.scene_options)
    except Exception:
        scene.camera, scene.world = camera, world
        _remove_new(before)
        raise
    return {(block.id_type, _intended_name(block.name)): block.name for block in created}


_BUILT_COLLECTIONS = ("objects", "meshes", "materials", "node_groups", "cameras", "lights", "worlds")


def _remove_new(before: Mapping[str, set]) -> None:
    new = [block for collection, old in before.items() for block in getattr(bpy.data, collection) if block not in old]
    bpy.data.batch_remove(new)


def _intended_name(actual: str) -> str:
    # Blender appends ".001", ".002"… to a name already taken; builders never choose such names themselves.
    base, _, suffix = actual.rpartition(".")
    return base if base and len(suffix) >= 3 and suffix.isdigit() else actual


def _actual(names: Names, parameter: engine_presets.PresetParameter) -> str:
    return names.get((parameter.id_type, parameter.id_name), parameter.id_name)


def apply_preset(preset: engine_presets.Preset, scene: bpy.types.Scene) -> Names:
    """Build the preset's scene in ``scene`` and replace ``scene.scenefit``'s specs and run settings with the
    preset's. Every random property is resolved first (:class:`SpecError` naming it); on any error the scene,
    its settings and ``bpy.data`` are left as they were. Returns intended → actual data-block names."""
    before = {collection: set(getattr(bpy.data, collection)) for collection in _BUILT_COLLECTIONS}
    camera, world = scene.camera, scene.world
    names = build_scene(preset, scene)
    try:
        for parameter in preset.parameters:
            rna.resolve(parameter.label, parameter.id_type, _actual(names, parameter), parameter.data_path)
    except SceneFitError:
        scene.camera, scene.world = camera, world
        _remove_new(before)
        raise
    settings = scene.scenefit
    settings.specs.clear()
    for parameter in preset.parameters:
        _fill_spec(settings.specs.add(), parameter, _actual(names, parameter))
    settings.active_spec_index = 0
    _fill_settings(settings, preset.run)
    return names
