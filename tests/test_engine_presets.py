"""Preset files: the shipped ones load with the values the demos need; malformed ones fail naming file and field."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from addon.engine import presets
from addon.engine.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {path.stem: path for path in presets.preset_paths()}


def test_the_presets_ship():
    assert set(SHIPPED) == {
        "supershape_density",
        "supershape_guided_dr",
        "object_yaw",
        "discrete_choice",
        "bouncing_ball",
    }


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_each_shipped_preset_loads(stem):
    preset = presets.load_preset(SHIPPED[stem])
    assert preset.path == SHIPPED[stem] and preset.name and preset.description
    assert preset.scene_builder in presets.SCENES
    assert set(preset.scene_options) == set(presets.SCENES[preset.scene_builder])
    assert preset.truth() is not None and preset.targets["count"] == 64
    assert list(preset.space()) == [p.label for p in preset.parameters]


def test_supershape_density_is_blendtorchs_seed():
    preset = presets.load_preset(SHIPPED["supershape_density"])
    assert preset.scene_builder == "supershape" and preset.scene_options["resolution"] == (100, 100)
    assert [p.data_path for p in preset.parameters] == ["supershape.m1", "supershape.m2"]
    assert preset.space() == {
        "m1": {"kind": "lognormal", "mu": 1.2, "sigma": 0.4},
        "m2": {"kind": "lognormal", "mu": 3.0, "sigma": 0.4},
    }
    assert preset.truth() == {label: {"kind": "lognormal", "mu": 2.25, "sigma": 0.1} for label in ("m1", "m2")}
    assert preset.run["objective"] == "adversarial" and preset.targets == {"count": 64, "seed": 1}


def test_guided_dr_targets_two_point_five():
    preset = presets.load_preset(SHIPPED["supershape_guided_dr"])
    assert {t["mu"] for t in preset.truth().values()} == {2.5}
    assert preset.space()["m1"]["mu"] == 1.2 and preset.space()["m2"]["mu"] == 3.0


def test_object_yaw_is_meta_sims_experiment_from_zero_to_ninety_degrees_with_the_discriminator():
    preset = presets.load_preset(SHIPPED["object_yaw"])
    (yaw,) = preset.parameters
    assert yaw.data_path == "rotation_euler[2]" and yaw.distribution["kind"] == "normal"
    assert math.degrees(yaw.distribution["mu"]) == pytest.approx(0.0)
    assert math.degrees(yaw.distribution["sigma"]) == pytest.approx(10.0)
    assert math.degrees(yaw.truth["mu"]) == pytest.approx(90.0)
    assert preset.run["objective"] == "adversarial"  # the car's ±90° side views are mirror-alike in pixels
    assert preset.scene_options["mesh"] == "car"


def test_discrete_choice_is_a_categorical_under_wgan_gp():
    preset = presets.load_preset(SHIPPED["discrete_choice"])
    (shape,) = preset.parameters
    assert shape.distribution["kind"] == "categorical" and shape.distribution["choices"] == [0, 1, 2]
    assert len(preset.scene_options["primitives"]) == 3
    assert preset.run["objective"] == "wgan-gp"


def test_defaults_fill_optional_fields():
    data = json.loads(SHIPPED["object_yaw"].read_text())
    del data["scene"]["options"], data["description"], data["run"]["seed"], data["run"]["samples"]
    preset = presets.preset_from_dict(data)
    assert preset.scene_options == {"name": "YawObject", "mesh": "monkey"}
    assert preset.description == "" and preset.run["seed"] == 0 and preset.run["samples"] == 8


def test_parameters_without_truth_need_no_targets():
    data = json.loads(SHIPPED["object_yaw"].read_text())
    del data["parameters"][0]["truth"], data["targets"]
    preset = presets.preset_from_dict(data)
    assert preset.truth() is None and preset.targets is None


def _set(data: dict, path: tuple, value) -> None:
    *parents, last = path
    for key in parents:
        data = data[key]
    data[last] = value


def _delete(data: dict, path: tuple) -> None:
    *parents, last = path
    for key in parents:
        data = data[key]
    del data[last]


MALFORMED = [
    ("unknown top-level key", lambda d: _set(d, ("colour",), "red"), r"colour: unknown field"),
    (
        "unknown parameter key",
        lambda d: _set(d, ("parameters", 0, "path"), "x"),
        r"parameters\[0\]\.path: unknown field",
    ),
    ("unknown run key", lambda d: _set(d, ("run", "epochs"), 3), r"run\.epochs: unknown field"),
    ("wrong type", lambda d: _set(d, ("run", "batch_size"), "64"), r"run\.batch_size: must be an integer"),
    ("bool for an integer", lambda d: _set(d, ("run", "steps"), True), r"run\.steps: must be an integer"),
    ("out of range", lambda d: _set(d, ("run", "batch_size"), 1), r"run\.batch_size: must be between 2 and 1024"),
    (
        "missing field",
        lambda d: _delete(d, ("parameters", 1, "data_path")),
        r"parameters\[1\]\.data_path: missing required field",
    ),
    ("missing section", lambda d: _delete(d, ("run",)), r"run: missing required field"),
    ("unknown builder", lambda d: _set(d, ("scene", "builder"), "castle"), r"scene\.builder: must be one of"),
    (
        "unknown builder option",
        lambda d: _set(d, ("scene", "options", "segments"), 8),
        r"scene\.options\.segments: unknown field",
    ),
    (
        "bad builder option",
        lambda d: _set(d, ("scene", "options", "resolution"), [100]),
        r"scene\.options\.resolution: must be a list of two integers",
    ),
    (
        "bad distribution",
        lambda d: _set(d, ("parameters", 0, "distribution", "sigma"), -1),
        r"parameters\[0\]\.distribution: lognormal: sigma must be > 0",
    ),
    (
        "unknown distribution kind",
        lambda d: _set(d, ("parameters", 1, "truth", "kind"), "gamma"),
        r"parameters\[1\]\.truth: unknown distribution kind 'gamma'",
    ),
    ("repeated label", lambda d: _set(d, ("parameters", 1, "label"), "m1"), r"parameters\[1\]\.label: repeats"),
    ("bad id_type", lambda d: _set(d, ("parameters", 0, "id_type"), "object"), r"parameters\[0\]\.id_type"),
    ("empty parameters", lambda d: _set(d, ("parameters",), []), r"parameters: must be a list of at least 1"),
    ("unknown objective", lambda d: _set(d, ("run", "objective"), "gan"), r"run\.objective: must be one of"),
    ("targets without truth", lambda d: _delete(d, ("parameters", 0, "truth")), r"targets: .*\['m1'\] have none"),
    ("truth without targets", lambda d: _delete(d, ("targets",)), r"targets: missing"),
    ("wrong version", lambda d: _set(d, ("version",), 2), r"version: this SceneFit reads preset version 1"),
    ("not a preset", lambda d: _set(d, ("format",), "blender"), r"format: must be 'scenefit-preset'"),
    (
        "NaN",
        lambda d: _set(d, ("parameters", 0, "distribution", "mu"), float("nan")),
        r"parameters\[0\]\.distribution\.mu: must be a finite number",
    ),
]


@pytest.mark.parametrize("mutate, message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_presets_name_the_file_and_the_field(tmp_path, mutate, message):
    data = copy.deepcopy(json.loads(SHIPPED["supershape_density"].read_text()))
    mutate(data)
    path = tmp_path / "broken_preset.json"
    path.write_text(json.dumps(data))  # json.dumps writes NaN, which json.loads reads back
    with pytest.raises(ConfigError, match=r"^broken_preset\.json: " + message):
        presets.load_preset(path)


def test_unreadable_files_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        presets.load_preset(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "scenefit-preset",')
    with pytest.raises(ConfigError, match=r"^bad\.json: not valid JSON"):
        presets.load_preset(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"^bad\.json: must be an object"):
        presets.load_preset(bad)


def test_titles_list_even_broken_files_without_importing_torch(tmp_path):
    for stem, path in SHIPPED.items():
        (tmp_path / f"{stem}.json").write_text(path.read_text())
    (tmp_path / "zz_broken.json").write_text("{")
    code = (
        "import sys; from addon.engine import presets; "
        f"titles = presets.preset_titles({str(tmp_path)!r}); "
        "print(len(titles), titles[-1][0], titles[-1][2].startswith('unreadable'), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == [str(len(SHIPPED) + 1), "zz_broken", "True", "False"]


def test_every_objective_name_has_its_objective_and_only_those():
    from addon.engine import vocabulary
    from addon.engine.objectives import OBJECTIVE_CLASSES

    assert set(OBJECTIVE_CLASSES) == set(vocabulary.OBJECTIVES)
    assert set(vocabulary.GAP_OBJECTIVES) <= set(vocabulary.OBJECTIVES)


def test_a_preset_without_an_estimator_gets_its_objectives_default_baseline():
    assert presets.default_baseline("energy") == "per-property"
    assert {presets.default_baseline(name) for name in ("adversarial", "wgan-gp", "mmd")} == {"loo"}
