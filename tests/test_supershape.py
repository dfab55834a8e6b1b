"""The Supershape object: creation, rebuild through RNA, animation and drivers, clean unregistration."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest


def vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def expected_vertices(params: list[float], resolution: tuple[int, int]) -> np.ndarray:
    """The closed mesh's vertices straight from the supershape package: poles, then U-1 longitudes × V-2 rings."""
    from supershape import supercoords

    x, y, z = supercoords(np.array(params).reshape(2, 6), shape=resolution)
    grid = np.stack([x, y, z], -1)
    return np.concatenate([grid[:1, 0], grid[:-1, 1:-1].reshape(-1, 3), grid[:1, -1]]).astype(np.float32)


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float64)


def current_params(obj, names) -> list[float]:
    return [getattr(obj.supershape, name) for name in names]


@pytest.fixture
def shape(scenefit):
    import bpy

    result = bpy.ops.scenefit.add_supershape(resolution=(40, 30), location=(1.0, 2.0, 3.0))
    assert result == {"FINISHED"}
    return bpy.context.active_object


def test_operator_adds_a_closed_supershape_matching_the_package(scenefit, shape):
    module = scenefit.addon.blender.scene.supershape
    assert shape.supershape.is_supershape and shape.type == "MESH"
    assert tuple(shape.location) == (1.0, 2.0, 3.0)
    assert tuple(shape.supershape.resolution) == (40, 30)
    assert (shape.supershape.m1, shape.supershape.a1, shape.supershape.n3_2) == (3.0, 1.0, 3.0)
    assert len(shape.data.vertices) == 39 * 28 + 2
    assert not shape.data.validate(verbose=False), "the built mesh must need no repair"
    params = current_params(shape, module.PARAMETER_NAMES)
    np.testing.assert_allclose(vertices(shape), expected_vertices(params, (40, 30)), atol=1e-6)
    normals = np.empty(len(shape.data.polygons) * 3, np.float32)
    centers = np.empty_like(normals)
    shape.data.polygons.foreach_get("normal", normals)
    shape.data.polygons.foreach_get("center", centers)
    outward = (normals.reshape(-1, 3) * centers.reshape(-1, 3)).sum(1) > 0
    assert outward.all(), f"{(~outward).sum()} faces point inward"
    assert len(shape.data.uv_layers) == 1


def test_default_resolution_is_blendtorchs(scenefit):
    import bpy

    bpy.ops.scenefit.add_supershape()
    assert tuple(bpy.context.active_object.supershape.resolution) == (100, 100)
    assert len(bpy.context.active_object.data.vertices) == 99 * 98 + 2


@pytest.mark.parametrize("name", ["m1", "a1", "b1", "n1_1", "n2_1", "n3_1", "m2", "a2", "b2", "n1_2", "n2_2", "n3_2"])
def test_setting_a_parameter_through_rna_rebuilds_the_mesh(scenefit, shape, name):
    module = scenefit.addon.blender.scene.supershape
    before = vertices(shape)
    owner = shape.path_resolve("supershape")  # how the scene runtime sets `supershape.<name>` on an Object
    setattr(owner, name, shape.path_resolve(f"supershape.{name}") * 1.5 + 0.5)
    after = vertices(shape)
    assert np.abs(after - before).max() > 0.02, f"{name} barely moved the geometry"
    params = current_params(shape, module.PARAMETER_NAMES)
    np.testing.assert_allclose(after, expected_vertices(params, (40, 30)), atol=1e-6)


def test_a_sample_setting_several_parameters_rebuilds_once(scenefit, shape, monkeypatch):
    """rna.assign (how a run applies a sample) sets m1 and m2, then rebuilds once: the mesh matches both."""
    module = scenefit.addon.blender.scene.supershape
    rna = scenefit.addon.blender.scene.rna
    m1 = rna.resolve("m1", "OBJECT", shape.name, "supershape.m1")
    m2 = rna.resolve("m2", "OBJECT", shape.name, "supershape.m2")
    rebuilt: list[str] = []
    real_rebuild = module.rebuild

    def counting_rebuild(obj, parameters=None):
        rebuilt.append(obj.name)
        real_rebuild(obj, parameters)

    monkeypatch.setattr(module, "rebuild", counting_rebuild)
    rna.assign([(m1, 5.0), (m2, 7.0)])
    assert rebuilt == [shape.name]
    params = current_params(shape, module.PARAMETER_NAMES)
    assert (shape.supershape.m1, shape.supershape.m2) == (5.0, 7.0)
    np.testing.assert_allclose(vertices(shape), expected_vertices(params, (40, 30)), atol=1e-6)
    m1.set(3.0)  # outside a sample, each change rebuilds at once
    assert rebuilt == [shape.name, shape.name] and not module.is_stale(shape)


