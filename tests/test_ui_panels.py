"""The sidebar: everything is registered after enabling, and every panel's draw() runs in every state (no specs,
specs of each kind, running, finished, torch missing, targets checked) against a layout that checks each call
against Blender's UILayout description (tests/ui_layout.py: the bpy module cannot give a real layout)."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.blender_scenes import cube_scene
from tests.ui_layout import RecordingLayout

PANELS = (
    "SCENEFIT_PT_main",
    "SCENEFIT_PT_parameters",
    "SCENEFIT_PT_targets",
    "SCENEFIT_PT_settings",
    "SCENEFIT_PT_run",
)
OPERATORS = (
    "optimize",
    "stop",
    "apply_mean",
    "open_results",
    "randomize_property",
    "spec_add",
    "spec_paste",
    "spec_remove",
    "spec_move",
    "check_targets",
    "install_torch",
    "copy_torch_command",
    "check_torch",
    "apply_preset",
)


@pytest.fixture
def ui(scenefit):
    blender = scenefit.addon.blender
    return SimpleNamespace(
        panels=blender.ui.panels,
        picking=blender.data.picking,
        run=blender.run.controller,
        optimize=blender.ui.operators.optimize,
        run_pictures=blender.run.pictures,
        torch_setup=blender.ui.torch_setup,
        target_check=blender.targets.check,
        render=blender.scene.render,
        torch_vendor=importlib.import_module(f"{scenefit.__name__}.torch_vendor"),
    )


@pytest.fixture
def scene(ui, tmp_path):
    import bpy

    scene = cube_scene(bpy)
    yield scene
    ui.run.CONTROLLER.shutdown()
    ui.run.CONTROLLER.forget()


def draw_all(context=None) -> RecordingLayout:
    """Draw every SceneFit panel into one recording layout (each through its own class, as Blender does)."""
    import bpy

    context = context or bpy.context
    layout = RecordingLayout()
    for name in PANELS:
        panel_class = getattr(bpy.types, name)
        assert panel_class.poll(context)
        panel_class.draw(SimpleNamespace(layout=layout.column()), context)
    return layout


def draw_list(ui, scene) -> RecordingLayout:
    import bpy

    layout = RecordingLayout()
    settings = scene.scenefit
    for index, spec in enumerate(settings.specs):
        ui.panels.SCENEFIT_UL_specs.draw_item(
            None, bpy.context, layout.row(), settings, spec, 0, settings, "active_spec_index", index
        )
    return layout


def operators(layout: RecordingLayout) -> list[str]:
    return [
        call.args[0] if call.args else call.kwargs["operator"] for call in layout.calls() if call.name == "operator"
    ]


def add_specs(ui, scene):
    """One spec of every kind the panel draws differently."""
    import bpy

    cube, light = bpy.data.objects["Cube"], bpy.data.lights["Sun"]
    settings = scene.scenefit
    for owner, path, index in ((cube, "rotation_euler", 2), (light, "energy", -1), (light, "type", -1)):
        ui.picking.add_spec(settings, ui.picking.from_id_path(owner, path, index))
    ui.picking.add_spec(settings, ui.picking.from_id_path(cube, "hide_render"))
    settings.specs[0].use_bounds, settings.specs[0].low, settings.specs[0].high = True, -math.pi, math.pi
    settings.specs[1].distribution = "LOGNORMAL"
    broken = settings.specs.add()
    broken.id_name, broken.data_path = "Cube", "no_such_property"


def test_everything_is_registered(ui, scene):
    import bpy

    for name in PANELS:
        panel = getattr(bpy.types, name)
        assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "SceneFit")
    assert all(getattr(bpy.types, name).bl_parent_id == "SCENEFIT_PT_main" for name in PANELS[1:])
    assert hasattr(bpy.types, "SCENEFIT_UL_specs")
    for name in OPERATORS:
        assert getattr(bpy.ops.scenefit, name).get_rna_type().description, name  # exists, with a tooltip
    assert ui.panels.draw_torch_status is not None
    assert ui.optimize.SCENEFIT_OT_optimize.bl_options == {"REGISTER"}  # no undo step per run or per sample


def test_empty_scene(ui, scene):
    layout = draw_all()
    assert {"Right-click any field ▸", "Randomize with SceneFit"} <= set(layout.texts())
    assert "Not checked yet" in layout.texts()
    assert {"scenefit.optimize", "scenefit.spec_add", "scenefit.spec_paste", "scenefit.apply_mean"} <= set(
        operators(layout)
    )
    assert "scenefit.stop" not in operators(layout)
    assert not [call for call in layout.calls() if call.name == "progress"]


def test_settings_offer_the_training_device_and_the_run_takes_it(scenefit, ui, scene):
    blender = scenefit.addon.blender
    assert [item[0] for item in blender.data.properties.DEVICE_ITEMS] == list(scenefit.addon.engine.vocabulary.DEVICES)
    settings = scene.scenefit
    assert settings.device == "auto"
    layout = draw_all()
    assert ("prop", "device") in [(call.name, call.args[1]) for call in layout.calls() if call.name == "prop"]
    settings.device = "cpu"
    assert blender.run.config.RunConfig.from_scene(scene).optimizer["device"] == "cpu"


def test_settings_recommend_more_steps_for_several_learned_properties(ui, scene):
    add_specs(ui, scene)  # five specs, four of them learned by default
    settings = scene.scenefit
    learned = sum(spec.learn for spec in settings.specs)
    assert learned >= 2
    settings.steps = 100
    assert f"Recommended: {100 + 50 * (learned - 1)} steps" in draw_all().texts()
    settings.steps = 100 + 50 * (learned - 1)
    assert not [text for text in draw_all().texts() if text.startswith("Recommended:")]
    settings.steps, settings.objective = 60, "adversarial"  # a preset of another objective brings its own steps
    assert not [text for text in draw_all().texts() if text.startswith("Recommended:")]


def test_settings_offer_render_workers_and_the_run_takes_them(scenefit, ui, scene):
    blender = scenefit.addon.blender
    settings = scene.scenefit
    assert settings.workers == blender.run.config.RunConfig(specs=[]).workers == 0  # what fits the machine
    layout = draw_all()
    assert ("prop", "workers") in [(call.name, call.args[1]) for call in layout.calls() if call.name == "prop"]
    settings.workers = 3
    assert blender.run.config.RunConfig.from_scene(scene).workers == 3


def test_specs_of_every_kind(ui, scene):
    settings = scene.scenefit
    add_specs(ui, scene)
    for index in range(len(settings.specs)):
        settings.active_spec_index = index
        layout = draw_all()
        spec = settings.specs[index]
        drawn = {call.args[1] if len(call.args) > 1 else call.kwargs.get("property") for call in layout.calls()}
        expected = {
            "NORMAL": {"mu_angle", "sigma_angle", "low_angle", "high_angle"} if spec.unit == "ROTATION" else {"mu"},
            "LOGNORMAL": {"mu", "sigma"},
            "CATEGORICAL": {"choices", "probs"},
            "BERNOULLI": {"p"},
        }[spec.distribution]
        assert expected <= drawn, spec.label
    assert any("no_such_property" in text for text in layout.texts())  # the broken spec says what is wrong
    summaries = [ui.panels.spec_summary(spec) for spec in settings.specs]
    assert summaries[:4] == [
        ("μ 0.0°  σ 10.0°  [-180.0°, 180.0°]", False),  # angles in degrees, with the bounds
        ("log μ 2  σ 0.2  (mean 7.538)", False),
        ("POINT 25%, SUN 25%, SPOT 25% +1", False),
        ("p(on) 0.50", False),
    ]
    listed = draw_list(ui, scene).texts()
    shorts = [ui.panels.spec_short(spec) for spec in settings.specs]
    assert shorts[:4] == [("μ 0.0°", False), ("mean 7.54", False), ("POINT 25%", False), ("p(on) 0.50", False)]
    assert all(text in listed for text, _ in shorts)  # the list row is short; the full text is below the list


def test_running_and_finished(ui, scene, tmp_path):
    import bpy

    render = ui.render
    folder = tmp_path / "targets"
    folder.mkdir()
    with render.RenderOverride(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1)) as renderer:
        for i in range(4):
            Image.fromarray(np.round(renderer.render() * 255).astype(np.uint8)).save(folder / f"t{i}.png")
    (folder / "notes.txt").write_text("not an image")
    settings = scene.scenefit
    ui.picking.add_spec(settings, ui.picking.from_id_path(bpy.data.objects["Cube"], "rotation_euler", 2))
    settings.targets, settings.output_dir = str(folder), str(tmp_path / "out")
    settings.steps, settings.batch_size = 2, 4
    settings.resolution_x = settings.resolution_y = 32
    settings.render_engine, settings.samples = "BLENDER_WORKBENCH", 1

    assert bpy.ops.scenefit.check_targets() == {"FINISHED"}
    layout = draw_all()
    assert "4 images loaded, 1 skipped" in layout.texts()
    assert any("notes.txt" in text for text in layout.texts())
    assert len([call for call in layout.calls() if call.name == "template_icon"]) == 4  # thumbnails

    ui.run.CONTROLLER.start(scene, tick_seconds=0.0)
    for _ in range(5):
        ui.run.CONTROLLER.tick()
    layout = draw_all()
    assert "scenefit.stop" in operators(layout) and "scenefit.optimize" not in operators(layout)
    (bar,) = [call for call in layout.calls() if call.name == "progress"]
    assert bar.kwargs["type"] == "BAR" and bar.kwargs["text"].startswith("Step ")
    assert any(text.startswith("Renders 5 ") for text in layout.texts())
    view = ui.panels.run_view(bpy.context)
    assert view.running and 0.0 <= view.factor <= 1.0

    ui.run.CONTROLLER.run_to_end()
    layout = draw_all()
    view = ui.panels.run_view(bpy.context)
    assert (view.running, view.factor, view.message, view.finished_scene) == (False, 1.0, "Finished", True)
    after = {"scenefit.optimize", "scenefit.apply_mean", "scenefit.open_results", "scenefit.generate_dataset"}
    assert after <= set(operators(layout))
    label = settings.specs[0].label
    learned = [text for text in layout.texts() if text.startswith(f"{label}: μ ")]
    assert learned, layout.texts()  # the learned distribution, read back from the object's custom property
    assert bpy.ops.scenefit.apply_mean.poll() and bpy.ops.scenefit.open_results.poll()
    # Pictures: the last renders under targets, and one μ ± σ plot per parameter, drawn as previews.
    renders, plots = ui.run_pictures.current(scene)
    assert renders is not None and [label for label, _ in plots] == [label], ui.run_pictures.problem
    icons = [call.kwargs["icon_value"] for call in layout.calls() if call.name == "template_icon"]
    assert renders in icons and plots[0][1] in icons
    assert not ui.run_pictures.problem
    # Nothing is longer than a label across the sidebar at its default width (the real UI cut them with "…").
    too_long = [text for text in layout.texts() if len(text) > ui.panels.DEFAULT_LABEL_CHARS]
    assert not too_long


def test_run_picture_puts_renders_under_targets(ui):
    targets = np.zeros((5, 8, 6, 3), np.float32)
    renders = np.ones((4, 8, 6, 4), np.float32)
    picture = ui.run_pictures.strip(targets, renders, count=3, pad=2)
    assert picture.shape == (8 + 4 + 8, 3 * 6 + 2 * 2, 3) and picture.dtype == np.uint8
    assert (picture[:8, :6] == 0).all() and (picture[12:, :6] == 255).all()  # targets above, renders below
    assert (picture[8:12] == ui.run_pictures.GAP).all() and (picture[:8, 6:8] == ui.run_pictures.GAP).all()


def test_long_labels_are_wrapped_not_cut(ui):
    layout = RecordingLayout()
    ui.panels.label_lines(layout, "8 target images loaded from /tmp/somewhere/targets/images", "INFO", 20)
    texts = [call.kwargs["text"] for call in layout.calls() if call.name == "label"]
    assert texts == ["8 target images", "loaded from /tmp/som", "ewhere/targets/image", "s"]
    assert [call.kwargs["icon"] for call in layout.calls() if call.name == "label"] == ["INFO", *["BLANK1"] * 3]


def test_torch_missing_says_what_to_do(ui, scene, monkeypatch):
    import bpy

    missing = ui.torch_vendor.TorchStatus(False, "missing", None, None, "torch is not importable")
    monkeypatch.setattr(ui.torch_setup, "_status", missing)
    layout = draw_all()
    texts = layout.texts()
    assert "torch is missing: Optimize needs it" in texts
    assert not bpy.app.online_access  # the bpy module runs offline: the panel explains instead of installing
    assert "Online access is off (Preferences ▸ System ▸ Network)." in texts
    assert {"scenefit.copy_torch_command", "scenefit.check_torch"} <= set(operators(layout))
    assert not bpy.ops.scenefit.install_torch.poll()
    assert "Randomize with SceneFit" in texts  # everything else still draws


def test_torch_found_shows_nothing_about_it(ui, scene):
    assert ui.torch_setup.status(refresh=True).found
    layout = draw_all()
    assert not any("torch" in text for text in layout.texts())
    assert "scenefit.install_torch" not in operators(layout)


def test_distribution_text(ui):
    text = ui.panels.distribution_text
    assert text({"distribution": "normal", "mu": math.pi / 2, "sigma": 0.1}, "ROTATION") == "μ 90.0°  σ 5.7°"
    assert text({"distribution": "normal", "mu": 2.25, "sigma": 0.1}) == "μ 2.25  σ 0.1"
    assert text({"distribution": "lognormal", "mu": 0.0, "sigma": 0.4}) == "log μ 0  σ 0.4  (mean 1.083)"
    assert text({"distribution": "categorical", "probs": {"SUN": 0.7, "POINT": 0.3}}) == "SUN 70%, POINT 30%"
    assert text({"distribution": "bernoulli", "p": 0.25}) == "p(on) 0.25"
    start = {"distribution": "truncnormal", "mu": 1.29, "sigma": 0.5, "low": 0.0, "high": 1.0}  # a spec's fields
    assert text(start) == "μ 1.29  σ 0.5  [0, 1]"
    learned = {"distribution": "truncnormal", "mean": 0.7051, "std": 0.2272, "parent_mu": 1.29, "parent_sigma": 0.5}
    assert text({**learned, "low": 0.0, "high": 1.0}) == "mean 0.7051  std 0.2272  [0, 1]"  # its own, not μ's
