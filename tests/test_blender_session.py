"""Runs on a real scene: learning moves the yaw distribution toward the targets' yaw, the scene comes back bit for
bit however the run ends, results land in result.json and custom properties, bad input fails before anything
changes."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.blender_scenes import YAW_PATH, cube_scene, diff, scene_state

SIZE = 32
TRUE_YAW, TRUE_SD = 60.0, 5.0  # degrees
START_YAW, START_SD = 30.0, 10.0


@pytest.fixture
def blender(scenefit):
    def module(name):
        return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")

    return SimpleNamespace(
        config=module("run.config"),
        session=module("run.session"),
        render=module("scene.render"),
        targets=module("targets.images"),
        optimizer=importlib.import_module(f"{scenefit.__name__}.addon.engine.optimizer"),
        errors=importlib.import_module(f"{scenefit.__name__}.addon.engine.errors"),
    )


@pytest.fixture
def scene(scenefit):
    import bpy

    return cube_scene(bpy)


@pytest.fixture
def targets_dir(blender, scene, tmp_path) -> Path:
    """32 Workbench renders of the cube with yaw ~ N(60°, 5°), saved as PNG like a user's target folder."""
    import bpy

    folder = tmp_path / "targets"
    folder.mkdir()
    cube = bpy.data.objects["Cube"]
    rng = np.random.default_rng(7)
    settings = blender.render.RenderSettings((SIZE, SIZE), "BLENDER_WORKBENCH", 1)
    with blender.render.RenderOverride(scene, settings) as renderer:
        for i in range(32):
            cube.rotation_euler[2] = math.radians(rng.normal(TRUE_YAW, TRUE_SD))
            image = np.round(renderer.render() * 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"target_{i:02d}.png")
    cube.rotation_euler[2] = math.radians(12.5)  # the scene's own value, to be restored after runs
    return folder


def yaw_config(blender, targets_dir: Path, output: Path, **changes):
    spec = blender.config.SpecConfig(
        "yaw",
        "OBJECT",
        "Cube",
        YAW_PATH,
        {"kind": "normal", "mu": math.radians(START_YAW), "sigma": math.radians(START_SD)},
    )
    config = blender.config.RunConfig(
        specs=[spec],
        targets=str(targets_dir),
        output_dir=str(output),
        steps=20,
        batch_size=16,
        seed=3,
        resolution=(SIZE, SIZE),
        engine="BLENDER_WORKBENCH",
        samples=1,
        optimizer={"objective": "mmd", "param_lr_half_life": 10.0},
    )
    return config.replace(**changes) if changes else config


def run(session) -> None:
    session.start()
    while session.step():
        pass


def test_run_learns_yaw_restores_scene_and_writes_results(blender, scene, targets_dir, tmp_path):
    import bpy

    before = scene_state(bpy, scene)
    lines = []
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out"), on_step=lines.append)
    run(session)

    assert session.status == "finished"
    assert diff(before, scene_state(bpy, scene)) == []  # every touched property and render setting, bit for bit
    result = json.loads(session.result_path.read_text())
    learned = result["parameters"]["yaw"]
    assert learned["distribution"] == "normal" and learned["path"] == YAW_PATH
    start_error = abs(START_YAW - TRUE_YAW)
    assert abs(math.degrees(learned["mu"]) - TRUE_YAW) < 0.5 * start_error, learned
    stored = bpy.data.objects["Cube"]["scenefit"]["yaw"].to_dict()
    assert stored == {"path": YAW_PATH, "distribution": "normal", "mu": learned["mu"], "sigma": learned["sigma"]}
    assert [entry["step"] for entry in result["history"]] == list(range(1, 21)) == [e["step"] for e in lines]
    assert result["history"][-1]["values"]["yaw"]["mu"] == learned["mu"]
    assert result["renders"] == 20 * 16 == session.renders and result["seconds"] > 0
    assert result["status"] == "finished" and result["steps"] == 20
    targets, _ = blender.targets.load_targets(targets_dir, (SIZE, SIZE))
    assert blender.optimizer.AskTellOptimizer.load_checkpoint(session.checkpoint_path, targets).step == 20
    progress = bpy.context.window_manager.scenefit_progress
    assert (progress.running, progress.step, progress.renders, progress.message) == (False, 20, 320, "Finished")
    spec_learned = json.loads(_spec(scene, "yaw", "Cube", YAW_PATH).learned)
    assert spec_learned["mu"] == learned["mu"]