def test_a_failing_sample_still_leaves_the_mesh_matching_its_parameters(scenefit, shape):
    module = scenefit.addon.blender.scene.supershape
    rna = scenefit.addon.blender.scene.rna
    m1 = rna.resolve("m1", "OBJECT", shape.name, "supershape.m1")

    class Broken:
        label = "broken"

        def set(self, _value):
            raise ValueError("cannot set")

    with pytest.raises(ValueError, match="cannot set"):
        rna.assign([(m1, 6.0), (Broken(), 1.0)])
    assert shape.supershape.m1 == 6.0 and not module.is_stale(shape)


@pytest.mark.parametrize("m1", [2, 4, 6])
def test_m1_sets_the_number_of_lobes_around_the_axis(shape, m1):
    # Seen from above, one latitude ring's radius has m1 lobes; with n1=n2=n3=3 its max/min ratio is 2^(1/6).
    shape.supershape.m1 = m1
    longitudes, rings = 39, 28
    ring = vertices(shape)[1:-1].reshape(longitudes, rings, 3)[:, rings // 2]
    radius = np.hypot(ring[:, 0], ring[:, 1])
    lobes = np.sum((radius > np.roll(radius, 1)) & (radius >= np.roll(radius, -1)))
    assert lobes == m1
    assert radius.max() / radius.min() == pytest.approx(2 ** (1 / 6), abs=0.01)


def test_keyframed_parameter_rebuilds_on_frame_change(scenefit, shape):
    import bpy

    module = scenefit.addon.blender.scene.supershape
    scene = bpy.context.scene
    for frame, value in ((1, 2.0), (11, 8.0)):
        shape.supershape.m1 = value
        shape.keyframe_insert("supershape.m1", frame=frame)
    scene.frame_set(6)
    assert shape.supershape.m1 == pytest.approx(5.0, abs=0.5)  # bezier midpoint
    params = current_params(shape, module.PARAMETER_NAMES)
    np.testing.assert_allclose(vertices(shape), expected_vertices(params, (40, 30)), atol=1e-6)
    assert not module.is_stale(shape)

    bpy.app.handlers.frame_change_post.remove(module.on_frame_change)
    bpy.app.handlers.depsgraph_update_post.remove(module.on_depsgraph_update)
    try:
        stale = vertices(shape)
        scene.frame_set(11)
        assert np.array_equal(vertices(shape), stale), "without the handlers animation cannot rebuild"
        assert module.is_stale(shape)
    finally:
        bpy.app.handlers.frame_change_post.append(module.on_frame_change)
        bpy.app.handlers.depsgraph_update_post.append(module.on_depsgraph_update)
    scene.frame_set(11)
    assert shape.supershape.m1 == pytest.approx(8.0)
    assert not module.is_stale(shape)


def test_rendered_animation_shows_each_frames_shape(scenefit, shape, tmp_path):
    # A render's depsgraph animates only its own copy of the object: the handler must rebuild from that copy.
    import bpy

    module = scenefit.addon.blender.scene.supershape
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = (0.0, -3.0, 0.0)
    camera.rotation_euler = (1.5708, 0.0, 0.0)
    scene.camera = camera
    shape.location = (0.0, 0.0, 0.0)
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x = render.resolution_y = 32
    render.image_settings.file_format = "PNG"

    def still(m1: float) -> np.ndarray:
        shape.supershape.m1 = m1
        render.filepath = str(tmp_path / f"still_{m1}.png")
        bpy.ops.render.render(write_still=True)
        return read_png(render.filepath)

    stills = [still(2.0), still(12.0)]
    for frame, value in ((1, 2.0), (2, 12.0)):
        shape.supershape.m1 = value
        shape.keyframe_insert("supershape.m1", frame=frame)
        animation = shape.animation_data  # slotted actions from 4.4, action.fcurves gone in 5.0: compat.py
        compat = scenefit.addon.blender.scene.compat
        fcurves = compat.action_fcurves(animation.action, getattr(animation, "action_slot", None))
        fcurves[0].keyframe_points[-1].interpolation = "CONSTANT"
    scene.frame_start, scene.frame_end = 1, 2
    scene.frame_set(1)
    render.filepath = str(tmp_path / "anim_")
    bpy.ops.render.render(animation=True)
    frames = [read_png(tmp_path / f"anim_000{i}.png") for i in (1, 2)]
    assert np.abs(stills[0] - stills[1]).mean() > 1.0, "the two shapes must look different"
    for frame, expected in zip(frames, stills, strict=True):
        assert np.abs(frame - expected).mean() < 0.05
    params = current_params(shape, module.PARAMETER_NAMES)
    np.testing.assert_allclose(vertices(shape), expected_vertices(params, (40, 30)), atol=1e-6)


def test_driven_parameter_rebuilds(scenefit, shape):
    import bpy

    module = scenefit.addon.blender.scene.supershape
    driver = shape.driver_add("supershape.m2").driver
    driver.expression = "frame / 2"
    bpy.context.scene.frame_set(9)
    assert shape.supershape.m2 == pytest.approx(4.5)
    params = current_params(shape, module.PARAMETER_NAMES)
    np.testing.assert_allclose(vertices(shape), expected_vertices(params, (40, 30)), atol=1e-6)


def test_resolution_change_rebuilds_the_topology(shape):
    shape.supershape.resolution = (12, 8)
    assert len(shape.data.vertices) == 11 * 6 + 2
    assert len(shape.data.polygons) == 11 * 5 + 2 * 11
    assert not shape.data.validate(verbose=False)


def test_create_supershape_from_python_and_its_errors(scenefit):
    import bpy

    module = scenefit.addon.blender.scene.supershape
    obj = module.create_supershape(bpy.context.scene.collection, name="Shape", resolution=(20, 20), m1=5.0, n1_2=2.0)
    assert obj.name in bpy.context.scene.objects and obj.supershape.m1 == 5.0 and obj.supershape.n1_2 == 2.0
    params = current_params(obj, module.PARAMETER_NAMES)
    np.testing.assert_allclose(vertices(obj), expected_vertices(params, (20, 20)), atol=1e-6)

    objects, meshes = len(bpy.data.objects), len(bpy.data.meshes)
    with pytest.raises(module.SupershapeError, match="m3"):
        module.create_supershape(bpy.context.scene.collection, m3=1.0)
    with pytest.raises(module.SupershapeError, match="resolution"):
        module.create_supershape(bpy.context.scene.collection, resolution=(3, 50))
    assert (len(bpy.data.objects), len(bpy.data.meshes)) == (objects, meshes), "a failed create leaves nothing"
    with pytest.raises(module.SupershapeError, match="not a supershape"):
        module.rebuild(bpy.data.objects.new("plain", bpy.data.meshes.new("plain")))


def test_unregister_removes_property_menu_and_handlers(scenefit):
    import bpy

    module = scenefit.addon.blender.scene.supershape
    operators = scenefit.addon.blender.ui.operators
    menu = bpy.types.VIEW3D_MT_mesh_add
    assert operators._add_mesh_entry in menu.draw._draw_funcs
    operators.unregister()
    module.unregister()
    try:
        assert not hasattr(bpy.types.Object, "supershape")
        assert "supershape" not in bpy.types.Object.bl_rna.properties
        assert not hasattr(bpy.types, "SCENEFIT_SupershapeProperties")
        assert not hasattr(bpy.types, "SCENEFIT_OT_add_supershape")
        assert operators._add_mesh_entry not in menu.draw._draw_funcs
        assert module.on_frame_change not in bpy.app.handlers.frame_change_post
        assert module.on_depsgraph_update not in bpy.app.handlers.depsgraph_update_post
    finally:
        module.register()
        operators.register()
    assert hasattr(bpy.types.Object, "supershape") and module.on_frame_change in bpy.app.handlers.frame_change_post


def test_zip_ships_the_supershape_wheel(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "wheels/supershape-1.1.1-py3-none-any.whl" in names
