"""Adding random properties the ways a user does: Right-click ▸ Randomize with SceneFit (its menu entry and its
operator), the panel's pick dialog and Paste Full Data Path, and editing the list (remove, move)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tests.blender_scenes import YAW_PATH, cube_scene
from tests.ui_layout import RecordingLayout


@pytest.fixture
def ui(scenefit):
    blender = scenefit.addon.blender
    return SimpleNamespace(picking=blender.data.picking, spec_ops=blender.ui.operators.specs)


@pytest.fixture
def scene(scenefit):
    import bpy

    scene = cube_scene(bpy)
    bpy.data.objects["Cube"].rotation_euler[2] = math.radians(40.0)
    return scene


def specs(scene):
    return scene.scenefit.specs


def menu_entries(ui, context) -> list[SimpleNamespace]:
    """What the right-click menu shows: the entries SceneFit's draw function adds, with their operator settings."""
    layout = RecordingLayout()
    ui.spec_ops.draw_button_context(SimpleNamespace(layout=layout), context)
    return [call for call in layout.calls() if call.name == "operator"]


def right_click(ui, owner, path, index):
    """Right-click ▸ Randomize with SceneFit, as Blender runs it: the menu entry's operator with its settings."""
    import bpy

    context = SimpleNamespace(property=(owner, path, index), button_prop=None, button_pointer=None)
    (entry,) = menu_entries(ui, context)
    assert entry.args == ("scenefit.randomize_property",)
    assert bpy.ops.scenefit.randomize_property(**entry.properties) == {"FINISHED"}


