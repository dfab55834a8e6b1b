"""The run configuration's JSON Schema (addon/schemas/run_config.schema.json) says exactly what a run accepts.

"What a run accepts" is what ``RunConfig.from_dict`` and ``Session.start`` check before they change anything:
here the real code is run on a scene that holds the configured data-blocks (binding the specs, building every
distribution and the optimizer settings), and its verdict must equal the schema's — on the shipped presets' run
configurations, on the committed example and on variations of it that each break one rule. The few rules a JSON
Schema cannot state are listed in the schema's description and tested as such.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from tests.blender_scenes import cube_scene

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "addon" / "schemas" / "run_config.schema.json"
EXAMPLE_FILE = ROOT / "docs" / "run_config_example.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
EXAMPLE = json.loads(EXAMPLE_FILE.read_text(encoding="utf-8"))
STEMS = ["supershape_density", "supershape_guided_dr", "object_yaw", "discrete_choice", "bouncing_ball"]


@pytest.fixture
def code(scenefit):
    def module(name: str):
        return importlib.import_module(f"{scenefit.__name__}.addon.{name}")

    return SimpleNamespace(
        package=scenefit.__name__,
        config=module("blender.run.config"),
        session=module("blender.run.session"),
        presets=module("blender.scene.presets"),
        rna=module("blender.scene.rna"),
        render=module("blender.scene.render"),
        clips=module("blender.scene.clips"),
        distributions=module("engine.distributions"),
        optimizer=module("engine.optimizer"),
        estimators=module("engine.estimators"),
        objectives=module("engine.objectives"),
        engine_presets=module("engine.presets"),
        vocabulary=module("engine.vocabulary"),
        errors=module("engine.errors"),
    )


@pytest.fixture
def cube(scenefit):
    """The cube scene, which holds every data-block the example names (Cube, light Sun, material Grey)."""
    import bpy

    return cube_scene(bpy)


def schema_accepts(data: Any) -> bool:
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(data)


def run_accepts(code, scene, data: Any) -> bool:
    """Whether a run accepts ``data``: RunConfig loads it, its specs bind to ``scene``'s properties and give valid
    distributions (``Session.start``'s checks before it touches the scene), and its optimizer settings are valid."""
    try:
        config = code.config.RunConfig.from_dict(copy.deepcopy(data))
        session = code.session.Session(scene, config)
        _, engine_space = session._bind_specs()
        for engine in engine_space.values():
            code.distributions.distribution_from_dict(engine)
        config.optimizer_config()
    except code.errors.SceneFitError:
        return False
    return True


def changed(path: str, value: Any) -> dict[str, Any]:
    """The example with the value at ``path`` ("specs.0.distribution.sigma") replaced; ``...`` deletes it."""
    data = copy.deepcopy(EXAMPLE)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    target = data
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


# --- the schema file -------------------------------------------------------------------------------------------


def test_the_schema_is_a_draft_2020_12_schema_with_a_description_everywhere():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                if name != "kind" or "enum" in prop:
                    assert "description" in prop or "$ref" in prop, f"{where}.{name} has no description"
            for key, value in node.items():
                if key not in ("if", "then", "allOf", "oneOf", "anyOf"):  # conditions restate described fields
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(SCHEMA, "")


def test_the_committed_schema_is_what_the_code_generates(code):
    from run_config_schema import render, schema

    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(schema(code.package)), (
        "addon/schemas/run_config.schema.json is out of date: run .venv/bin/python tools/run_config_schema.py"
    )


def test_the_schemas_fields_are_the_dataclasses_fields(code):
    names = {f.name for f in dataclasses.fields(code.config.RunConfig)}
    assert set(SCHEMA["properties"]) == names
    defs = SCHEMA["$defs"]
    assert set(defs["spec"]["properties"]) == {f.name for f in dataclasses.fields(code.config.SpecConfig)}
    assert set(defs["optimizer"]["properties"]) == {f.name for f in dataclasses.fields(code.optimizer.OptimizerConfig)}
    assert set(defs["estimator"]["properties"]) == {f.name for f in dataclasses.fields(code.estimators.EstimatorConfig)}
    own = {"lr", "betas", "feature_extractor"}  # set by OptimizerConfig's d_lr, d_betas, feature_extractor
    assert (
        set(defs["objective_options"]["properties"])
        == {f.name for f in dataclasses.fields(code.objectives.ObjectiveConfig)} - own
    )
    assert set(code.optimizer._OWN_OBJECTIVE_FIELDS) == own
    assert set(defs["clips"]["properties"]) == {f.name for f in dataclasses.fields(code.clips.ClipSettings)}
    kinds = code.distributions.KINDS
    assert defs["distribution"]["properties"]["kind"]["enum"] == list(kinds)
    for kind, cls in kinds.items():
        keys = {"kind", "fixed", *cls.required_keys, *cls.optional_keys, *cls.reported_keys, *cls.derived_keys}
        assert set(defs[kind]["properties"]) == keys, kind


def test_the_schemas_names_and_defaults_come_from_the_code(code):
    defs = SCHEMA["$defs"]
    assert defs["optimizer"]["properties"]["objective"]["enum"] == list(code.vocabulary.OBJECTIVES)
    assert defs["estimator"]["properties"]["baseline"]["enum"] == list(code.vocabulary.BASELINES)
    assert SCHEMA["properties"]["engine"]["enum"] == list(code.vocabulary.RENDER_ENGINES)
    assert defs["spec"]["properties"]["id_type"]["enum"] == list(code.rna.ID_COLLECTIONS)
    default = code.optimizer.OptimizerConfig.default().to_dict()
    for name, prop in defs["optimizer"]["properties"].items():
        if "default" in prop:
            assert prop["default"] == default[name], name
    assert {name: prop["default"] for name, prop in defs["estimator"]["properties"].items()} == default["estimator"]
    run = code.config.RunConfig(specs=[])
    for name, prop in SCHEMA["properties"].items():
        if "default" in prop:
            value = getattr(run, name)
            assert prop["default"] == (list(value) if isinstance(value, tuple) else value), name


def test_the_extension_zip_ships_the_schema_and_the_example(extension_zip):
    with zipfile.ZipFile(extension_zip) as archive:
        names = set(archive.namelist())
        assert "addon/schemas/run_config.schema.json" in names and "docs/run_config_example.json" in names
        assert json.loads(archive.read("addon/schemas/run_config.schema.json")) == SCHEMA


# --- what the schema accepts is what a run accepts ---------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_each_presets_run_configuration_is_valid(code, stem):
    import bpy

    preset = code.engine_presets.load_preset(ROOT / "presets" / f"{stem}.json")
    code.presets.apply_preset(preset, bpy.context.scene)
    data = json.loads(json.dumps(code.config.RunConfig.from_preset(preset).to_dict()))
    assert schema_accepts(data), list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    assert run_accepts(code, bpy.context.scene, data)
    # A preset file is another format (validated by engine.presets), which this schema and RunConfig reject.
    document = json.loads((ROOT / "presets" / f"{stem}.json").read_text())
    assert not schema_accepts(document) and not run_accepts(code, bpy.context.scene, document)


def test_the_example_is_valid_and_loads(code, cube):
    assert schema_accepts(EXAMPLE), list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(EXAMPLE))
    assert run_accepts(code, cube, EXAMPLE)
    config = code.config.RunConfig.from_json(EXAMPLE_FILE)
    assert config.to_dict() == {**EXAMPLE, "resolution": [64, 48]}
    kinds = [spec.distribution["kind"] for spec in config.specs]
    assert sorted(kinds) == sorted(code.distributions.KINDS), "the example shows every distribution kind"
    optimizer = config.optimizer_config()
    assert (optimizer.objective, optimizer.estimator.min_scale, optimizer.batch_size) == ("mmd", 0.01, 16)
    default = code.optimizer.OptimizerConfig.default()
    assert optimizer.estimator.ema_new_weight == default.estimator.ema_new_weight  # merged over the defaults
    assert optimizer.objective_options == {**default.objective_options, "mmd_bandwidths": [0.5, 1.0, 2.0]}