def test_a_seed_gives_one_run_whatever_the_timing(blender, scene, targets_dir, tmp_path, monkeypatch):
    """Batches are pipelined with a lag of exactly one batch, so a slow training thread or short ticks change
    nothing: the same seed learns the same values step for step (and a different seed does not)."""
    import time

    def learned(name, seed, tick_seconds, tell_delay):
        session = blender.session.Session(
            scene, yaw_config(blender, targets_dir, tmp_path / name, steps=6, seed=seed), tick_seconds=tick_seconds
        )
        session.start()
        real_tell = session.optimizer.tell

        def tell(ids, images):
            time.sleep(tell_delay)
            return real_tell(ids, images)

        session.optimizer.tell = tell
        while session.step():
            pass
        assert session.status == "finished"
        return [entry["values"]["yaw"] for entry in session.optimizer.history]

    fast = learned("fast", 3, tick_seconds=0.5, tell_delay=0.0)
    slow = learned("slow", 3, tick_seconds=0.001, tell_delay=0.3)
    assert len(fast) == 6 and fast == slow
    assert learned("other", 4, tick_seconds=0.5, tell_delay=0.0) != fast


def _spec(scene, label, id_name, path, id_type="OBJECT"):
    spec = scene.scenefit.specs.add()
    spec.label, spec.id_type, spec.id_name, spec.data_path = label, id_type, id_name, path
    return spec


def test_settings_on_the_scene_make_a_run_config(blender, scene, tmp_path):
    import bpy

    settings = scene.scenefit
    yaw = _spec(scene, "yaw", "Cube", YAW_PATH)
    assert yaw.unit == "ROTATION"  # follows the resolved property: the panel shows degrees
    yaw.mu_angle, yaw.sigma_angle = math.radians(45), math.radians(5)
    assert (yaw.mu, yaw.sigma) == pytest.approx((math.radians(45), math.radians(5)))
    yaw.use_bounds, yaw.low, yaw.high = True, 0.0, math.pi
    light = _spec(scene, "", "Sun", "type", id_type="LIGHT")
    light.distribution, light.probs = "CATEGORICAL", "0.5, 0.5"
    light.choices = "SUN, POINT"
    hidden = _spec(scene, "hidden", "Cube", "hide_render")
    hidden.distribution, hidden.p, hidden.learn = "BERNOULLI", 0.25, False
    broken = _spec(scene, "broken", "Cube", "rotation_eulr[2]")
    assert broken.unit == "NONE" and "does not resolve" in broken.problem and yaw.problem == ""
    scene.scenefit.specs.remove(3)
    settings.targets, settings.output_dir = str(tmp_path / "t"), str(tmp_path / "o")
    settings.steps, settings.batch_size, settings.seed = 7, 8, 5
    settings.resolution_x, settings.resolution_y = 48, 32
    settings.render_engine, settings.samples, settings.objective, settings.estimator = "CYCLES", 3, "mmd", "ema"

    config = blender.config.RunConfig.from_scene(scene)
    assert [(s.label, s.id_type, s.id_name, s.data_path) for s in config.specs] == [
        ("yaw", "OBJECT", "Cube", YAW_PATH),
        ("Sun.type", "LIGHT", "Sun", "type"),
        ("hidden", "OBJECT", "Cube", "hide_render"),
    ]
    assert config.specs[0].distribution == pytest.approx(
        {
            "kind": "truncnormal",
            "mu": math.radians(45),
            "sigma": math.radians(5),
            "low": 0.0,
            "high": math.pi,
            "fixed": False,
        }
    )
    assert config.specs[1].distribution == {
        "kind": "categorical",
        "choices": ["SUN", "POINT"],
        "probs": [0.5, 0.5],
        "fixed": False,
    }
    assert config.specs[2].distribution == {"kind": "bernoulli", "p": 0.25, "fixed": True}
    assert (config.steps, config.batch_size, config.seed, config.resolution) == (7, 8, 5, (48, 32))
    assert (config.engine, config.samples) == ("CYCLES", 3)
    assert config.optimizer == {"objective": "mmd", "estimator": {"baseline": "ema"}, "device": "auto"}
    assert blender.config.RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(AttributeError):  # learned values are read-only: they come from the custom property
        yaw.learned = "{}"
    assert bpy.data.objects["Cube"].get("scenefit") is None and yaw.learned == ""


