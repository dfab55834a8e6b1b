"""Initial velocity for a rigid body, as a property a run can sample.

Blender's rigid bodies have no initial-velocity setting: a body starts at rest. What Bullet does keep is the
velocity of an *animated* body at the moment it becomes dynamic. :func:`add_initial_velocity` builds that
"animated, then dynamic" set-up so the velocity is one number a spec can point at:

* a custom property ``initial_velocity`` (m/s, a 3-vector) on the object — the spec's data path is
  ``["initial_velocity"][0]`` (x), ``[1]`` (y) or ``[2]`` (z);
* ``rigid_body.kinematic`` ("Animated") keyframed on from the simulation's start frame ``s`` until
  ``s + 1 + frames`` (constant interpolation);
* drivers on ``location[0..2]`` holding the object at its start location until ``s + 1``, then moving it at that
  velocity while it is animated: ``x0 + v · max(min(frame, s + 1 + frames) − (s + 1), 0) / fps`` (simple
  expressions: no Python is run).

The body flies on with that velocity from frame ``s + 1 + frames``. A custom
property change alone re-evaluates nothing, which is why a clip run tags the data-blocks it sets before each
re-simulation. Gravity does not act during the animated frames, so keep ``frames`` small (1–3).
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy

from ...engine.errors import SpecError
from . import compat

PROPERTY = "initial_velocity"


def add_initial_velocity(
    scene: bpy.types.Scene, obj: bpy.types.Object, velocity: Sequence[float] = (0.0, 0.0, 0.0), frames: int = 2
) -> None:
    """Give the rigid body ``obj`` of ``scene`` a sampled initial velocity (see the module's docstring). Raises
    :class:`SpecError` when ``obj`` has no active rigid body in the scene's rigid-body world or already has
    drivers on its location."""
    body = obj.rigid_body
    if body is None or body.type != "ACTIVE":
        raise SpecError(f"object {obj.name!r} needs an active rigid body for an initial velocity")
    if frames < 1:
        raise SpecError(f"the launch of {obj.name!r} needs at least one animated frame, got {frames}")
    anim = obj.animation_data
    if anim is not None and any(fc.data_path == "location" for fc in anim.drivers):
        raise SpecError(f"object {obj.name!r} already has drivers on its location")
    if scene.rigidbody_world is None or obj.name not in scene.objects:
        raise SpecError(f"object {obj.name!r} is not in scene {scene.name!r}, or the scene has no rigid-body world")
    start = scene.rigidbody_world.point_cache.frame_start
    fps = scene.render.fps / scene.render.fps_base

    # Blender rebuilds the simulation on the frame after the start, from the bodies' transforms then, which
    # forgets a velocity an animation had before it: the body rests until that frame and moves from there.
    launch = start + 1
    obj[PROPERTY] = [float(v) for v in velocity]
    obj.id_properties_ui(PROPERTY).update(subtype="VELOCITY", description="Velocity when the body turns dynamic")
    body.kinematic = True
    body.keyframe_insert("kinematic", frame=start)
    body.kinematic = False
    body.keyframe_insert("kinematic", frame=launch + frames)
    for fcurve in _fcurves(obj, "rigid_body.kinematic"):
        for point in fcurve.keyframe_points:
            point.interpolation = "CONSTANT"
    for axis in range(3):
        driver = obj.driver_add("location", axis).driver
        driver.type = "SCRIPTED"
        variable = driver.variables.new()
        variable.name = "v"
        variable.targets[0].id = obj
        variable.targets[0].data_path = f'["{PROPERTY}"][{axis}]'
        driver.expression = f"{obj.location[axis]!r} + v * max(min(frame, {launch + frames}) - {launch}, 0) / {fps!r}"


def _fcurves(obj: bpy.types.Object, data_path: str) -> list[bpy.types.FCurve]:
    animation = obj.animation_data
    fcurves = compat.action_fcurves(animation.action, getattr(animation, "action_slot", None))
    return [fc for fc in fcurves if fc.data_path == data_path]
