"""Write ``addon/schemas/run_config.schema.json``, the JSON Schema (draft 2020-12) of a run configuration.

A run configuration is ``RunConfig`` as JSON: what batch ``--config`` reads and ``result.json`` stores under
"config". The schema is generated, not hand-edited, so that the names it allows (distribution kinds, objectives,
baselines, render engines, data-block types) and the defaults it states are read from where the code defines them;
only the descriptions are written here, one per field, and a field without one stops the generator.
``tests/test_run_config_schema.py`` fails when the committed file differs from what this writes::

    .venv/bin/python tools/run_config_schema.py          # rewrite the schema
    .venv/bin/python tools/run_config_schema.py --check  # exit 1 if it is out of date

Needs the bpy module and torch (it reads ``RunConfig`` and ``OptimizerConfig.default()``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "addon" / "schemas" / "run_config.schema.json"
PACKAGE = "scenefit_source"  # the source tree imported under this name (its folder may have any name)

RUN_FIELDS = {
    "specs": "The random properties: each names one scalar property of a data-block and the distribution its "
    "values are drawn from at the start. Labels must be unique within a run (not checked by this schema).",
    "targets": "Folder, glob (such as 'photos/*.png') or single file of the target images the renders should "
    "come to look like; with clips, a folder holding one sub-folder of frames per clip. Empty: batch --targets "
    "gives it, or with a preset the targets are rendered from the preset's truth.",
    "output_dir": "Folder for result.json, checkpoint.pt and the report; created if missing. Empty: batch "
    "--output gives it (a run needs one).",
    "steps": "Optimization steps of this run, one batch of renders each (a resumed run counts on from its checkpoint); "
    "left out: 100 for one learned property and 50 more for each further one.",
    "batch_size": "Renders per step (also the optimizer's batch size); at least 2.",
    "seed": "Seeds sampling and the networks' initialisation: one seed, one run.",
    "resolution": "Training image size [width, height] in pixels (4–4096); targets are cropped to its aspect "
    "ratio and resized to it.",
    "engine": "Render engine of the training renders.",
    "samples": "Render samples per image (Cycles/EEVEE samples, Workbench anti-aliasing).",
    "channels": "3: opaque RGB (the world is the background); 4: RGBA, rendered with a transparent film.",
    "optimizer": "Optimizer settings over SceneFit's defaults (OptimizerConfig.default(), whose values are "
    "given as each field's default here); leave out what you do not change. batch_size and seed are set at the "
    "top level, not here.",
    "resume": "checkpoint.pt of an earlier run to continue (its optimizer settings are used), or empty.",
    "clips": "null: every sample is a still image. An object: every sample and target is a clip, the frames "
    "frame_start…frame_end every stride frames, simulated from the start (physics); at least 2 frames.",
    "checkpoint_steps": "Also write checkpoint.pt every this many steps (0: by time only).",
    "checkpoint_seconds": "Write checkpoint.pt at least every this many seconds (0.1–86400), so that a killed run "
    "loses at most that much.",
    "overwrite": "Replace a run already in output_dir (else such a folder is refused; resuming its own checkpoint "
    "continues in place).",
    "workers": "Render processes, each a headless Blender on a snapshot of the scene as the run starts, with "
    "cores / workers render threads: 1 renders in the running process; 0 (the default): what fits the machine "
    "(one per two cores; in Blender's interface at least two, so that it renders nothing itself). The same seed "
    "learns the same values whatever the number. Batch --workers overrides it.",
    "ray": "Batch only: the Ray cluster (HOST:PORT, or auto) whose actors render the samples, `workers` of them "
    "(0: as many as it has room for), each a bpy-module process on a node with the scenefit_worker resource when "
    "any has it; needs the Ray extra (requirements-ray.txt). Empty: render on this machine. Batch --ray overrides "
    "it.",
    "resume_settings": "'run': the checkpoint must match this run's specs, distribution kinds, objective and image "
    "size; 'checkpoint': take the checkpoint's own.",
}
SPEC_FIELDS = {
    "label": "Unique name of the parameter (1–{max_label} characters): the key in result.json and in the "
    "data-block's custom property 'scenefit'.",
    "id_type": "Type of the data-block that owns the property.",
    "id_name": "Name of that data-block, e.g. 'Cube'.",
    "data_path": "Python path of the property from the data-block, e.g. 'rotation_euler[2]', "
    "'data.energy', 'modifiers[\"Shape\"][\"Socket_1\"]'. It must name one scalar (number, on/off or enum).",
    "distribution": "The distribution of the property's values at the start of the run, one of the kinds "
    "below (chosen by 'kind').",
}
DISTRIBUTION_KEYS = {
    ("normal", "mu"): "Mean μ, in the property's units (radians for angles).",
    ("normal", "sigma"): "Standard deviation σ > 0.",
    ("lognormal", "mu"): "Mean of log x (the median of x is exp(mu)).",
    ("lognormal", "sigma"): "Standard deviation of log x, > 0.",
    ("truncnormal", "mu"): "μ of the parent normal before truncation; it may lie outside [low, high].",
    ("truncnormal", "sigma"): "σ > 0 of the parent normal.",
    ("truncnormal", "low"): "Lower bound (inclusive); low < high.",
    ("truncnormal", "high"): "Upper bound (inclusive).",
    ("truncnormal", "parent_mu"): "The parent's μ under the name results use (give mu or parent_mu).",
    ("truncnormal", "parent_sigma"): "The parent's σ under the name results use (give sigma or parent_sigma).",
    ("truncnormal", "mean"): "The truncated distribution's own mean, as results report it: derived from the "
    "parameters, it sets nothing and is accepted only when it agrees with them.",
    ("truncnormal", "std"): "The truncated distribution's own standard deviation, as results report it: "
    "derived, accepted only when it agrees with the parameters.",
    ("categorical", "choices"): "The values to choose among: numbers (or true/false) for a number or on/off "
    "property, item identifiers such as 'SUN' for an enum. Leave out (or empty) for an enum: all its items.",
    ("categorical", "probs"): "Starting probability of each choice, ≥ 0, summing to 1, as many as the choices. "
    "Leave out: uniform.",
    ("bernoulli", "p"): "Probability of on (true) in [0, 1].",
}
KIND_TITLES = {
    "normal": "Normal N(mu, sigma) in the property's units (panel: Normal).",
    "lognormal": "Log-normal: log x ~ N(mu, sigma), for positive values such as scales (panel: Log-normal).",
    "truncnormal": "Normal restricted to [low, high] (panel: Normal with Bounds). Give the parent normal's mu and "
    "sigma, or parent_mu and parent_sigma as result.json reports them (mean and std may come along).",
    "categorical": "One of a list of choices with learned probabilities (panel: Categorical).",
    "bernoulli": "On/off, true with probability p (panel: Bernoulli).",
}
FIXED = "true: sampled but not learned (panel: Learn unticked). Default false."
OPTIMIZER_FIELDS = {
    "objective": "How renders are compared with the targets: the energy distance of their pixels ('energy', the "
    "default), a discriminator ('adversarial'), a Wasserstein critic ('wgan-gp') or maximum mean discrepancy of "
    "image features ('mmd'). Batch --objective overrides it.",
    "estimator": "How rewards become gradients (score-function estimator); its settings are merged over the "
    "default's key by key.",
    "batch_size": "Not set here: the top-level batch_size is used.",
    "d_steps": "Discriminator/critic updates per step (0 trains nothing, as MMD needs).",
    "d_lr": "Adam learning rate of the discriminator/critic, > 0.",
    "d_betas": "Adam betas of the discriminator/critic, two numbers in [0, 1).",
    "param_lr": "Adam learning rate of the distribution parameters, > 0.",
    "param_betas": "Adam betas of the distribution parameters, two numbers in [0, 1).",
    "param_lr_half_life": "The parameter learning rate halves every this many parameter steps (> 0); null: constant.",
    "param_average": "Decay in [0, 1) of the running average of the parameters that is reported and written "
    "back (bias-corrected); null: report the current parameters.",
    "seed": "Not set here: the top-level seed is used.",
    "d_gap_max": "Update the discriminator only while D(real) − D(sim) is below this; null: always. Needs an "
    "objective with D(real)/D(sim) ({gap}).",
    "param_start_gap": "Start the parameter steps once D(real) − D(sim) first exceeds this; null: from the first "
    "step. Needs an objective with D(real)/D(sim) ({gap}).",
    "feature_extractor": "MMD image features: 'random-conv', 'pixels' or the path of a TorchScript file; null: "
    "the objective's default.",
    "coarse_to_fine": "Blur renders and targets alike at first by this fraction (0–0.5) of the image's shorter "
    "side, halving every coarse_half_life steps (a wide basin for starts far from the truth); null or 0: no such "
    "blur.",
    "coarse_half_life": "Steps (> 0) in which the coarse-to-fine blur halves.",
    "objective_options": "The objective's other settings, merged over the default's key by key.",
    "device": "Where the objective trains: 'auto' (CUDA when torch has a GPU, else the CPU), 'cpu' or 'cuda' "
    "(refused without a CUDA GPU). The distribution parameters always stay on the CPU; a checkpoint resumes on "
    "any device. Batch --device overrides it.",
}
# Run fields whose default depends on the rest of the configuration (described, no "default" in the schema).
RESOLVED_WHEN_LEFT_OUT = ("steps",)
ESTIMATOR_FIELDS = {
    "baseline": "Baseline subtracted from the rewards: 'per-property' leave-one-out, and for each property also "
    "what the other properties' draws explain of the reward (the default), 'loo' leave-one-out (mean of the other "
    "samples of the batch), 'ema' moving average of past rewards, 'none'.",
    "ema_init": "Starting value of the moving-average baseline; null: the first batch's mean reward.",
    "ema_new_weight": "Weight w in (0, 1] of a batch's mean in the moving average: b ← w·mean + (1 − w)·b.",
    "normalize_advantages": "Divide the advantages by their standard deviation within the batch.",
    "entropy_weight": "Weight (≥ 0) of an entropy bonus that keeps the distributions wide.",
    "min_scale": "Floor (≥ 0) of every learned σ (of log x for a log-normal), against collapse.",
}
OBJECTIVE_FIELDS = {
    "base_width": "Channels of the discriminator/critic's first layer (an integer ≥ 1).",
    "reward": "Adversarial reward: 'log_d' log D(x), 'prob' D(x), 'logit' log D(x) − log(1 − D(x)).",
    "gp_weight": "WGAN-GP gradient-penalty weight, ≥ 0.",
    "mmd_bandwidths": "MMD kernel bandwidths, multiples (> 0) of the median pairwise feature distance.",
    "input_blur": "Gaussian blur (σ in pixels, 0–8) of renders and targets alike before the objective compares "
    "them, throughout the run; hides a noise difference when the render samples cannot match the targets'.",
}
CLIP_FIELDS = {
    "frame_start": "First frame of a clip.",
    "frame_end": "Last frame (inclusive); not before frame_start.",
    "stride": "Render every stride-th frame (≥ 1).",
}


def load_package(root: Path = ROOT) -> str:
    """Import the source tree at ``root`` as a package; returns its name (``PACKAGE``)."""
    if PACKAGE not in sys.modules:
        import bpy  # noqa: F401  (the bpy module must be imported before the Blender layer)

        spec = importlib.util.spec_from_file_location(
            PACKAGE, root / "__init__.py", submodule_search_locations=[str(root)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return PACKAGE


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.addon.{name}")


def _names(table: dict[str, str], fields: list[str], what: str) -> None:
    if set(table) != set(fields):
        raise SystemExit(f"{what}: descriptions for {list(table)}, but the fields are {fields}: update {__file__}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def schema(package: str) -> dict[str, Any]:
    """The schema, from the modules of the imported extension package ``package`` (e.g. the installed one)."""
    config_module = _module(package, "blender.run.config")
    rna = _module(package, "blender.scene.rna")
    properties = _module(package, "blender.data.properties")
    distributions = _module(package, "engine.distributions")
    optimizer = _module(package, "engine.optimizer")
    objectives = _module(package, "engine.objectives")
    estimators = _module(package, "engine.estimators")
    vocabulary = _module(package, "engine.vocabulary")

    run_defaults = {f.name: f.default for f in dataclasses.fields(config_module.RunConfig)}
    _names(RUN_FIELDS, list(run_defaults), "RunConfig")
    _names(SPEC_FIELDS, [f.name for f in dataclasses.fields(config_module.SpecConfig)], "SpecConfig")
    default = optimizer.OptimizerConfig.default()
    _names(OPTIMIZER_FIELDS, [f.name for f in dataclasses.fields(optimizer.OptimizerConfig)], "OptimizerConfig")
    _names(ESTIMATOR_FIELDS, [f.name for f in dataclasses.fields(estimators.EstimatorConfig)], "EstimatorConfig")
    own = optimizer._OWN_OBJECTIVE_FIELDS
    options = [f.name for f in dataclasses.fields(objectives.ObjectiveConfig) if f.name not in own]
    _names(OBJECTIVE_FIELDS, options, "ObjectiveConfig (less lr, betas, feature_extractor)")
    _names(KIND_TITLES, list(distributions.KINDS), "distribution kinds")

    text = r"\S"  # at least one character that is not white space
    number, probability = {"type": "number"}, {"type": "number", "minimum": 0, "maximum": 1}
    scalar = {"type": ["number", "boolean"]}
    positive = {"type": "number", "exclusiveMinimum": 0}
    betas = {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}
    betas.update(minItems=2, maxItems=2)

    kinds: dict[str, Any] = {}
    for kind, cls in distributions.KINDS.items():
        keys = [*cls.required_keys, *cls.optional_keys, *cls.reported_keys, *cls.derived_keys]
        props: dict[str, Any] = {"kind": {"const": kind}}
        for key in keys:
            if key in ("sigma", "parent_sigma", "std"):
                props[key] = dict(positive) if key != "std" else {"type": "number", "minimum": 0}
            elif key == "p":
                props[key] = dict(probability)
            elif key == "probs":
                props[key] = {"type": "array", "items": {"type": "number", "minimum": 0}}
            elif key == "choices":
                # All item identifiers (an enum) or all numbers and on/off values (any other property).
                props[key] = {"type": "array", "anyOf": [{"items": {"type": "string"}}, {"items": scalar}]}
            else:
                props[key] = dict(number)
            props[key]["description"] = DISTRIBUTION_KEYS[(kind, key)]
        props["fixed"] = {"type": "boolean", "default": False, "description": FIXED}
        entry: dict[str, Any] = {
            "description": KIND_TITLES[kind],
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        # A categorical's choices and probs may be left out in a run configuration (enum items, uniform).
        required = [] if kind == "categorical" else list(cls.required_keys)
        alternatives = {key: reported for reported, key in cls.reported_keys.items()}
        entry["required"] = ["kind", *(key for key in required if key not in alternatives)]
        if alternatives:
            entry["allOf"] = [
                {"oneOf": [{"required": [key]}, {"required": [reported]}]} for key, reported in alternatives.items()
            ]
        kinds[kind] = entry

    distribution = {
        "description": SPEC_FIELDS["distribution"],
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": list(distributions.KINDS), "description": "The distribution's kind."}},
        "allOf": [
            {"if": {"properties": {"kind": {"const": kind}}}, "then": {"$ref": f"#/$defs/{kind}"}} for kind in kinds
        ],
    }
    spec = {
        "description": "One random property.",
        "type": "object",
        "required": list(SPEC_FIELDS),
        "additionalProperties": False,
        "properties": {
            "label": {
                "type": "string",
                "pattern": text,
                "maxLength": properties.MAX_LABEL,
                "description": SPEC_FIELDS["label"].format(max_label=properties.MAX_LABEL),
            },
            "id_type": {"enum": list(rna.ID_COLLECTIONS), "description": SPEC_FIELDS["id_type"]},
            "id_name": {"type": "string", "description": SPEC_FIELDS["id_name"]},
            "data_path": {"type": "string", "pattern": text, "description": SPEC_FIELDS["data_path"]},
            "distribution": {"$ref": "#/$defs/distribution"},
        },
    }

    objective_defaults = {**objectives.ObjectiveConfig().to_dict(), **default.objective_options}
    objective_options = {
        "type": "object",
        "additionalProperties": False,
        "description": OPTIMIZER_FIELDS["objective_options"],
        "properties": {
            "base_width": {"type": "integer", "minimum": 1},
            "reward": {"enum": list(objectives.REWARDS)},
            "gp_weight": {"type": "number", "minimum": 0},
            "mmd_bandwidths": {"type": "array", "items": positive, "minItems": 1},
            "input_blur": {"type": "number", "minimum": 0, "maximum": 8},
        },
    }
    for name, prop in objective_options["properties"].items():
        prop.update(description=OBJECTIVE_FIELDS[name], default=objective_defaults[name])

    estimator_defaults = default.estimator.to_dict()
    estimator = {
        "type": "object",
        "additionalProperties": False,
        "description": OPTIMIZER_FIELDS["estimator"],
        "properties": {
            "baseline": {"enum": list(vocabulary.BASELINES)},
            "ema_init": {"type": ["number", "null"]},
            "ema_new_weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "normalize_advantages": {"type": "boolean"},
            "entropy_weight": {"type": "number", "minimum": 0},
            "min_scale": {"type": "number", "minimum": 0},
        },
    }
    for name, prop in estimator["properties"].items():
        prop.update(description=ESTIMATOR_FIELDS[name], default=estimator_defaults[name])

    gap = list(vocabulary.GAP_OBJECTIVES)
    optimizer_defaults = default.to_dict()
    optimizer_props: dict[str, Any] = {
        "objective": {"enum": list(vocabulary.OBJECTIVES)},
        "estimator": {"$ref": "#/$defs/estimator"},
        "d_steps": {"type": "integer", "minimum": 0},
        "d_lr": positive,
        "d_betas": betas,
        "param_lr": positive,
        "param_betas": betas,
        "param_lr_half_life": _nullable(positive),
        "param_average": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 1},
        "d_gap_max": _nullable(number),
        "param_start_gap": _nullable(number),
        "feature_extractor": {"type": ["string", "null"], "pattern": text},
        "coarse_to_fine": {"type": ["number", "null"], "minimum": 0, "maximum": 0.5},
        "coarse_half_life": positive,
        "objective_options": {"$ref": "#/$defs/objective_options"},
        "device": {"enum": list(vocabulary.DEVICES)},
    }
    for name, prop in optimizer_props.items():
        if "$ref" not in prop:
            optimizer_props[name] = {
                **prop,
                "description": OPTIMIZER_FIELDS[name].format(gap=", ".join(gap)),
                "default": optimizer_defaults[name],
            }
    for name in ("batch_size", "seed"):  # run settings: OptimizerConfig fields that a configuration sets above
        optimizer_props[name] = {"not": {}, "description": OPTIMIZER_FIELDS[name]}
    # The gap settings need an objective in `gap`: the one given, else the default's.
    has_gap = {"properties": {"objective": {"enum": gap}}, "required": ["objective"]}
    if default.objective in gap:
        has_gap = {"properties": {"objective": {"enum": gap}}}
    optimizer_schema = {
        "type": "object",
        "additionalProperties": False,
        "description": RUN_FIELDS["optimizer"],
        "properties": {key: optimizer_props[key] for key in OPTIMIZER_FIELDS},
        "if": {"not": has_gap},
        "then": {"properties": {"d_gap_max": {"type": "null"}, "param_start_gap": {"type": "null"}}},
    }

    clip_defaults = {
        f.name: f.default for f in dataclasses.fields(_module(package, "blender.scene.clips").ClipSettings)
    }
    _names(CLIP_FIELDS, list(clip_defaults), "ClipSettings")
    clips = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "description": RUN_FIELDS["clips"],
        "default": None,
        "properties": {
            name: {
                "type": "integer",
                **({"minimum": 1} if name == "stride" else {}),
                "default": clip_defaults[name],
                "description": CLIP_FIELDS[name],
            }
            for name in CLIP_FIELDS
        },
    }

    run_props: dict[str, Any] = {
        "specs": {"type": "array", "items": {"$ref": "#/$defs/spec"}, "minItems": 1},
        "targets": {"type": "string"},
        "output_dir": {"type": "string"},
        "steps": {"type": ["integer", "null"], "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 2},
        "seed": {"type": "integer", "minimum": 0},
        "resolution": {
            "type": "array",
            "items": {"type": "integer", "minimum": 4, "maximum": 4096},
            "minItems": 2,
            "maxItems": 2,
        },
        "engine": {"enum": list(vocabulary.RENDER_ENGINES)},
        "samples": {"type": "integer", "minimum": 1},
        "channels": {"enum": [3, 4]},
        "optimizer": {"$ref": "#/$defs/optimizer"},
        "resume": {"type": "string"},
        "clips": {"$ref": "#/$defs/clips"},
        "checkpoint_steps": {"type": "integer", "minimum": 0},
        "checkpoint_seconds": {"type": "number", "minimum": 0.1, "maximum": 86400},
        "overwrite": {"type": "boolean"},
        "resume_settings": {"enum": list(config_module.RESUME_SETTINGS)},
        "workers": {"type": "integer", "minimum": 0, "maximum": config_module.MAX_WORKERS},
        "ray": {"type": "string"},
    }
    for name, prop in run_props.items():
        if "$ref" not in prop:
            prop["description"] = RUN_FIELDS[name]
            if run_defaults[name] is not dataclasses.MISSING and name not in RESOLVED_WHEN_LEFT_OUT:
                value = run_defaults[name]
                prop["default"] = list(value) if isinstance(value, tuple) else value
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "SceneFit run configuration",
        "description": "A SceneFit run as JSON (RunConfig): the file batch mode reads with --config and "
        'result.json stores under \'config\'. Presets (presets/*.json, "format": "scenefit-preset") are a '
        "different format, validated by SceneFit itself. Generated by tools/run_config_schema.py: edit the "
        "descriptions there. Not expressible here, checked when the run starts: unique labels, low < high, as "
        "many probs as choices and summing to 1, enum choices among the property's items, a truncated normal's "
        "mean and std agree with the parameters (when given), at least 2 clip frames, and integers written "
        "without a decimal point.",
        "type": "object",
        "required": ["specs"],
        "additionalProperties": False,
        "properties": run_props,
        "$defs": {
            "spec": spec,
            "distribution": distribution,
            **kinds,
            "optimizer": optimizer_schema,
            "estimator": estimator,
            "objective_options": objective_options,
            "clips": clips,
        },
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--check", action="store_true", help="exit 1 if the committed schema is out of date")
    args = parse.parse_args(argv)
    text = render(schema(load_package()))
    if args.check:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH.relative_to(ROOT)} is out of date: run tools/run_config_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(SCHEMA_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