def test_steps_left_out_are_100_and_50_more_per_further_learned_property(blender):
    def spec(label: str, fixed: bool = False) -> dict:
        distribution = {"kind": "normal", "mu": 0.0, "sigma": 1.0, "fixed": fixed}
        return {
            "label": label,
            "id_type": "OBJECT",
            "id_name": "Cube",
            "data_path": label,
            "distribution": distribution,
        }

    steps = blender.config.RunConfig.from_dict
    assert steps({"specs": [spec("a")]}).steps == 100
    assert steps({"specs": [spec("a"), spec("b")]}).steps == 150
    assert steps({"specs": [spec("a"), spec("b"), spec("c", fixed=True)]}).steps == 150  # sampled, not learned
    assert steps({"specs": [spec("a"), spec("b")], "steps": 40}).steps == 40
    written = steps({"specs": [spec("a"), spec("b"), spec("c")]}).to_dict()
    assert written["steps"] == 200 and steps(written).steps == 200  # result.json records the number used


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"specs": [], "stepz": 3}, "unknown run setting\\(s\\) \\['stepz'\\]"),
        ({"specs": [], "steps": 0}, "steps must be an integer ≥ 1"),
        ({"specs": [], "batch_size": 1}, "batch_size must be an integer ≥ 2"),
        ({"specs": [], "steps": 2**31}, "steps must be an integer ≥ 1 \\(at most 2147483647\\), got 2147483648"),
        ({"specs": [], "seed": 2**63}, "seed must be an integer ≥ 0 \\(at most 2147483647\\)"),
        ({"specs": [], "checkpoint_seconds": 0}, "checkpoint_seconds must be a number of seconds in 0.1–86400"),
        ({"specs": [], "resume_settings": "mine"}, "resume_settings must be one of run, checkpoint"),
        ({"specs": [], "engine": "X" * 50_000_000}, "engine must be one of .*, got 'XXX+…$"),
        ({"specs": [], "resolution": [64]}, "resolution must be \\[width, height\\]"),
        ({"specs": [], "engine": "LUXCORE"}, "engine must be one of"),
        ({"specs": [{"label": "x"}]}, "each spec needs exactly the keys"),
        ({"steps": 3}, "needs 'specs'"),
    ],
)
def test_bad_run_configs(blender, data, message):
    with pytest.raises(blender.errors.ConfigError, match=message) as caught:
        blender.config.RunConfig.from_dict(data)
    assert len(str(caught.value)) < 500  # inputs are quoted cut to 200 characters


def test_a_50_mb_label_is_quoted_cut(blender, scene, targets_dir, tmp_path):
    config = yaw_config(blender, targets_dir, tmp_path / "out")
    spec = {**config.to_dict()["specs"][0], "label": "m" * 50_000_000}
    with pytest.raises(blender.errors.SpecError, match="^spec label 'mmm+… must be 1–") as caught:
        blender.session.Session(scene, config.replace(specs=[spec])).start()
    assert len(str(caught.value)) < 300


