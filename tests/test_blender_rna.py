"""Resolving random-property specs, reading/writing them, snapshot/restore, and the SpecError messages."""

from __future__ import annotations

import math
import struct

import pytest

from tests.blender_scenes import YAW_PATH, cube_scene


@pytest.fixture
def rna(scenefit):
    return scenefit.addon.blender.scene.rna


@pytest.fixture
def scene(scenefit):
    import bpy

    return cube_scene(bpy)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_vector_component_float(rna, scene):
    import bpy

    bound = rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    assert (bound.value_type, bound.unit, bound.index, bound.is_id_property) == ("float", "ROTATION", 2, False)
    bound.set(math.radians(60))
    cube = bpy.data.objects["Cube"]
    assert cube.rotation_euler[2] == pytest.approx(math.radians(60), abs=1e-7)
    assert tuple(cube.rotation_euler[:2]) == (0.0, 0.0)  # other components untouched
    assert bound.get() == cube.rotation_euler[2]


def test_custom_properties_modifier_inputs_node_sockets(rna, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube["my_prop"] = 1.5
    cube["vec"] = [1.0, 2.0, 3.0]
    cube["count"] = 3
    cube["flag"] = False
    cube.id_properties_ui("my_prop").update(subtype="ANGLE")
    prop = rna.resolve("p", "OBJECT", "Cube", '["my_prop"]')
    assert (prop.value_type, prop.unit) == ("float", "ROTATION")
    prop.set(2)
    assert isinstance(cube["my_prop"], float) and cube["my_prop"] == 2.0  # the property keeps its type
    rna.resolve("v", "OBJECT", "Cube", '["vec"][1]').set(7.25)
    assert list(cube["vec"]) == [1.0, 7.25, 3.0]
    count = rna.resolve("c", "OBJECT", "Cube", '["count"]')
    count.set(4.6)
    assert cube["count"] == 5 and count.value_type == "int"
    rna.resolve("f", "OBJECT", "Cube", '["flag"]').set(True)
    assert cube["flag"] is True

    group = bpy.data.node_groups.new("GN", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Angle", in_out="INPUT", socket_type="NodeSocketFloat").subtype = "ANGLE"
    modifier = cube.modifiers.new("GeometryNodes", "NODES")
    modifier.node_group = group
    socket = rna.resolve("gn", "OBJECT", "Cube", 'modifiers["GeometryNodes"]["Socket_2"]')
    assert socket.unit == "ROTATION"
    socket.set(0.5)
    assert modifier["Socket_2"] == 0.5

    roughness = rna.resolve(
        "rough", "MATERIAL", "Grey", 'node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value'
    )
    roughness.set(0.25)
    assert bpy.data.materials["Grey"].node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value == 0.25


def test_int_enum_bool_and_nested_rna(rna, scene):
    import bpy

    light = rna.resolve("type", "LIGHT", "Sun", "type")
    assert light.value_type == "enum" and {"POINT", "SUN", "SPOT", "AREA"} <= set(light.enum_items)
    light.set("POINT")
    assert bpy.data.lights["Sun"].type == "POINT"
    with pytest.raises(rna.SpecError, match="'CUBE' is not one of"):
        light.set("CUBE")
    energy = rna.resolve("energy", "OBJECT", "Sun", "data.energy")  # through the object's data pointer
    energy.set(3.5)
    assert bpy.data.lights["Sun"].energy == 3.5
    hide = rna.resolve("hide", "OBJECT", "Cube", "hide_render")
    hide.set(True)
    assert bpy.data.objects["Cube"].hide_render is True
    passes = rna.resolve("percentage", "SCENE", "Scene", "render.resolution_percentage")
    passes.set(49.6)
    assert scene.render.resolution_percentage == 50


def test_rigid_body_mass(rna, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    bpy.context.view_layer.objects.active = cube
    bpy.ops.rigidbody.object_add()
    mass = rna.resolve("mass", "OBJECT", "Cube", "rigid_body.mass")
    mass.set(2.5)
    assert cube.rigid_body.mass == 2.5


def test_snapshot_restore_is_bit_exact(rna, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube.rotation_euler = (0.1234567, -2.345678, 1 / 3)
    cube["my_prop"] = 1 / 7
    bound = [rna.resolve(f"r{i}", "OBJECT", "Cube", f"rotation_euler[{i}]") for i in range(3)]
    bound.append(rna.resolve("m", "OBJECT", "Cube", '["my_prop"]'))
    before = [bits(cube.rotation_euler[i]) for i in range(3)] + [bits(cube["my_prop"])]
    saved = rna.snapshot(bound)
    for b in bound:
        b.set(9.87654321)
    assert rna.restore(saved) == []
    after = [bits(cube.rotation_euler[i]) for i in range(3)] + [bits(cube["my_prop"])]
    assert after == before


@pytest.mark.parametrize(
    ("id_type", "id_name", "path", "message"),
    [
        ("OBJECT", "Cub", YAW_PATH, r"Object 'Cub' not found \(deleted or renamed\?\)\. Did you mean 'Cube'"),
        ("MATERIAL", "Cube", "diffuse_color[0]", "Material 'Cube' not found"),
        ("OBJECT", "Cube", "rotation_eulr[2]", "path 'rotation_eulr\\[2\\]' does not resolve"),
        ("OBJECT", "Cube", 'modifiers["Nope"].levels', "does not resolve"),
        ("OBJECT", "Cube", '["missing"]', "no custom property 'missing'"),
        ("OBJECT", "Cube", "users", "read-only"),
        ("OBJECT", "Cube", "is_evaluated", "read-only"),
        ("OBJECT", "Cube", "name", "not numeric \\(it is text\\)"),
        ("OBJECT", "Cube", "data", "not numeric \\(it names a data struct"),
        ("OBJECT", "Cube", "modifiers", "not numeric \\(it is a collection\\)"),
        ("OBJECT", "Cube", "rotation_euler", "is a vector of 3; add an index such as rotation_euler\\[0\\]"),
        ("OBJECT", "Cube", "rotation_euler[3]", "index 3 is out of range"),
        ("OBJECT", "Cube", "matrix_world[0]", "is a matrix"),
        ("OBJECT", "Cube", "", "no data path given"),
        ("BRUSH", "Cube", YAW_PATH, "unknown data-block type 'BRUSH'"),
    ],
)
def test_bad_specs_name_the_culprit(rna, scene, id_type, id_name, path, message):
    with pytest.raises(rna.SpecError, match=message) as error:
        rna.resolve("my label", id_type, id_name, path)
    assert "'my label'" in str(error.value)


def test_deleted_and_renamed_ids(rna, scene):
    import bpy

    bound = rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    bpy.data.objects["Cube"].name = "Cube.001"
    with pytest.raises(rna.SpecError, match="Object 'Cube' not found .* Did you mean 'Cube.001'"):
        rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    bpy.data.objects.remove(bpy.data.objects["Cube.001"])
    with pytest.raises(rna.SpecError, match="'yaw': its data-block was deleted during the run"):
        bound.get()


def test_driven_and_keyframed_properties(rna, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube.driver_add("rotation_euler", 2)
    with pytest.raises(rna.SpecError, match="'yaw' \\(Object 'Cube'\\).*is driven by a driver"):
        rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    rna.resolve("pitch", "OBJECT", "Cube", "rotation_euler[0]")  # other components stay free
    cube.keyframe_insert("location", index=1)
    with pytest.raises(rna.SpecError, match="is animated with keyframes"):
        rna.resolve("y", "OBJECT", "Cube", "location[1]")
    rna.resolve("x", "OBJECT", "Cube", "location[0]")
    material = bpy.data.materials["Grey"]
    material.node_tree.nodes["Principled BSDF"].inputs["Roughness"].keyframe_insert("default_value")
    with pytest.raises(rna.SpecError, match="animated with keyframes"):  # the curve sits on the node tree
        rna.resolve("rough", "MATERIAL", "Grey", 'node_tree.nodes["Principled BSDF"].inputs[2].default_value')


def test_non_finite_values_are_refused(rna, scene):
    import bpy

    bound = rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    before = bpy.data.objects["Cube"].rotation_euler[2]
    with pytest.raises(rna.SpecError, match="non-finite value nan"):
        bound.set(float("nan"))
    assert bpy.data.objects["Cube"].rotation_euler[2] == before
