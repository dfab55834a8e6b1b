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
import tempfile
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

    render = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.render")
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
        ({"--config": "latin1.json"}, "scenefit: error: run configuration latin1.json is not UTF-8 text"),
        ({"--config": "deep.json"}, "scenefit: error: run configuration deep.json is nested too deeply"),
        ({"--steps": "2147483648"}, "scenefit: error: steps must be an integer ≥ 1 (at most 2147483647)"),
        ({"--config": "long-label.json"}, "scenefit: error: spec label 'mmmm"),
        ({"--resume": "bad.pt"}, "scenefit: error: checkpoint bad.pt cannot be used: its config is not valid JSON"),
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
    (tmp / "latin1.json").write_bytes(files["config"].read_text().replace("yaw", "l\u00e4nge").encode("latin-1"))
    (tmp / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    config = json.loads(files["config"].read_text())
    config["specs"][0]["label"] = "m" * 5_000_000
    (tmp / "long-label.json").write_text(json.dumps(config))
    if "--resume" in change:  # a checkpoint whose stored optimizer settings are not JSON
        import torch

        from addon.engine.distributions import Normal, ParameterSpace
        from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig

        space = ParameterSpace({"yaw": Normal(0.5, 0.1)})
        optimizer = AskTellOptimizer(space, np.zeros((4, 32, 32, 3), np.float32), OptimizerConfig.default())
        state = optimizer.state_dict()
        state["config"] = "{not json"
        torch.save(state, tmp / "bad.pt")
    argv = [args.pop("blend")] + [str(x) for pair in args.items() for x in pair]
    done = run_batch(tmp, *argv)
    assert done.returncode == 1, (done.stdout, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("scenefit:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(errors[0]) < 500
    assert not (tmp / "out").exists()


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


@pytest.mark.parametrize("objective", ["energy", "adversarial"])
def test_targets_no_parameter_can_reach_warn_in_words_and_exit_1(files, objective):
    """Targets that are another picture altogether (flat white, made with PIL): the discriminator wins for good,
    the energy distance's separation stays high; the log says so in plain words as soon as it is seen,
    result.json keeps it, the exit code is 1."""
    from addon.engine import diagnostics

    tmp = files["tmp"]
    white = tmp / "white"
    white.mkdir(exist_ok=True)
    for i in range(8):
        Image.fromarray(np.full((32, 32, 3), 255 - i, np.uint8)).save(white / f"w{i}.png")
    config = json.loads(files["config"].read_text())
    config["optimizer"] = {"objective": objective}
    chosen = tmp / f"{objective}.json"
    chosen.write_text(json.dumps(config))
    output = tmp / f"out-{objective}"
    done = run_batch(tmp, files["blend"], "--config", chosen, "--targets", white, "--output", output, "--steps", "40")
    assert done.returncode == 1, done.stdout + done.stderr
    warning = f"warning: {diagnostics.saturation_warning(objective)}"
    assert warning in done.stderr and "check engine, samples, resolution, colour management" in done.stderr
    assert "error: the fit cannot be trusted" in done.stderr and "Traceback" not in done.stderr
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "finished" and len(result["warnings"]) == 1
    assert "something the parameters cannot change" in result["warnings"][0]


def start_batch(files, output: Path, *extra: str) -> subprocess.Popen:
    tmp = files["tmp"]
    args = [files["blend"], "--config", files["config"], "--targets", files["targets"], "--output", output]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args), *extra],
        env=batch_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
    )