def _break_spec(scene, config, change):
    """Apply one kind of bad input; returns the (possibly changed) config."""
    import bpy

    spec = config.specs[0]
    if change == "renamed":
        bpy.data.objects["Cube"].name = "Box"
    elif change == "deleted_light":
        return config.replace(
            specs=[
                *config.to_dict()["specs"],
                {
                    **config.to_dict()["specs"][0],
                    "label": "sun",
                    "id_type": "LIGHT",
                    "id_name": "Lamp",
                    "data_path": "energy",
                },
            ]
        )
    elif change == "path":
        spec.data_path = "rotation_eulr[2]"
    elif change == "read_only":
        spec.data_path = "users"
    elif change == "driven":
        bpy.data.objects["Cube"].driver_add("rotation_euler", 2)
    elif change == "non_numeric":
        spec.data_path = "name"
    elif change == "bounds":
        spec.distribution = {"kind": "truncnormal", "mu": 1.0, "sigma": 0.1, "low": 2.0, "high": 1.0}
    elif change == "enum_normal":
        spec.id_type, spec.id_name, spec.data_path = "LIGHT", "Sun", "type"
    elif change == "duplicate":
        return config.replace(specs=[*config.to_dict()["specs"], {**config.to_dict()["specs"][0], "label": "yaw2"}])
    elif change == "no_camera":
        scene.camera = None
    elif change == "missing_targets":
        return config.replace(targets=config.targets + "_missing")
    elif change == "empty_targets":
        for path in Path(config.targets).iterdir():
            path.unlink()
    elif change == "truncated_target":
        path = Path(config.targets) / "target_03.png"
        path.write_bytes(path.read_bytes()[:100])
    elif change == "sigma":
        spec.distribution = {"kind": "normal", "mu": 1.0, "sigma": -1.0}
    elif change == "resume":
        return config.replace(resume=config.output_dir + "/nope.pt")
    return config


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("renamed", "SpecError", "'yaw': Object 'Cube' not found \\(deleted or renamed\\?\\)"),
        ("deleted_light", "SpecError", "'sun': Light 'Lamp' not found"),
        ("path", "SpecError", "'yaw' \\(Object 'Cube'\\): path 'rotation_eulr\\[2\\]' does not resolve"),
        ("read_only", "SpecError", "path 'users' is read-only"),
        ("driven", "SpecError", "'yaw' \\(Object 'Cube'\\): path 'rotation_euler\\[2\\]' is driven by a driver"),
        ("non_numeric", "SpecError", "path 'name' is not numeric \\(it is text\\)"),
        ("bounds", "SpecError", "'yaw' \\(Object 'Cube' path 'rotation_euler\\[2\\]'\\): bounds low=2.0 ≥ high=1.0"),
        ("enum_normal", "SpecError", "an enum property needs a Categorical distribution"),
        ("duplicate", "SpecError", "the same property is already randomized by 'yaw'"),
        ("sigma", "SpecError", "'yaw' .*sigma"),
        ("no_camera", "RenderError", "scene 'Scene' has no active camera"),
        ("missing_targets", "TargetError", "target folder .*targets_missing does not exist"),
        ("empty_targets", "TargetError", "no target images in .*targets"),
        ("truncated_target", "TargetError", "target image .*target_03.png cannot be read"),
        ("resume", "ConfigError", "checkpoint not found: .*nope.pt"),
    ],
)
def test_bad_input_fails_before_the_scene_changes(blender, scene, targets_dir, tmp_path, change, error, message):
    import bpy

    config = _break_spec(scene, yaw_config(blender, targets_dir, tmp_path / "out"), change)
    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, config)
    with pytest.raises(getattr(blender.errors, error), match=message):
        session.start()
    assert session.status == "new"
    assert diff(before, scene_state(bpy, scene)) == []
    assert not (tmp_path / "out" / "result.json").exists()


def _ended_cleanly(bpy, scene, before, session, status):
    assert session.status == status
    assert diff(before, scene_state(bpy, scene)) == []
    result = json.loads(session.result_path.read_text())
    assert result["status"] == status and session.checkpoint_path.is_file()
    assert bpy.context.window_manager.scenefit_progress.running is False
    return result


def _failing_render(bpy, monkeypatch, after: int, error: BaseException):
    real = bpy.ops.render.render
    calls = []

    def render(**kwargs):
        calls.append(1)
        if len(calls) > after:
            raise error
        return real(**kwargs)

    monkeypatch.setattr(bpy.ops, "render", SimpleNamespace(render=render))


def test_render_failing_mid_run(blender, scene, targets_dir, tmp_path, monkeypatch):
    import bpy

    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out", steps=5))
    session.start()
    _failing_render(bpy, monkeypatch, 40, RuntimeError("Error: GPU lost\n"))
    with pytest.raises(blender.errors.RenderError, match="rendering scene 'Scene' failed: GPU lost"):
        while session.step():
            pass
    result = _ended_cleanly(bpy, scene, before, session, "failed")
    assert "GPU lost" in result["error"] and result["steps"] >= 1  # what was learned before is kept