def test_the_readme_shows_the_example_and_points_to_the_schema():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```json\n{EXAMPLE_FILE.read_text(encoding='utf-8')}```" in readme
    assert "addon/schemas/run_config.schema.json" in readme and "docs/run_config_example.json" in readme


def test_the_readmes_table_of_defaults_is_runconfigs(code):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The run configuration", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `(.+?)` \|", section, flags=re.MULTILINE))
    run = {}  # the defaults as written in RunConfig (steps: null, resolved from the specs when the run is made)
    for f in dataclasses.fields(code.config.RunConfig)[1:]:  # after the specs, which have no default
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        run[f.name] = list(default) if isinstance(default, tuple) else default
    assert set(rows) == set(run)
    for name, text in rows.items():
        assert json.loads(text) == run[name], name


TRUNCATED = "specs.2.distribution"
GOOD = {
    "parent form of a truncated normal": (TRUNCATED, {"kind": "truncnormal", "parent_mu": 0.5, "parent_sigma": 0.2}),
    "mixed mu and parent_sigma": (TRUNCATED, {"kind": "truncnormal", "mu": 0.5, "parent_sigma": 0.2}),
    "categorical without probs": ("specs.3.distribution.probs", ...),
    "enum categorical without choices": ("specs.3.distribution", {"kind": "categorical"}),
    "fixed false": ("specs.0.distribution.fixed", False),
    "no optimizer": ("optimizer", ...),
    "empty optimizer": ("optimizer", {}),
    "gap knob with a gap objective": ("optimizer", {"objective": "adversarial", "d_gap_max": 0.9}),
    "no half-life": ("optimizer.param_lr_half_life", None),
    "clips": ("clips", {"frame_start": 1, "frame_end": 9, "stride": 4}),
    "clips by default frames": ("clips", {}),
    "only the specs": ("", None),
}
BAD = {
    "unknown setting": ("stepz", 3),
    "no specs": ("specs", ...),
    "empty specs": ("specs", []),
    "specs not a list": ("specs", {"yaw": {}}),
    "unknown spec key": ("specs.0.owner", "Cube"),
    "missing spec key": ("specs.0.data_path", ...),
    "empty label": ("specs.0.label", " "),
    "long label": ("specs.0.label", "x" * 64),
    "number label": ("specs.0.label", 5),
    "unknown data-block type": ("specs.0.id_type", "OBJ"),
    "empty data path": ("specs.0.data_path", ""),
    "bad kind": ("specs.0.distribution.kind", "gamma"),
    "no kind": ("specs.0.distribution.kind", ...),
    "distribution not an object": ("specs.0.distribution", "normal"),
    "unknown distribution key": ("specs.0.distribution.sigmaa", 1.0),
    "missing sigma": ("specs.0.distribution.sigma", ...),
    "zero sigma": ("specs.1.distribution.sigma", 0.0),
    "text mu": ("specs.0.distribution.mu", "1"),
    "fixed yes": ("specs.0.distribution.fixed", "yes"),
    "mu and parent_mu": (f"{TRUNCATED}.parent_mu", 0.5),
    "mean on a normal": ("specs.0.distribution.mean", 0.785),
    "missing bound": (f"{TRUNCATED}.high", ...),
    "negative prob": ("specs.3.distribution.probs", [1.25, -0.25, 0.0]),
    "mixed choices": ("specs.3.distribution.choices", ["SUN", 1, "AREA"]),
    "p above 1": ("specs.4.distribution.p", 1.5),
    "steps 0": ("steps", 0),
    "batch of 1": ("batch_size", 1),
    "negative seed": ("seed", -1),
    "boolean seed": ("seed", True),
    "tiny resolution": ("resolution", [2, 2]),
    "one-number resolution": ("resolution", [64]),
    "unknown engine": ("engine", "EEVEE"),
    "no samples": ("samples", 0),
    "two channels": ("channels", 2),
    "null targets": ("targets", None),
    "number resume": ("resume", 3),
    "optimizer not an object": ("optimizer", "mmd"),
    "unknown optimizer setting": ("optimizer.lr", 0.1),
    "unknown objective": ("optimizer.objective", "gan"),
    "batch size in the optimizer": ("optimizer.batch_size", 16),
    "seed in the optimizer": ("optimizer.seed", 1),
    "gap knob with MMD": ("optimizer.d_gap_max", 0.9),
    "average of 1": ("optimizer.param_average", 1.0),
    "negative learning rate": ("optimizer.param_lr", -0.1),
    "one beta": ("optimizer.d_betas", [0.5]),
    "empty feature extractor": ("optimizer.feature_extractor", " "),
    "unknown baseline": ("optimizer.estimator.baseline", "mean"),
    "unknown estimator setting": ("optimizer.estimator.warmup", 3),
    "estimator as a name": ("optimizer.estimator", "loo"),
    "objective option set elsewhere": ("optimizer.objective_options.lr", 0.1),
    "unknown reward": ("optimizer.objective_options.reward", "score"),
    "unknown clip setting": ("clips", {"fps": 24}),
    "clip stride 0": ("clips", {"stride": 0}),
}
# What a JSON Schema cannot say: each is named in the schema's description and rejected when the run starts.
LIMITS = {
    "unique labels": ("specs.1.label", "yaw"),
    "low < high": (f"{TRUNCATED}.low", 2.0),
    "as many probs as choices": ("specs.3.distribution.probs", [0.5, 0.5]),
    "summing to 1": ("specs.3.distribution.probs", [0.5, 0.25, 0.5]),
    "enum choices among the property's items": ("specs.3.distribution.choices", ["SUN", "POINT", "LAMP"]),
    "mean and std agree with the parameters": (f"{TRUNCATED}.mean", 0.9),
    "at least 2 clip frames": ("clips", {"frame_start": 1, "frame_end": 4, "stride": 8}),
    "integers written without a decimal point": ("steps", 60.0),
}


