"""Runs on a real scene: learning moves the yaw distribution toward the targets' yaw, the scene comes back bit for
bit however the run ends, results land in result.json and custom properties, bad input fails before anything
changes."""

from __future__ import annotations

import importlib
import json
import math
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
        session=module("session"),
        render=module("render"),
        targets=module("targets"),
        optimizer=importlib.import_module(f"{scenefit.__name__}.addon.engine.optimizer"),
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
    spec = blender.session.SpecConfig(
        "yaw",
        "OBJECT",
        "Cube",
        YAW_PATH,
        {"kind": "normal", "mu": math.radians(START_YAW), "sigma": math.radians(START_SD)},
    )
    config = blender.session.RunConfig(
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


def _spec(scene, label, id_name, path, id_type="OBJECT"):
    spec = scene.scenefit.specs.add()
    spec.label, spec.id_type, spec.id_name, spec.data_path = label, id_type, id_name, path
    return spec
