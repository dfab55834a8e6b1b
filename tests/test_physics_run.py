"""Fitting physics from clips end to end: a run of the bouncing-ball preset recovers the restitution from target
clips and leaves the scene — values, render settings, frame and simulation — as it was; bad clip runs fail before
anything changes."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.blender_scenes import diff, scene_state

ROOT = Path(__file__).resolve().parent.parent
TRUTH_MU = 0.7


def module(scenefit, name: str):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")


@pytest.fixture
def ball(scenefit):
    """The bouncing-ball preset applied to the current scene; yields (scene, preset)."""
    import bpy

    preset = scenefit.addon.engine.presets.load_preset(ROOT / "presets" / "bouncing_ball.json")
    module(scenefit, "scene.presets").apply_preset(preset, bpy.context.scene)
    return bpy.context.scene, preset


def truth_clips(scenefit, scene, preset, folder: Path, count: int, seed: int) -> list[float]:
    """``count`` target clips of the preset's ground truth, made by the data-set generator in clip mode; returns
    the restitutions. The clips are the sub-folders of ``folder``."""
    dataset, render = module(scenefit, "run.dataset"), module(scenefit, "scene.render")
    config = module(scenefit, "run.config").RunConfig.from_scene(scene)
    settings = render.RenderSettings(config.resolution, config.engine, config.samples, config.channels)
    clip = module(scenefit, "scene.clips").ClipSettings.from_dict(config.clips)
    made = dataset.DatasetGenerator(
        scene,
        config.specs,
        folder.parent / f"{folder.name}-dataset",
        count,
        seed,
        settings,
        preset.truth(),
        "truth",
        clip=clip,
    ).run()
    (folder.parent / f"{folder.name}-dataset" / dataset.IMAGES).rename(folder)
    return [row["values"]["restitution"] for row in made.rows]


def simulate_to(scene, frame: int) -> None:
    for step in range(scene.rigidbody_world.point_cache.frame_start, frame + 1):
        scene.frame_set(step)


def state(bpy, scene) -> dict:
    ball = scene.objects["Ball"]
    return {
        **scene_state(bpy, scene),
        "frame": scene.frame_current,
        "ball world matrix": [tuple(row) for row in ball.matrix_world],
        "rigid body": {k: getattr(ball.rigid_body, k) for k in ("restitution", "mass", "friction", "linear_damping")},
        "gravity": tuple(scene.gravity),
        "cache": (scene.rigidbody_world.point_cache.frame_start, scene.rigidbody_world.point_cache.frame_end),
    }


def run_config(scenefit, scene, targets: Path, output: Path, **changes):
    config = module(scenefit, "run.config").RunConfig.from_scene(scene)
    return config.replace(targets=str(targets), output_dir=str(output), **changes)


def test_restitution_is_recovered_from_target_clips_and_the_scene_is_restored(scenefit, ball, tmp_path):
    """Truth N(0.7, 0.05) on [0, 1], start N(0.3, 0.15): the preset's run (MMD, 40 steps of 16 clips of 8 frames at
    32 px, Workbench) ends with |μ − 0.7| < 0.1."""
    import bpy

    scene, preset = ball
    truth = truth_clips(scenefit, scene, preset, tmp_path / "targets", count=32, seed=preset.targets["seed"])
    assert abs(np.mean(truth) - TRUTH_MU) < 0.03
    simulate_to(scene, 20)  # the user is looking at frame 20 of their own simulation
    before = state(bpy, scene)
    session = module(scenefit, "run.session").Session(
        scene, run_config(scenefit, scene, tmp_path / "targets", tmp_path)
    )
    started = time.perf_counter()
    session.start()
    while session.step():
        pass
    seconds = time.perf_counter() - started
    learned = session.optimizer.space.values()["restitution"]
    print(f"restitution mean {learned['mean']:.3f} std {learned['std']:.3f}, {session.renders} clips, {seconds:.1f} s")
    assert session.status == "finished" and session.renders == 40 * 16
    assert abs(learned["mean"] - TRUTH_MU) < 0.1, learned
    assert session.target_report.summary().startswith("32 target clips")
    assert diff(before, state(bpy, scene)) == []
    result = json.loads(session.result_path.read_text())
    assert result["config"]["clips"] == {"frame_start": 9, "frame_end": 51, "stride": 6}


def test_clip_settings_on_the_scene_make_the_run_config(scenefit, ball, tmp_path):
    scene, _ = ball
    config_module = module(scenefit, "run.config")
    config = run_config(scenefit, scene, tmp_path, tmp_path)
    assert config.clips == {"frame_start": 9, "frame_end": 51, "stride": 6}
    assert config_module.RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    scene.scenefit.use_clips = False
    assert config_module.RunConfig.from_scene(scene).clips is None
    scene.scenefit.use_clips, scene.scenefit.clip_stride = True, 100
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match="single frame"):
        config_module.RunConfig.from_scene(scene)


def mixed_folder(scenefit, scene, preset, folder: Path) -> None:
    truth_clips(scenefit, scene, preset, folder, count=2, seed=0)
    scenefit.addon.blender.targets.images.save_image(np.zeros((32, 32, 3), np.float32), folder / "still.png")


def uneven_folder(scenefit, scene, preset, folder: Path) -> None:
    truth_clips(scenefit, scene, preset, folder, count=2, seed=0)
    (folder / "00001" / "0008.png").unlink()


def broken_video(scenefit, scene, preset, folder: Path) -> None:
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"not a video at all" * 100)


def good_folder(scenefit, scene, preset, folder: Path) -> None:
    truth_clips(scenefit, scene, preset, folder, count=4, seed=0)


def mass_spec(scenefit, scene) -> dict:
    spec = module(scenefit, "run.config").SpecConfig(
        "mass", "OBJECT", "Ball", "rigid_body.mass", {"kind": "lognormal", "mu": 0.0, "sigma": 0.5}
    )
    restitution = run_config(scenefit, scene, Path(), Path()).specs[0]
    return {"specs": [restitution, spec]}


@pytest.mark.parametrize(
    "make_targets, changes, error, message",
    [
        (mixed_folder, lambda s, sc: {}, "TargetError", "mixes still images"),
        (uneven_folder, lambda s, sc: {}, "TargetError", "different lengths"),
        (broken_video, lambda s, sc: {}, "TargetError", "cannot be decoded"),
        (
            good_folder,
            lambda s, sc: {"clips": {"frame_start": 200, "frame_end": 300, "stride": 10}},
            "ConfigError",
            "outside scene",
        ),
        (good_folder, mass_spec, "SpecError", r"not identifiable.*'mass'"),
    ],
    ids=["stills and clips", "different lengths", "undecodable video", "frame range", "mass has no effect"],
)
def test_bad_clip_runs_fail_before_the_scene_changes(scenefit, ball, tmp_path, make_targets, changes, error, message):
    import bpy

    scene, preset = ball
    make_targets(scenefit, scene, preset, tmp_path / "targets")
    simulate_to(scene, 12)
    before = state(bpy, scene)
    config = run_config(scenefit, scene, tmp_path / "targets", tmp_path / "out", **changes(scenefit, scene))
    session = module(scenefit, "run.session").Session(scene, config)
    with pytest.raises(getattr(scenefit.addon.engine.errors, error), match=message):
        session.start()
    assert diff(before, state(bpy, scene)) == []


def test_batch_runs_the_bouncing_ball_preset_with_target_clips_from_its_truth(scenefit, tmp_path):
    from tests.test_blender_batch import run_batch

    output = tmp_path / "out"
    done = run_batch(
        tmp_path,
        "--config",
        ROOT / "presets" / "bouncing_ball.json",
        "--build-scene",
        "--output",
        output,
        "--steps",
        "2",
        "--batch-size",
        "4",
    )
    assert done.returncode == 0, done.stderr
    clips = sorted((output / "targets").iterdir())
    assert len(clips) == 64 and all(len(list(clip.glob("*.png"))) == 8 for clip in clips)
    assert "64 target clips loaded" in done.stdout
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "finished" and result["config"]["clips"]["stride"] == 6