def variant(path: str, value: Any) -> Any:
    if path == "":
        return {"specs": EXAMPLE["specs"]}
    if path == TRUNCATED and isinstance(value, dict):
        return changed(path, {"low": 0.0, "high": 1.0, **value})
    return changed(path, value)


@pytest.mark.parametrize("case", sorted(GOOD))
def test_variations_both_accept(code, cube, case):
    data = variant(*GOOD[case])
    assert schema_accepts(data), list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    assert run_accepts(code, cube, data)


@pytest.mark.parametrize("case", sorted(BAD))
def test_variations_both_reject(code, cube, case):
    data = variant(*BAD[case])
    assert not schema_accepts(data), "the schema accepts it"
    assert not run_accepts(code, cube, data), "a run accepts it"


@pytest.mark.parametrize("case", sorted(LIMITS))
def test_what_the_schema_cannot_say_is_documented_and_checked_by_the_run(code, cube, case):
    data = variant(*LIMITS[case])
    assert schema_accepts(data)
    assert not run_accepts(code, cube, data)
    assert case in SCHEMA["description"]


def test_the_default_objective_decides_whether_gap_knobs_are_allowed(code, cube):
    data = changed("optimizer", {"d_gap_max": 0.9})  # no objective: the default's
    assert schema_accepts(data) == run_accepts(code, cube, data)
    default = code.optimizer.OptimizerConfig.default().objective
    assert run_accepts(code, cube, data) == (default in code.vocabulary.GAP_OBJECTIVES)


def test_a_results_distribution_is_a_valid_start(code, cube):
    """result.json reports a truncated normal as mean, std, parent_mu, parent_sigma: a configuration may start
    from it as it is."""
    reported = code.distributions.TruncatedNormal(1.29, 0.5, 0.0, 1.0).values()
    data = changed(TRUNCATED, {"kind": "truncnormal", **reported})
    assert schema_accepts(data) and run_accepts(code, cube, data)
    assert re.search(r"\bmean\b", json.dumps(SCHEMA["$defs"]["truncnormal"]))