def test_ctrl_c_mid_run(blender, scene, targets_dir, tmp_path, monkeypatch):
    import bpy

    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out", steps=5))
    session.start()
    _failing_render(bpy, monkeypatch, 20, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        while session.step():
            pass
    _ended_cleanly(bpy, scene, before, session, "stopped")


def test_stop_mid_run_then_resume(blender, scene, targets_dir, tmp_path):
    import bpy

    before = scene_state(bpy, scene)
    output = tmp_path / "out"
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, output, steps=50))
    session.start()
    while session.optimizer.step < 3:
        assert session.step()
    session.stop()
    assert session.step() is False
    result = _ended_cleanly(bpy, scene, before, session, "stopped")
    done = result["steps"]
    assert 3 <= done < 50 and bpy.data.objects["Cube"]["scenefit"]["yaw"]["mu"] == result["parameters"]["yaw"]["mu"]

    config = yaw_config(blender, targets_dir, tmp_path / "resumed", steps=2, resume=str(session.checkpoint_path))
    resumed = blender.session.Session(scene, config)
    run(resumed)
    result = _ended_cleanly(bpy, scene, before, resumed, "finished")
    assert result["steps"] == done + 2 and [e["step"] for e in result["history"]][-3:] == [done, done + 1, done + 2]


def test_nan_from_the_engine(blender, scene, targets_dir, tmp_path):
    import bpy

    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out", steps=5))
    session.start()
    ask = session.optimizer.ask

    def nan_ask(n=None):
        samples = ask(n)
        samples[3].values["yaw"] = float("nan")
        return samples

    session.optimizer.ask = nan_ask
    with pytest.raises(blender.errors.TrainingError, match="non-finite value nan for 'yaw'"):
        while session.step():
            pass
    _ended_cleanly(bpy, scene, before, session, "failed")

    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out2", steps=5))
    session.start()

    def nan_tell(ids, images):
        raise blender.errors.TrainingError("the adversarial objective gave non-finite rewards")

    session.optimizer.tell = nan_tell  # the training thread hits it; the main thread re-raises it
    with pytest.raises(blender.errors.TrainingError, match="non-finite rewards"):
        while session.step():
            pass
    _ended_cleanly(bpy, scene, before, session, "failed")


def test_enum_bool_and_int_properties_in_a_run(blender, scene, targets_dir, tmp_path):
    import bpy

    cube = bpy.data.objects["Cube"]
    cube["bevel"] = 2
    # Every learned property must change the picture: the int reaches it through a driver on the cube's height.
    driver = cube.driver_add("scale", 2).driver
    variable = driver.variables.new()
    variable.name, variable.targets[0].id, variable.targets[0].data_path = "bevel", cube, '["bevel"]'
    driver.expression = "0.5 + 0.1 * bevel"
    bpy.context.view_layer.update()  # the driven height as the scene shows it, before the snapshot
    specs = [
        {
            "label": "light",
            "id_type": "SCENE",
            "id_name": "Scene",
            "data_path": "display.shading.light",
            "distribution": {"kind": "categorical", "choices": ["STUDIO", "FLAT"], "probs": [0.5, 0.5]},
        },
        {
            "label": "hidden",
            "id_type": "OBJECT",
            "id_name": "Cube",
            "data_path": "hide_render",
            "distribution": {"kind": "bernoulli", "p": 0.2},
        },
        {
            "label": "bevel",
            "id_type": "OBJECT",
            "id_name": "Cube",
            "data_path": '["bevel"]',
            "distribution": {"kind": "normal", "mu": 3.0, "sigma": 1.0},
        },
    ]
    before = scene_state(bpy, scene)
    seen = {"light": set(), "hidden": set(), "bevel": set()}
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out", specs=specs, steps=2))
    session.start()
    apply = session.sampler.apply

    def spy(values):
        apply(values)
        seen["light"].add(scene.display.shading.light)
        seen["hidden"].add(cube.hide_render)
        seen["bevel"].add(cube["bevel"])

    session.sampler.apply = spy
    while session.step():
        pass
    result = _ended_cleanly(bpy, scene, before, session, "finished")
    assert seen["light"] == {"STUDIO", "FLAT"} and seen["hidden"] == {True, False}
    assert all(isinstance(v, int) for v in seen["bevel"]) and len(seen["bevel"]) > 2
    assert result["parameters"]["light"]["choices"] == ["STUDIO", "FLAT"]
    stored = scene["scenefit"]["light"].to_dict()
    assert set(stored["probs"]) == {"STUDIO", "FLAT"} and sum(stored["probs"].values()) == pytest.approx(1.0)
    assert set(cube["scenefit"].keys()) == {"hidden", "bevel"}


