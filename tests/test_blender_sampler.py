"""The sampler, the one render loop: the values of a sample show in its image, and the scene comes back bit for bit
however the loop ends (normally, by an error in the caller's loop, by a failing render, suspended mid-loop)."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest

from tests.blender_scenes import YAW_PATH, cube_scene, diff, scene_state

SIZE = 32


@pytest.fixture
def blender(scenefit):
    def module(name):
        return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")

    return SimpleNamespace(
        sampler=module("run.sampler"),
        render=module("scene.render"),
        config=module("run.config"),
        session=module("run.session"),
        errors=importlib.import_module(f"{scenefit.__name__}.addon.engine.errors"),
    )


@pytest.fixture
def scene(scenefit):
    import bpy

    scene = cube_scene(bpy)
    bpy.data.objects["Cube"].rotation_euler[2] = math.radians(12.5)  # the scene's own value, to be restored
    return scene


def settings(blender):
    return blender.render.RenderSettings((SIZE, SIZE), "BLENDER_WORKBENCH", 1)


def sampler(blender, scene, *extra_specs):
    specs = [blender.config.SpecConfig("yaw", "OBJECT", "Cube", YAW_PATH, {"kind": "normal"}), *extra_specs]
    return blender.sampler.Sampler(scene, blender.sampler.bind(specs), settings(blender))


def test_the_values_of_a_sample_show_in_its_image(blender, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    yaws = [0.0, math.radians(90.0), math.radians(-40.0)]
    with sampler(blender, scene) as rendering:
        images = [rendering.render(i, {"yaw": yaw}) for i, yaw in enumerate(yaws)]
        assert cube.rotation_euler[2] == pytest.approx(yaws[-1])  # applied to the scene itself
    assert images[0].shape == (SIZE, SIZE, 3) and images[0].dtype == np.float32
    assert all(np.abs(a - b).max() > 0.1 for a, b in [(images[0], images[1]), (images[1], images[2])])
    # The image of a sample is the scene rendered with that sample's values, whoever renders it.
    with blender.render.RenderOverride(scene, settings(blender)) as renderer:
        for yaw, image in zip(yaws, images, strict=True):
            cube.rotation_euler[2] = yaw
            assert np.array_equal(renderer.render(), image)
    cube.rotation_euler[2] = math.radians(12.5)


def test_the_scene_is_restored_exactly_after_the_loop(blender, scene):
    import bpy

    before = scene_state(bpy, scene)
    rendering = sampler(blender, scene)
    with rendering:
        for i in range(3):
            rendering.render(i, {"yaw": 0.3 * i})
        assert diff(before, scene_state(bpy, scene)) != []  # the sample and the training render settings
    assert diff(before, scene_state(bpy, scene)) == []
    with pytest.raises(blender.errors.RenderError, match="sample 3 asked for outside"):
        rendering.render(3, {"yaw": 1.0})
    assert rendering.restore() == []  # a second restore changes nothing
    assert diff(before, scene_state(bpy, scene)) == []


def test_an_error_mid_loop_restores_the_scene(blender, scene):
    import bpy

    before = scene_state(bpy, scene)
    with pytest.raises(RuntimeError, match="the caller's loop broke"), sampler(blender, scene) as rendering:
        rendering.render(0, {"yaw": 1.0})
        raise RuntimeError("the caller's loop broke")
    assert diff(before, scene_state(bpy, scene)) == []


def test_a_failing_render_mid_loop_restores_the_scene(blender, scene, monkeypatch):
    import bpy

    before = scene_state(bpy, scene)
    original, calls = blender.render.RenderOverride.render, []

    def failing(renderer):
        calls.append(1)
        if len(calls) == 2:
            raise blender.errors.RenderError("the render failed")
        return original(renderer)

    monkeypatch.setattr(blender.render.RenderOverride, "render", failing)
    with pytest.raises(blender.errors.RenderError, match="the render failed"), sampler(blender, scene) as rendering:
        for i in range(3):
            rendering.render(i, {"yaw": 0.5 * i})
    assert len(calls) == 2 and diff(before, scene_state(bpy, scene)) == []


def test_suspended_the_scene_is_its_own_and_resumed_the_sample_is_back(blender, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    before = scene_state(bpy, scene)
    with sampler(blender, scene) as rendering:
        rendering.render(0, {"yaw": 1.25})
        during = scene_state(bpy, scene)
        rendering.suspend()
        assert diff(before, scene_state(bpy, scene)) == []
        rendering.resume()
        assert diff(during, scene_state(bpy, scene)) == [] and cube.rotation_euler[2] == pytest.approx(1.25)
        rendering.suspend()  # ended while suspended: restored all the same, and a late resume changes nothing
    rendering.resume()
    assert diff(before, scene_state(bpy, scene)) == []


def test_a_property_the_render_does_not_show_is_refused_by_the_probe(blender, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube["unused"] = 1.0  # nothing reads it
    before = scene_state(bpy, scene)
    unused = blender.config.SpecConfig("unused", "OBJECT", "Cube", '["unused"]', {"kind": "normal"})
    rendering = sampler(blender, scene, unused)
    probes = {label: (prop, [0.0, 3.0]) for label, prop in rendering.bound.items()}
    with pytest.raises(blender.errors.SpecError, match="'unused'") as refused:
        rendering.probe(probes)
    assert "'yaw'" not in str(refused.value)
    assert diff(before, scene_state(bpy, scene)) == []


def test_two_specs_of_one_property_are_refused_before_anything_changes(blender, scene):
    spec = blender.config.SpecConfig("yaw", "OBJECT", "Cube", YAW_PATH, {"kind": "normal"})
    with pytest.raises(blender.errors.SpecError, match="already randomized by 'yaw'"):
        blender.sampler.bind([spec, blender.config.SpecConfig("yaw again", *list(vars(spec).values())[1:])])
    with pytest.raises(blender.errors.SpecError, match="two specs are labelled 'yaw'"):
        blender.sampler.bind([spec, spec])