def wait_for_step(process: subprocess.Popen, step: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(f"step {step}/"):
            return
        assert line, f"batch ended early: {process.stderr.read()}"
    raise AssertionError(f"no step {step} in {TIMEOUT_S} s")


def render_folders(pid: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"scenefit-render-{pid}-*")) + list(
        Path(tempfile.gettempdir()).glob(f"scenefit-render-{pid}-*")
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_batch_sigterm_and_sighup_stop_like_ctrl_c(files, signum, code):
    output = files["tmp"] / "out"
    process = start_batch(files, output, "--steps", "100000", "--save", files["tmp"] / "after.blend")
    try:
        wait_for_step(process, 2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert f"stopped by {signal.Signals(signum).name}; the scene was restored" in stderr and "Traceback" not in stderr
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "stopped" and result["checkpoint_steps"] == result["steps"] >= 2
    assert not render_folders(process.pid) and not list(output.glob("*.tmp"))

    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(files["tmp"] / "after.blend"))
    assert bpy.data.objects["Cube"].rotation_euler[2] == files["yaw"]  # --save after a stop: the scene restored
    assert bpy.context.scene.render.resolution_x == 1920 and bpy.context.scene.render.engine != "BLENDER_WORKBENCH"


def test_batch_kill_9_loses_at_most_a_few_steps_and_resume_continues(files):
    output = files["tmp"] / "out"
    process = start_batch(files, output, "--steps", "100000", "--checkpoint-every", "2")
    try:
        wait_for_step(process, 1)
        deadline = time.monotonic() + TIMEOUT_S
        while json.loads((output / "result.json").read_text())["checkpoint_steps"] < 4:  # written during the run
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    result = json.loads((output / "result.json").read_text())
    assert result["status"] == "running" and result["checkpoint_steps"] >= 4
    resumed = run_batch(
        files["tmp"],
        files["blend"],
        *("--config", files["config"], "--targets", files["targets"], "--output", output),
        *("--steps", "2", "--resume", output / "checkpoint.pt"),
    )
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((output / "result.json").read_text())
    assert after["status"] == "finished" and after["steps"] == result["checkpoint_steps"] + 2
    assert not render_folders(process.pid)  # the killed process's render folder: removed by the next run


def test_batch_refuses_an_output_folder_holding_a_run_unless_overwrite(files):
    tmp = files["tmp"]
    output = tmp / "out"
    common = (files["blend"], "--config", files["config"], "--targets", files["targets"], "--output", output)
    assert run_batch(tmp, *common, "--steps", "1").returncode == 0
    (output / "samples_00077.png").write_bytes(b"an earlier run")
    first = (output / "result.json").read_text()
    again = run_batch(tmp, *common, "--steps", "1")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"scenefit: error: output folder {output} already holds a run" in again.stderr
    assert (output / "result.json").read_text() == first
    replaced = run_batch(tmp, *common, "--steps", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert not (output / "samples_00077.png").exists()


def test_batch_output_folder_deleted_mid_run_exit_1(files):
    import shutil

    output = files["tmp"] / "out"
    process = start_batch(files, output, "--steps", "100000", "--checkpoint-every", "1")
    try:
        wait_for_step(process, 2)
        shutil.rmtree(output)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("scenefit:")]
    assert len(errors) == 1 and errors[0].startswith(f"scenefit: error: cannot write the checkpoint {output}"), stderr
    assert "Traceback" not in stderr and not render_folders(process.pid)


def test_batch_steps_beyond_int32_leave_the_scene_alone(files, scenefit):
    """In-process (bench/wall_clock.py calls main() like this): refused before anything changes."""
    import importlib

    import bpy

    from tests.blender_scenes import diff, scene_state

    batch = importlib.import_module(f"{scenefit.__name__}.addon.blender.run.batch")
    bpy.ops.wm.open_mainfile(filepath=str(files["blend"]))
    before = scene_state(bpy, bpy.context.scene)
    common = ["--config", str(files["config"]), "--targets", str(files["targets"])]
    assert batch.main([*common, "--output", str(files["tmp"] / "out"), "--steps", str(2**31)]) == 1
    assert diff(before, scene_state(bpy, bpy.context.scene)) == []


def test_batch_blocked_python_drivers_are_named_and_the_process_ends(files):
    """With auto-run off, a Python driver is blocked, and the bpy module then never exits on its own."""
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(files["blend"]))
    empty = bpy.data.objects.new("Gauge", None)
    bpy.context.scene.collection.objects.link(empty)
    driver = empty.driver_add("location", 0).driver
    driver.type, driver.expression = "SCRIPTED", "__import__('math').sin(frame)"
    blend = files["tmp"] / "drivers.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    tmp = files["tmp"]
    common = ("--config", files["config"], "--targets", files["targets"], "--output", tmp / "out", "--steps", "1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(blend), *map(str, common)],
        env=batch_env(tmp),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    assert "1 Python driver(s) blocked (Gauge.location[0] = __import__('math').sin(frame))" in done.stderr
