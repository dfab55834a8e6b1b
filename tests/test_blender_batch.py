"""Batch mode as a user runs it: ``python scenefit_batch.py scene.blend ARGS`` in a fresh process (bpy module),
with its own isolated Blender user folder. Checks exit codes, one progress line per step, results, and that
errors are one clear line without a traceback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.blender_scenes import YAW_PATH, cube_scene

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scenefit_batch.py"
TIMEOUT_S = 240
START_YAW = 0.3


@pytest.fixture
def files(scenefit, tmp_path):
    """scene.blend (the cube, yaw 0.3 rad), 16 target PNGs at yaw ~ N(60°, 5°), and a run configuration."""
    import importlib

    import bpy

    render = importlib.import_module(f"{scenefit.__name__}.addon.blender.render")
    scene = cube_scene(bpy)
    cube = bpy.data.objects["Cube"]
    targets = tmp_path / "targets"
    targets.mkdir()
    rng = np.random.default_rng(11)
    with render.RenderOverride(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1)) as renderer:
        for i in range(16):
            cube.rotation_euler[2] = math.radians(rng.normal(60, 5))
            Image.fromarray(np.round(renderer.render() * 255).astype(np.uint8)).save(targets / f"t{i:02d}.png")
    cube.rotation_euler[2] = START_YAW
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    config = tmp_path / "run.json"
    spec = {"kind": "normal", "mu": math.radians(30), "sigma": math.radians(10)}
    config.write_text(
        json.dumps(
            {
                "specs": [
                    {
                        "label": "yaw",
                        "id_type": "OBJECT",
                        "id_name": "Cube",
                        "data_path": YAW_PATH,
                        "distribution": spec,
                    }
                ],
                "batch_size": 8,
                "resolution": [32, 32],
                "engine": "BLENDER_WORKBENCH",
                "samples": 1,
                "optimizer": {"objective": "mmd"},
            }
        )
    )
    return {"blend": blend, "targets": targets, "config": config, "tmp": tmp_path, "yaw": cube.rotation_euler[2]}


def batch_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "batch-user")
    env["XDG_CACHE_HOME"] = str(tmp_path / "batch-cache")
    return env


def run_batch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env=batch_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )


def test_batch_run_exit_0_progress_results_and_saved_blend(files):
    tmp = files["tmp"]
    output, saved = tmp / "out", tmp / "after.blend"
    done = run_batch(
        tmp,
        files["blend"],
        "--config",
        files["config"],
        "--targets",
        files["targets"],
        "--output",
        output,
        "--steps",
        "4",
        "--seed",
        "2",
        "--save",
        saved,
    )
    assert done.returncode == 0, done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("yaw mu=" in line and "renders" in line for line in steps)
    assert "Fra:" not in done.stdout  # Blender's per-render status lines are silenced
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "finished" and result["steps"] == 4 and result["renders"] == 32
    assert result["config"]["seed"] == 2 and (output / "checkpoint.pt").is_file()

    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(saved))
    cube = bpy.data.objects["Cube"]
    assert cube.rotation_euler[2] == files["yaw"]  # restored exactly
    assert cube["scenefit"]["yaw"]["mu"] == result["parameters"]["yaw"]["mu"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--targets": "missing-folder"}, "scenefit: error: target folder missing-folder does not exist"),
        ({"--config": "nope.json"}, "scenefit: error: cannot read run configuration nope.json"),
        ({"--engine": "CYCLES", "blend": "missing.blend"}, "scenefit: error: cannot open missing.blend"),
    ],
)
def test_batch_bad_input_exit_1_one_line(files, change, message):
    tmp = files["tmp"]
    args = {
        "blend": files["blend"],
        "--config": files["config"],
        "--targets": files["targets"],
        "--output": tmp / "out",
        "--steps": "2",
    }
    args.update(change)
    argv = [args.pop("blend")] + [str(x) for pair in args.items() for x in pair]
    done = run_batch(tmp, *argv)
    assert done.returncode == 1, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("scenefit:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_batch_bad_spec_names_the_culprit(files):
    tmp = files["tmp"]
    config = json.loads(files["config"].read_text())
    config["specs"][0]["data_path"] = "rotation_euler"
    files["config"].write_text(json.dumps(config))
    done = run_batch(
        tmp, files["blend"], "--config", files["config"], "--targets", files["targets"], "--output", tmp / "out"
    )
    assert done.returncode == 1
    assert "scenefit: error: 'yaw' (Object 'Cube'): 'rotation_euler' is a vector of 3" in done.stderr
    assert not (tmp / "out" / "result.json").exists()


def test_batch_usage_error_exit_2(files):
    done = run_batch(files["tmp"], files["blend"], "--steps", "many")
    assert done.returncode == 2 and "invalid int value: 'many'" in done.stderr


def test_batch_ctrl_c_exit_130_keeps_partial_results(files):
    tmp = files["tmp"]
    output = tmp / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            files["blend"],
            "--config",
            files["config"],
            "--targets",
            files["targets"],
            "--output",
            output,
            "--steps",
            "100000",
        ],
        env=batch_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("step 3/"):
                break
            assert line, f"batch ended early: {process.stderr.read()}"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted; the scene was restored" in stderr and "Traceback" not in stderr
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "stopped" and result["steps"] >= 3 and (output / "checkpoint.pt").is_file()


def test_batch_preset_builds_its_scene_and_renders_its_targets(files):
    tmp = files["tmp"]
    output = tmp / "preset-out"
    done = run_batch(
        tmp,
        "--config",
        ROOT / "presets" / "object_yaw.json",
        "--build-scene",
        "--output",
        output,
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--resolution",
        "32x32",
    )
    assert done.returncode == 0, done.stderr
    assert len(list((output / "targets").glob("*.png"))) == 64  # the preset's count, from its truth
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "finished" and set(result["parameters"]) == {"yaw"}


def test_targets_no_parameter_can_reach_warn_in_words_and_exit_1(files):
    """Targets that are another picture altogether (flat white, made with PIL): the discriminator wins for good;
    the log says so in plain words as soon as it is seen, result.json keeps it, the exit code is 1."""
    tmp = files["tmp"]
    white = tmp / "white"
    white.mkdir()
    for i in range(8):
        Image.fromarray(np.full((32, 32, 3), 255 - i, np.uint8)).save(white / f"w{i}.png")
    config = json.loads(files["config"].read_text())
    config["optimizer"] = {"objective": "adversarial"}
    adversarial = tmp / "adversarial.json"
    adversarial.write_text(json.dumps(config))
    output = tmp / "out"
    done = run_batch(
        tmp, files["blend"], "--config", adversarial, "--targets", white, "--output", output, "--steps", "40"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    warning = "warning: the discriminator separates renders from targets by something the parameters cannot change"
    assert warning in done.stderr and "check engine, samples, resolution, colour management" in done.stderr
    assert "error: the fit cannot be trusted" in done.stderr and "Traceback" not in done.stderr
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "finished" and len(result["warnings"]) == 1
    assert "something the parameters cannot change" in result["warnings"][0]