def test_object_yaw_from_the_context_menu(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    right_click(ui, cube, "rotation_euler", 2)
    (spec,) = specs(scene)
    assert (spec.id_type, spec.id_name, spec.data_path) == ("OBJECT", "Cube", YAW_PATH)
    assert (spec.distribution, spec.unit, spec.learn, spec.use_bounds) == ("NORMAL", "ROTATION", True, False)
    assert spec.mu == pytest.approx(cube.rotation_euler[2], abs=1e-6)  # centred on the current value, radians
    assert spec.sigma == pytest.approx(math.radians(10.0), rel=1e-6)  # 10 % of 40° is below the 10° floor
    # Bounds off, but centred on the value should the user turn them on (they were 0°–57°: μ on the low end).
    assert (spec.low, spec.high) == pytest.approx((spec.mu - math.pi, spec.mu + math.pi), abs=1e-6)
    assert spec.label == "Cube Euler Rotation Z"
    assert spec.problem == ""


def test_material_node_socket_is_reached_through_its_material(ui, scene):
    import bpy

    material = bpy.data.materials["Grey"]
    roughness = material.node_tree.nodes["Principled BSDF"].inputs["Roughness"]
    roughness.default_value = 0.5
    # Blender hands over the embedded node tree and the path inside it; a spec must name the material.
    assert material.node_tree.is_embedded_data
    right_click(ui, material.node_tree, roughness.path_from_id("default_value"), -1)
    (spec,) = specs(scene)
    assert (spec.id_type, spec.id_name) == ("MATERIAL", "Grey")
    assert spec.data_path == 'node_tree.nodes["Principled BSDF"].inputs[2].default_value'
    assert material.path_resolve(spec.data_path) == 0.5
    assert (spec.distribution, spec.mu, spec.sigma) == ("NORMAL", 0.5, pytest.approx(0.05))
    assert (spec.use_bounds, spec.low, spec.high) == (True, 0.0, 1.0)  # the socket's hard limits
    assert spec.label == "Grey Roughness"


def test_light_energy_from_the_light_data_tab(ui, scene):
    import bpy

    light = bpy.data.lights["Sun"]
    # The Object Data tab shows the light itself: the button's struct is the data-block.
    context = SimpleNamespace(button_pointer=light, button_prop=light.bl_rna.properties["energy"], property=None)
    with bpy.context.temp_override(button_pointer=light, button_prop=light.bl_rna.properties["energy"]):
        assert bpy.ops.scenefit.randomize_property() == {"FINISHED"}  # no settings: read from the context
    (spec,) = specs(scene)
    assert (spec.id_type, spec.id_name, spec.data_path) == ("LIGHT", "Sun", "energy")
    assert (spec.distribution, spec.mu, spec.use_bounds) == ("NORMAL", 2.0, False)
    assert spec.sigma == pytest.approx(0.2)
    (entry,) = menu_entries(ui, context)
    assert entry.properties == {"id_type": "LIGHT", "id_name": "Sun", "data_path": "energy"}


def test_enum_becomes_a_categorical_over_its_items(ui, scene):
    import bpy

    right_click(ui, bpy.data.lights["Sun"], "type", -1)
    (spec,) = specs(scene)
    assert spec.distribution == "CATEGORICAL"
    assert [c.strip() for c in spec.choices.split(",")] == ["POINT", "SUN", "SPOT", "AREA"]
    assert spec.probs == ""  # uniform


def test_bool_becomes_a_bernoulli(ui, scene):
    import bpy

    right_click(ui, bpy.data.objects["Cube"], "hide_render", -1)
    (spec,) = specs(scene)
    assert (spec.data_path, spec.distribution, spec.p) == ("hide_render", "BERNOULLI", 0.5)


def test_geometry_nodes_int_input_with_a_small_range_becomes_a_categorical(ui, scene):
    import bpy

    group = bpy.data.node_groups.new("Shapes", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    socket = group.interface.new_socket("Shape", in_out="INPUT", socket_type="NodeSocketInt")
    socket.min_value, socket.max_value = 0, 3
    modifier = bpy.data.objects["Cube"].modifiers.new("GeometryNodes", "NODES")
    modifier.node_group = group
    # The button shows an ID property of the modifier; its identifier is the socket's.
    prop = SimpleNamespace(identifier=socket.identifier, type="INT", array_length=0)
    context = SimpleNamespace(button_pointer=modifier, button_prop=prop, property=None)
    (entry,) = menu_entries(ui, context)
    assert entry.properties["data_path"] == f'modifiers["GeometryNodes"]["{socket.identifier}"]'
    assert bpy.ops.scenefit.randomize_property(**entry.properties) == {"FINISHED"}
    (spec,) = specs(scene)
    assert (spec.distribution, spec.choices, spec.label) == ("CATEGORICAL", "0, 1, 2, 3", "Cube Shape")


def test_vector_without_an_index_offers_each_component(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    context = SimpleNamespace(button_pointer=cube, button_prop=cube.bl_rna.properties["location"], property=None)
    entries = menu_entries(ui, context)
    assert [e.properties["data_path"] for e in entries] == ["location[0]", "location[1]", "location[2]"]
    assert [e.kwargs["text"] for e in entries][2].endswith("(Z)")


def test_nothing_offered_for_text_or_pointers(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    for name in ("name", "data", "parent"):
        context = SimpleNamespace(button_pointer=cube, button_prop=cube.bl_rna.properties[name], property=None)
        assert menu_entries(ui, context) == []
    assert menu_entries(ui, SimpleNamespace()) == []


def test_same_property_twice_is_added_once(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    right_click(ui, cube, "rotation_euler", 2)
    right_click(ui, cube, "rotation_euler", 0)
    right_click(ui, cube, "rotation_euler", 2)
    assert [s.data_path for s in specs(scene)] == [YAW_PATH, "rotation_euler[0]"]
    assert scene.scenefit.active_spec_index == 0  # the existing spec is selected instead


def test_unusable_property_is_refused_and_nothing_added(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube.keyframe_insert("location", index=0)
    with pytest.raises(RuntimeError, match="keyframes"):
        bpy.ops.scenefit.randomize_property(id_type="OBJECT", id_name="Cube", data_path="location[0]")
    with pytest.raises(RuntimeError, match="not numeric"):
        bpy.ops.scenefit.randomize_property(id_type="OBJECT", id_name="Cube", data_path="name")
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.scenefit.randomize_property(id_type="OBJECT", id_name="Cuba", data_path="location[0]")
    assert len(specs(scene)) == 0


def test_labels_stay_unique(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    right_click(ui, cube, "rotation_euler", 2)
    specs(scene)[0].data_path = "rotation_euler[1]"  # the user re-pointed it; its label stays
    right_click(ui, cube, "rotation_euler", 2)
    assert [s.label for s in specs(scene)] == ["Cube Euler Rotation Z", "Cube Euler Rotation Z 2"]


def test_pick_dialog_and_paste_use_the_same_defaults(ui, scene):
    import bpy

    assert bpy.ops.scenefit.spec_add(id_type="LIGHT", id_name="Sun", data_path="energy") == {"FINISHED"}
    assert bpy.ops.scenefit.spec_paste(
        path='bpy.data.materials["Blue"].node_tree.nodes["Principled BSDF"].inputs[0].default_value[2]'
    ) == {"FINISHED"}
    light, blue = specs(scene)
    assert (light.id_type, light.data_path, light.mu) == ("LIGHT", "energy", 2.0)
    assert (blue.id_type, blue.id_name) == ("MATERIAL", "Blue")
    assert blue.data_path == 'node_tree.nodes["Principled BSDF"].inputs[0].default_value[2]'
    assert blue.mu == pytest.approx(0.8) and blue.label == "Blue Base Color B"
    with pytest.raises(RuntimeError, match="not a full data path"):
        bpy.ops.scenefit.spec_paste(path="rotation_euler[2]")


def test_remove_and_move(ui, scene):
    import bpy

    cube = bpy.data.objects["Cube"]
    for index in range(3):
        right_click(ui, cube, "location", index)
    settings = scene.scenefit
    settings.active_spec_index = 0
    assert bpy.ops.scenefit.spec_move(direction="DOWN") == {"FINISHED"}
    assert [s.data_path for s in specs(scene)] == ["location[1]", "location[0]", "location[2]"]
    assert settings.active_spec_index == 1
    assert bpy.ops.scenefit.spec_move(direction="UP") == {"FINISHED"}
    assert settings.active_spec_index == 0
    assert bpy.ops.scenefit.spec_move(direction="UP") == {"CANCELLED"}  # already at the top
    settings.active_spec_index = 2
    assert bpy.ops.scenefit.spec_remove() == {"FINISHED"}
    assert [s.data_path for s in specs(scene)] == ["location[0]", "location[1]"]
    assert settings.active_spec_index == 1
