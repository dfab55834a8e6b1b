"""Batch mode and the run configuration: the settings block printed at the start, ``--objective``, and how a
truncated normal's result is reported (its own mean and std) in result.json and the custom properties."""

from __future__ import annotations

import importlib
import json
import math

from tests import test_blender_batch
from tests.test_blender_batch import run_batch

files = test_blender_batch.files  # the fixture: the cube scene, 16 targets and a run configuration


def _truncated_config(files) -> None:
    config = json.loads(files["config"].read_text())
    config["specs"][0]["distribution"] = {"kind": "truncnormal", "mu": 1.29, "sigma": 0.5, "low": 0.0, "high": 1.0}
    files["config"].write_text(json.dumps(config))


def test_batch_prints_every_setting_then_runs_the_objective_given(scenefit, files):
    _truncated_config(files)
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
        "2",
        "--seed",
        "3",
        "--objective",
        "adversarial",  # the configuration says mmd
        "--save",
        saved,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("scenefit: run settings")
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        name, _, value = line.strip().partition("  ")
        block.append((name.strip(), value.strip()))
    optimizer = importlib.import_module(f"{scenefit.__name__}.addon.engine.optimizer")
    # The configuration does not set it: the default of the objective given (leave-one-out for the discriminator).
    baseline = optimizer.OptimizerConfig.default(objective="adversarial").estimator.baseline
    assert block == [
        ("engine", "BLENDER_WORKBENCH"),
        ("samples", "1"),
        ("resolution", "32×32, RGB"),
        ("rendered at", "32×32, then resized like the targets"),  # the targets are 32×32 too
        ("objective", "adversarial"),
        ("device", f"{optimizer.OptimizerConfig(device='auto').torch_device().type} (auto)"),
        ("baseline", baseline),
        ("workers", "1 (renders in this process)"),
        ("steps", "2"),
        ("batch size", "8"),
        ("seed", "3"),
        ("targets", f"16 target images loaded from {files['targets']}"),
        ("output", str(output)),
        ("spec 'yaw'", "OBJECT 'Cube' rotation_euler[2] ~ truncnormal mu=1.29 sigma=0.5 low=0 high=1"),
    ]
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step "))
    assert start < first_step

    result = json.loads((output / "result.json").read_text())
    assert result["config"]["optimizer"]["objective"] == "adversarial"
    assert all(isinstance(entry["d_real"], float) for entry in result["history"])  # a discriminator ran, not MMD

    # A truncated normal reports its own mean and std, its parent's μ and σ only as such.
    yaw = result["parameters"]["yaw"]
    assert set(yaw) == {"distribution", "id", "path", "mean", "std", "parent_mu", "parent_sigma", "low", "high"}
    distributions = importlib.import_module(f"{scenefit.__name__}.addon.engine.distributions")
    own = distributions.TruncatedNormal(yaw["parent_mu"], yaw["parent_sigma"], 0.0, 1.0)
    assert 0.0 < yaw["mean"] < 1.0 and math.isclose(yaw["mean"], own.mean.item(), rel_tol=1e-6)
    assert math.isclose(yaw["std"], own.stddev.item(), rel_tol=1e-6)
    assert all("mean=" in line and "parent_mu=" in line for line in lines if line.startswith("step "))

    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(saved))
    stored = bpy.data.objects["Cube"]["scenefit"]["yaw"].to_dict()
    assert stored == {"path": "rotation_euler[2]", "distribution": "truncnormal", **{k: yaw[k] for k in own.values()}}
    assert "mu" not in stored and "sigma" not in stored


def test_batch_objective_names_come_from_the_engine(scenefit, files):
    vocabulary = importlib.import_module(f"{scenefit.__name__}.addon.engine.vocabulary")
    done = run_batch(files["tmp"], files["blend"], "--objective", "gan")
    assert done.returncode == 2
    assert "argument --objective: invalid choice: 'gan'" in done.stderr
    assert all(repr(name) in done.stderr for name in vocabulary.OBJECTIVES)
