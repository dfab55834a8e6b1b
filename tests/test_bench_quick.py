"""The benchmarks cannot rot: each bench/ script runs its --quick smoke test (figures meaningless, code paths real),
and the convergence criterion the sample-efficiency figure rests on is checked on hand-made histories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402


def entry(renders: int, m1: float, m2: float) -> dict:
    return {"renders": renders, "values": {"m1": {"mu": m1, "sigma": 0.1}, "m2": {"mu": m2, "sigma": 0.1}}}


def test_converged_counts_from_the_last_entry_into_the_band():
    history = [entry(16, 1.5, 3.0), entry(32, 2.2, 2.3), entry(48, 2.4, 2.25), entry(64, 2.3, 2.2), entry(80, 2.3, 2.2)]
    # In the band at 32, out at 48 (m1 0.15 off), back in from 64 to the end.
    assert common.renders_to_converge(history, budget=100) == 64


def test_a_run_ending_outside_the_band_counts_as_the_budget():
    history = [entry(16, 2.25, 2.25), entry(32, 2.25, 2.36)]
    assert common.renders_to_converge(history, budget=100) == 100
    assert common.renders_to_converge([], budget=100) == 100


def test_the_band_is_strict_and_uses_the_worst_parameter():
    assert common.renders_to_converge([entry(16, 2.35, 2.25)], budget=100) == 100  # |μ − μ*| = 0.1 is outside
    assert common.renders_to_converge([entry(16, 2.34, 2.16)], budget=100) == 16


def test_preset_check_counts_renders_until_the_error_stays_under_the_tolerance():
    import preset_check

    errors = [(32, 9.0), (64, 4.0), (96, 6.0), (128, 3.0), (160, 2.0)]
    assert preset_check.renders_to_stay(errors, 5.0, budget=200) == 128
    assert preset_check.renders_to_stay(errors[:3], 5.0, budget=200) == 200
    truth = {"shape": {"probs": [0.1, 0.8, 0.1]}}
    assert preset_check.choice_error({"shape": {"probs": [0.2, 0.6, 0.2]}}, truth) == pytest.approx(0.2)
    assert preset_check.yaw_error({"yaw": {"mu": 1.0}}, {"yaw": {"mu": 1.0 + 0.1}}) == pytest.approx(5.7296, abs=1e-4)


def run(tmp_path: Path, script: str, *args: str) -> str:
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(tmp_path / "blender"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(tmp_path / "figures.json"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert (tmp_path / "figures.json").is_file()
    return completed.stdout


def test_sample_efficiency_quick_synthetic(tmp_path):
    out = run(tmp_path, "sample_efficiency.py")
    assert "ratio default / blendtorch" in out
    assert "blendtorch seed 0" in out and "default seed 0" in out


def test_gpu_training_quick_on_the_cpu(tmp_path):
    out = run(tmp_path, "gpu_training.py")
    assert "adversarial tell" in out and "energy rewards" in out
    assert "machine: " in out


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("sample_efficiency.py", ("--renderer", "blender"), "ratio default / blendtorch"),
        ("loop_efficiency.py", (), "median ratio"),
        ("wall_clock.py", (), "end to end"),
        ("preset_check.py", (), "median renders to stay"),
        ("image_pipeline.py", (), "median gap"),
        ("independent_targets.py", (), "SceneFit renders follow"),
        ("objective_lookup.py", (), "worst μ error ÷ tolerance"),
        ("workers.py", (), "images/s ratio 2 workers / 1 process"),
    ],
)
def test_blender_benchmarks_quick(tmp_path, script, args, expected):
    out = run(tmp_path, script, *args)
    assert expected in out
    assert "machine: " in out