def test_a_learned_property_that_does_not_change_the_render_stops_the_run_before_it_starts(
    blender, scene, targets_dir, tmp_path
):
    import bpy

    bpy.data.objects["Cube"]["unused"] = 0.5
    unused = {
        "label": "unused",
        "id_type": "OBJECT",
        "id_name": "Cube",
        "data_path": '["unused"]',
        "distribution": {"kind": "normal", "mu": 0.5, "sigma": 0.1},
    }
    config = yaw_config(blender, targets_dir, tmp_path / "out")
    config = config.replace(specs=[*config.to_dict()["specs"], unused])
    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, config)
    with pytest.raises(blender.errors.SpecError, match=r"'unused' .* does not change the rendered images"):
        session.start()
    assert session.status == "new" and session.optimizer is None  # nothing learned
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    assert diff(before, scene_state(bpy, scene)) == []


def test_a_fresh_scene_runs_scenefits_default_optimizer(scenefit, blender):
    import bpy

    config = blender.config.RunConfig.from_scene(bpy.context.scene)
    default = blender.optimizer.OptimizerConfig.default()
    assert config.batch_size == default.batch_size
    assert config.optimizer["objective"] == default.objective
    assert config.optimizer["estimator"]["baseline"] == default.estimator.baseline


def test_checkpoints_are_written_during_the_run(blender, scene, targets_dir, tmp_path, monkeypatch):
    """At the start (a kill -9 at any moment leaves something to resume), every checkpoint_steps steps, after
    checkpoint_seconds, and at the end; result.json names the step of the last one."""
    saved = []
    real = blender.optimizer.AskTellOptimizer.save_checkpoint

    def spy(self, path):
        saved.append(real(self, path))
        return saved[-1]

    monkeypatch.setattr(blender.optimizer.AskTellOptimizer, "save_checkpoint", spy)
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=7, batch_size=4, checkpoint_steps=3)
    session = blender.session.Session(scene, config, tick_seconds=0.0)
    session.start()
    assert saved == [0] and session.checkpoint_path.is_file()
    assert json.loads(session.result_path.read_text())["status"] == "running"
    while session.step():
        pass
    assert saved[0] == 0 and saved[-1] == 7 and all(b - a >= 3 for a, b in zip(saved[:-2], saved[1:-1], strict=True))
    assert len(saved) >= 3
    result = json.loads(session.result_path.read_text())
    assert result["checkpoint"] == "checkpoint.pt" and result["checkpoint_steps"] == 7

    saved.clear()  # by time: every step once checkpoint_seconds have passed
    config = config.replace(output_dir=str(tmp_path / "timed"), checkpoint_steps=0, checkpoint_seconds=0.1)
    session = blender.session.Session(scene, config, tick_seconds=0.0)
    session.start()
    while session.step():
        time.sleep(0.05)
    assert len(saved) >= 4


def test_resume_must_match_the_run(blender, scene, targets_dir, tmp_path):
    """The checkpoint's kinds, objective and image size against the run's: differences listed, nothing changed; or
    taken from the checkpoint with resume_settings="checkpoint" (and said in notes)."""
    import bpy

    first = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "first", steps=2))
    run(first)
    checkpoint = str(first.checkpoint_path)
    before = scene_state(bpy, scene)
    lognormal = {"kind": "lognormal", "mu": 0.0, "sigma": 0.5}
    spec = {**yaw_config(blender, targets_dir, tmp_path).to_dict()["specs"][0], "distribution": lognormal}
    changes = {"specs": [spec], "optimizer": {"objective": "adversarial"}, "resolution": (16, 16)}
    config = yaw_config(blender, targets_dir, tmp_path / "second", steps=2, resume=checkpoint, **changes)
    session = blender.session.Session(scene, config)
    with pytest.raises(blender.errors.ConfigError) as caught:
        session.start()
    message = str(caught.value)
    assert "does not match this run: 'yaw' is normal there, lognormal here" in message
    assert "objective mmd there, adversarial here" in message and "images 32×32×3 there, 16×16×3 here" in message
    assert "--resume-settings checkpoint" in message
    assert session.status == "new" and diff(before, scene_state(bpy, scene)) == []
    assert not (tmp_path / "second").exists()

    taken = blender.session.Session(scene, config.replace(resume_settings="checkpoint"))
    run(taken)
    assert taken.status == "finished" and len(taken.notes) == 3
    result = json.loads(taken.result_path.read_text())
    assert result["parameters"]["yaw"]["distribution"] == "normal" and result["steps"] == 4
    assert result["config"]["optimizer"]["objective"] == "mmd" and result["config"]["resolution"] == [32, 32]


