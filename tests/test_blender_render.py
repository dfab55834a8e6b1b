"""Render to array: shape, content, settings restored bit for bit, clear errors."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest

from tests.blender_scenes import cube_scene, diff, scene_state


@pytest.fixture
def render(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.render")


@pytest.fixture
def scene(scenefit):
    import bpy

    return cube_scene(bpy)


@pytest.mark.parametrize(("engine", "samples", "size"), [("BLENDER_WORKBENCH", 1, (48, 32)), ("CYCLES", 4, (32, 32))])
def test_render_to_array(render, scene, engine, samples, size):
    import bpy

    image = render.render_to_array(scene, render.RenderSettings(size, engine, samples))
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.05  # the cube is in view, not a blank frame
    assert np.array_equal(image * 255, np.round(image * 255))  # 8-bit lattice, like targets
    cube = bpy.data.objects["Cube"]
    cube.rotation_euler[2] = math.radians(90)
    turned = render.render_to_array(scene, render.RenderSettings(size, engine, samples))
    assert np.abs(turned - image).mean() > 0.005  # yaw is visible


def test_rgba_render_has_transparent_background(render, scene):
    image = render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1, channels=4))
    assert image.shape == (32, 32, 4)
    alpha = image[..., 3]
    assert alpha[0, 0] == 0.0 and alpha.max() == 1.0


def test_settings_restored_bit_for_bit(render, scene):
    import bpy

    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 1919, 1079, 37
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_depth = "16"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = "//frames/shot_"
    scene.render.dither_intensity = 0.731
    scene.view_settings.view_transform = "AgX"
    scene.view_settings.look = "AgX - Punchy"
    scene.view_settings.exposure = 0.3
    scene.cycles.samples = 333
    scene.cycles.use_denoising = True
    scene.display.render_aa = "16"
    before = scene_state(bpy, scene)
    with render.RenderOverride(scene, render.RenderSettings((32, 32), "CYCLES", 2)) as renderer:
        renderer.render()
        # The scene's own colour management stays: targets made by the user's render script went through it.
        assert scene.view_settings.view_transform == "AgX" and scene.view_settings.look == "AgX - Punchy"
        assert scene.cycles.samples == 2
        with pytest.raises(ZeroDivisionError):  # an error inside the block still restores
            with render.RenderOverride(scene, render.RenderSettings((16, 16), "BLENDER_WORKBENCH", 8)):
                1 / 0  # noqa: B018
    assert diff(before, scene_state(bpy, scene)) == []


def test_persistent_data_renders_match_fresh_renders(render, scene):
    import bpy

    settings = render.RenderSettings((32, 32), "CYCLES", 4)
    cube = bpy.data.objects["Cube"]
    with render.RenderOverride(scene, settings) as renderer:
        assert scene.render.use_persistent_data
        renderer.render()
        cube.rotation_euler[2] = 1.0
        kept = renderer.render()
    assert np.array_equal(kept, render.render_to_array(scene, settings))


def test_no_camera(render, scene):
    import bpy

    scene.camera = None
    before = scene_state(bpy, scene)
    with pytest.raises(render.RenderError, match="scene 'Scene' has no active camera"):
        render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH"))
    assert diff(before, scene_state(bpy, scene)) == []


def test_failed_render_is_a_render_error_and_restores(render, scene, monkeypatch):
    import bpy

    def broken(**_kwargs):
        raise RuntimeError("Error: out of memory\n")

    before = scene_state(bpy, scene)
    monkeypatch.setattr(bpy.ops, "render", SimpleNamespace(render=broken))
    with pytest.raises(render.RenderError, match="rendering scene 'Scene' failed: out of memory"):
        render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH"))
    monkeypatch.setattr(bpy.ops, "render", SimpleNamespace(render=lambda **_kwargs: {"CANCELLED"}))
    with pytest.raises(render.RenderError, match="Blender wrote no image"):
        render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH"))
    assert diff(before, scene_state(bpy, scene)) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"engine": "POVRAY"}, "unknown render engine 'POVRAY'"),
        ({"resolution": (2, 64)}, "outside 4–4096"),
        ({"samples": 0}, "samples must be at least 1"),
        ({"channels": 2}, "channels must be 3"),
    ],
)
def test_bad_render_settings(render, scene, settings, message):
    import bpy

    before = scene_state(bpy, scene)
    with pytest.raises(render.RenderError, match=message):
        render.render_to_array(scene, render.RenderSettings(**settings))
    assert diff(before, scene_state(bpy, scene)) == []


def geometry_nodes_and_driver_scene(bpy):
    """The cube scene plus what an RNA update never reaches: a Geometry Nodes input that scales the cube, and a
    scene custom property that decides through drivers which of two spheres renders."""
    scene = cube_scene(bpy)
    cube = bpy.data.objects["Cube"]
    tree = bpy.data.node_groups.new("Scale", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    scale = tree.interface.new_socket("Scale", in_out="INPUT", socket_type="NodeSocketFloat")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group_in, group_out = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    transform = tree.nodes.new("GeometryNodeTransform")
    tree.links.new(group_in.outputs[0], transform.inputs["Geometry"])
    tree.links.new(group_in.outputs[1], transform.inputs["Scale"])
    tree.links.new(transform.outputs[0], group_out.inputs[0])
    modifier = cube.modifiers.new("GeometryNodes", "NODES")
    modifier.node_group = tree
    modifier[scale.identifier] = 1.0
    scene["choice"] = 0
    for k in range(2):
        sphere = bpy.data.objects.new(f"Sphere{k}", bpy.data.meshes.new(f"Sphere{k}"))
        sphere.data.from_pydata([(0, 0, 0), (1.5, 0, 0), (0, 1.5, 0), (0, 0, 1.5)], [], [(0, 1, 2), (0, 1, 3)])
        sphere.location = (2.0 * k - 1.0, -1.5, 1.5)
        scene.collection.objects.link(sphere)
        driver = sphere.driver_add("hide_render").driver
        variable = driver.variables.new()
        variable.name = "c"
        variable.targets[0].id_type = "SCENE"
        variable.targets[0].id = scene
        variable.targets[0].data_path = '["choice"]'
        driver.expression = f"c != {k}"
    return scene, f'modifiers["GeometryNodes"]["{scale.identifier}"]'


@pytest.mark.parametrize(("engine", "persistent"), [("CYCLES", True), ("CYCLES", False), ("BLENDER_WORKBENCH", False)])
def test_id_property_and_driver_changes_show_in_the_next_render(scenefit, render, engine, persistent):
    """A Geometry Nodes input and a custom property read by drivers reach the very next render — with Cycles'
    persistent data too, which renders the previous value unless the owner is tagged."""
    import bpy

    rna = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.rna")
    scene, socket_path = geometry_nodes_and_driver_scene(bpy)
    scale = rna.resolve("scale", "OBJECT", "Cube", socket_path)
    choice = rna.resolve("choice", "SCENE", "Scene", '["choice"]')
    with render.RenderOverride(scene, render.RenderSettings((32, 32), engine, 4)) as renderer:
        scene.render.use_persistent_data = persistent
        for bound, values in ((scale, (1.0, 0.5)), (choice, (0, 1))):
            images = []
            for value in values:
                rna.assign([(bound, value)])
                images.append(renderer.render())
            assert np.abs(images[1] - images[0]).max() > 0.1, f"{bound.label} did not reach the render"


def test_a_larger_render_size_goes_through_the_targets_resize(scenefit, render, scene, tmp_path):
    """A render made at 2× and brought to the training size equals a target rendered by a plain script at 2× and
    loaded by the target loader: one pipeline for both."""
    import bpy

    targets = importlib.import_module(f"{scenefit.__name__}.addon.blender.targets.images")
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.render_aa = "8"
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(tmp_path / "target.png")
    bpy.ops.render.render(write_still=True)
    loaded, _ = targets.load_targets(tmp_path, (32, 32), 3)
    settings = render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 8, render_size=(64, 64))
    image = render.render_to_array(scene, settings)
    assert image.shape == (32, 32, 3)
    assert np.abs(image - loaded[0]).max() <= 1 / 255 + 1e-6
    direct = render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 8))
    assert np.abs(direct - loaded[0]).max() > 2 / 255  # rendering at the training size would not match it


def test_a_property_that_does_not_change_the_render_is_refused_by_name(scenefit, render, scene):
    import bpy

    rna = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.rna")
    bpy.data.objects["Cube"]["unused"] = 1.0
    unused = rna.resolve("unused", "OBJECT", "Cube", '["unused"]')
    yaw = rna.resolve("yaw", "OBJECT", "Cube", "rotation_euler[2]")
    probes = {
        "unused": (unused, render.probe_values({"kind": "normal", "mu": 1.0, "sigma": 0.5})),
        "yaw": (yaw, render.probe_values({"kind": "normal", "mu": 0.0, "sigma": 0.5})),
    }
    before = scene_state(bpy, scene)
    with pytest.raises(render.SpecError, match="not identifiable") as caught:
        with render.RenderOverride(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1), probes):
            pass
    assert "'unused'" in str(caught.value) and "does not change the rendered images" in str(caught.value)
    assert "'yaw'" not in str(caught.value)
    assert diff(before, scene_state(bpy, scene)) == []


def test_engine_settings_name_this_blenders_engines(scenefit):
    """What differs between Blender versions lives in compat.py: every engine setting names an engine this Blender
    has (EEVEE is BLENDER_EEVEE_NEXT in 4.2–4.5 and BLENDER_EEVEE again in 5.x), and handlers that some versions
    lack come back as None rather than raising."""
    import bpy

    compat = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.compat")
    render = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.render")
    settings = bpy.context.scene.render
    before = settings.engine
    for setting in render.RENDER_ENGINES:  # a name this Blender lacks raises TypeError
        settings.engine = compat.render_engine(setting)
        assert settings.engine == compat.render_engine(setting)
    settings.engine = before
    assert compat.render_engine("BLENDER_EEVEE_NEXT") == (
        "BLENDER_EEVEE" if bpy.app.version >= (5, 0, 0) else "BLENDER_EEVEE_NEXT"
    )
    assert compat.handler_list("save_pre") is bpy.app.handlers.save_pre
    assert compat.handler_list("no_such_handler") is None
