"""Applying presets in Blender: each builds its scene, its random properties resolve and change the render."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
STEMS = ["supershape_density", "supershape_guided_dr", "object_yaw", "discrete_choice", "bouncing_ball"]


def load(scenefit, stem: str):
    return scenefit.addon.engine.presets.load_preset(ROOT / "presets" / f"{stem}.json")


def module(scenefit, name: str):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")


def render(scenefit, scene) -> np.ndarray:
    render = module(scenefit, "scene.render")
    return render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1))


@pytest.mark.parametrize("stem", STEMS)
def test_each_preset_builds_its_scene_and_fills_the_settings(scenefit, stem):
    import bpy

    rna = scenefit.addon.blender.scene.rna
    preset = load(scenefit, stem)
    scene = bpy.context.scene
    scenefit.addon.blender.scene.presets.apply_preset(preset, scene)

    assert scene.camera is not None and scene.camera.name == "SceneFit Camera"
    assert scene.world is not None and preset.scene_options["name"] in scene.objects
    settings = scene.scenefit
    assert [spec.label for spec in settings.specs] == [p.label for p in preset.parameters]
    for spec, parameter in zip(settings.specs, preset.parameters, strict=True):
        assert (spec.id_type, spec.id_name, spec.data_path) == (
            parameter.id_type,
            parameter.id_name,
            parameter.data_path,
        )
        assert spec.problem == "", spec.problem
        owner = bpy.data.objects[spec.id_name]
        value = owner.path_resolve(spec.data_path) if '["' not in spec.data_path else None
        bound = rna.resolve(spec.label, spec.id_type, spec.id_name, spec.data_path)
        if value is not None:
            assert bound.get() == pytest.approx(value)
        assert spec.learn
    run = preset.run
    assert (settings.objective, settings.estimator, settings.batch_size, settings.steps) == (
        run["objective"],
        run["estimator"],
        run["batch_size"],
        run["steps"],
    )
    assert (settings.resolution_x, settings.resolution_y) == run["resolution"]
    assert (settings.render_engine, settings.samples, settings.seed) == (
        run["render_engine"],
        run["samples"],
        run["seed"],
    )


def test_spec_fields_carry_each_distribution_kind(scenefit):
    import bpy

    scene = bpy.context.scene
    presets = scenefit.addon.blender.scene.presets
    presets.apply_preset(load(scenefit, "supershape_density"), scene)
    m1, m2 = scene.scenefit.specs
    assert (m1.distribution, m1.mu, m1.sigma) == ("LOGNORMAL", pytest.approx(1.2), pytest.approx(0.4))
    assert (m2.distribution, m2.mu) == ("LOGNORMAL", pytest.approx(3.0))
    presets.apply_preset(load(scenefit, "discrete_choice"), scene)
    (shape,) = scene.scenefit.specs
    assert shape.distribution == "CATEGORICAL" and shape.choices == "0, 1, 2"
    assert [float(p) for p in shape.probs.split(",")] == pytest.approx([1 / 3] * 3)
    presets.apply_preset(load(scenefit, "object_yaw"), scene)
    (yaw,) = scene.scenefit.specs
    assert yaw.distribution == "NORMAL" and not yaw.use_bounds and yaw.unit == "ROTATION"


@pytest.mark.parametrize(
    "stem, values",
    [("supershape_density", (2.0, 12.0)), ("object_yaw", (0.0, np.pi / 2)), ("discrete_choice", (0, 2))],
)
def test_the_random_property_changes_the_render(scenefit, stem, values):
    import bpy

    preset = load(scenefit, stem)
    scene = bpy.context.scene
    scenefit.addon.blender.scene.presets.apply_preset(preset, scene)
    spec = scene.scenefit.specs[0]
    bound = scenefit.addon.blender.scene.rna.resolve(spec.label, spec.id_type, spec.id_name, spec.data_path)
    images = []
    for value in values:
        bound.set(value)
        images.append(render(scenefit, scene))
    foreground = [(image.mean(-1) > 0.15).mean() for image in images]
    assert min(foreground) > 0.03, f"the object should be in view: {foreground}"
    assert np.abs(images[0] - images[1]).mean() > 0.01


def test_primitive_choice_switches_the_evaluated_geometry(scenefit):
    import bpy

    scene = bpy.context.scene
    scenefit.addon.blender.scene.presets.apply_preset(load(scenefit, "discrete_choice"), scene)
    obj = bpy.data.objects["Primitive"]
    counts = []
    for index in range(3):
        obj.modifiers["Shape"]["Socket_1"] = index
        obj.update_tag()
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        counts.append(len(evaluated.data.vertices))
    assert counts[0] == 8 and len(set(counts)) == 3, counts


def test_taken_names_are_mapped_to_what_the_builder_made(scenefit):
    import bpy

    scene = bpy.context.scene
    presets = scenefit.addon.blender.scene.presets
    bpy.data.objects.new("Supershape", None)  # an unrelated data-block already has the name
    names = presets.apply_preset(load(scenefit, "supershape_density"), scene)
    made = names[("OBJECT", "Supershape")]
    assert made == "Supershape.001" and bpy.data.objects[made].supershape.is_supershape
    assert [spec.id_name for spec in scene.scenefit.specs] == [made, made]
    assert all(spec.problem == "" for spec in scene.scenefit.specs)


def test_a_failing_apply_changes_nothing(scenefit, tmp_path):
    import bpy

    engine_presets = scenefit.addon.engine.presets
    data = json.loads((ROOT / "presets" / "supershape_density.json").read_text())
    data["parameters"][1]["data_path"] = "supershape.m9"
    path = tmp_path / "bad_path.json"
    path.write_text(json.dumps(data))
    preset = engine_presets.load_preset(path)  # valid as data: the path is only checked against the scene

    scene = bpy.context.scene
    scene.scenefit.specs.add().label = "kept"
    counts = {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "materials", "cameras", "worlds")}
    camera, world = scene.camera, scene.world
    with pytest.raises(scenefit.addon.engine.errors.SpecError, match="m2"):
        scenefit.addon.blender.scene.presets.apply_preset(preset, scene)
    assert {name: len(getattr(bpy.data, name)) for name in counts} == counts
    assert (scene.camera, scene.world) == (camera, world)
    assert [spec.label for spec in scene.scenefit.specs] == ["kept"]


def test_apply_operator_builds_the_preset_in_a_new_scene(scenefit):
    import bpy

    scenes = len(bpy.data.scenes)
    assert bpy.ops.scenefit.apply_preset(preset="object_yaw", new_scene=True) == {"FINISHED"}
    assert len(bpy.data.scenes) == scenes + 1
    scene = bpy.data.scenes["Object yaw (Meta-Sim)"]
    assert [spec.label for spec in scene.scenefit.specs] == ["yaw"] and scene.camera is not None


def test_vocabularies_agree_across_layers(scenefit):
    import bpy

    blender = scenefit.addon.blender
    engine_presets = scenefit.addon.engine.presets
    assert set(blender.scene.presets.BUILDERS) == set(engine_presets.SCENES)
    assert set(blender.scene.presets._PRIMITIVE_NODES) == set(engine_presets.PRIMITIVES)
    assert set(blender.scene.presets._YAW_MESHES) == set(engine_presets.YAW_MESHES)
    vocabulary = scenefit.addon.engine.vocabulary
    # The panel's menus as registered offer exactly the vocabulary's names, in its order.
    settings = bpy.context.scene.scenefit.bl_rna.properties
    for prop, keys in (
        ("objective", vocabulary.OBJECTIVES),
        ("estimator", vocabulary.BASELINES),
        ("device", vocabulary.DEVICES),
        ("render_engine", vocabulary.RENDER_ENGINES),
    ):
        assert [item.identifier for item in settings[prop].enum_items] == list(keys), prop