def test_an_error_anywhere_in_start_restores_the_scene(blender, scene, targets_dir, tmp_path, monkeypatch):
    """Internal errors included, wherever they are raised once the scene has changed."""
    import bpy

    before = scene_state(bpy, scene)
    session = blender.session.Session(scene, yaw_config(blender, targets_dir, tmp_path / "out"))

    def broken(**values):
        if values.get("running"):
            raise OverflowError("Python int too large to convert to C int")

    monkeypatch.setattr(session, "_progress", broken)
    with pytest.raises(OverflowError):
        session.start()
    assert diff(before, scene_state(bpy, scene)) == []
    assert session.status == "failed" and json.loads(session.result_path.read_text())["status"] == "failed"
    assert not list(Path("/dev/shm").glob(f"scenefit-render-{os.getpid()}-*"))


def test_a_full_disk_fails_the_run_and_keeps_the_last_good_checkpoint(
    blender, scene, targets_dir, tmp_path, monkeypatch
):
    import bpy
    import torch

    before = scene_state(bpy, scene)
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=6, batch_size=4, checkpoint_steps=2)
    session = blender.session.Session(scene, config, tick_seconds=0.0)
    session.start()
    while json.loads(session.result_path.read_text())["checkpoint_steps"] < 2:
        assert session.step()
    real_save = torch.save

    def full(state, path):  # half a file, then the error torch.save gives on a full disk
        Path(path).write_bytes(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(blender.errors.OutputError, match="cannot write the checkpoint .*checkpoint.pt: "):
        while session.step():
            pass
    monkeypatch.setattr(torch, "save", real_save)
    assert session.status == "failed" and diff(before, scene_state(bpy, scene)) == []
    assert not list(session.output_dir.glob("*.tmp"))
    result = json.loads(session.result_path.read_text())
    assert result["status"] == "failed" and "cannot write the checkpoint" in result["error"]
    targets, _ = blender.targets.load_targets(targets_dir, (SIZE, SIZE))
    last = blender.optimizer.AskTellOptimizer.load_checkpoint(session.checkpoint_path, targets)
    assert last.step == result["checkpoint_steps"] >= 2
    assert (session.output_dir / "parameters.png").is_file()  # the report does not depend on the checkpoint


def test_an_output_folder_holds_one_run(blender, scene, targets_dir, tmp_path):
    """A folder holding a run is refused; overwrite replaces that run (none of its files stay); resuming its own
    checkpoint continues it in place; the panel's runs take a new sub-folder."""
    output = tmp_path / "out"
    run(blender.session.Session(scene, yaw_config(blender, targets_dir, output, steps=2, batch_size=4)))
    (output / "samples_00099.png").write_bytes(b"an earlier run's picture")
    again = blender.session.Session(scene, yaw_config(blender, targets_dir, output, steps=2, batch_size=4))
    with pytest.raises(blender.errors.ConfigError, match="output folder .*out already holds a run \\(checkpoint.pt"):
        again.start()
    assert again.status == "new"
    config = yaw_config(blender, targets_dir, output, steps=2, batch_size=4, overwrite=True)
    assert config.in_free_folder() == config
    fresh = config.replace(overwrite=False).in_free_folder()
    assert Path(fresh.output_dir).parent == output and Path(fresh.output_dir).name.startswith("run-")
    run(blender.session.Session(scene, config))
    assert not (output / "samples_00099.png").exists()
    resumed = config.replace(overwrite=False, resume=str(output / "checkpoint.pt"))
    assert resumed.in_free_folder() == resumed
    session = blender.session.Session(scene, resumed)
    run(session)
    assert json.loads(session.result_path.read_text())["steps"] == 4
