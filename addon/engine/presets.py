"""Declarative presets: JSON data (never code) naming a demo scene, its random properties and the run settings.

A preset is validated completely on load; every problem is a :class:`ConfigError` naming the file and the field
(``supershape_density.json: parameters[0].distribution: lognormal: sigma must be > 0, got -1``). The demo scene
is one of a closed vocabulary (:data:`SCENES`): the Blender layer holds one builder function per name, and a
preset only chooses the name and its options. Distributions use the engine's dict form
(:func:`~.distributions.distribution_from_dict`), imported only when a preset is loaded so that listing presets
never imports torch.

Schema (version 1)::

    {
      "format": "scenefit-preset", "version": 1,
      "name": "…", "description": "…",
      "scene": {"builder": "supershape", "options": {"resolution": [100, 100]}},
      "parameters": [
        {"label": "m1", "id_type": "OBJECT", "id_name": "Supershape", "data_path": "supershape.m1",
         "distribution": {"kind": "lognormal", "mu": 1.2, "sigma": 0.4},
         "truth": {"kind": "lognormal", "mu": 2.25, "sigma": 0.1}}
      ],
      "targets": {"count": 64, "seed": 1},
      "run": {"objective": "adversarial", "estimator": "ema", "batch_size": 64, "steps": 100, "seed": 0,
              "resolution": [64, 64], "render_engine": "BLENDER_WORKBENCH", "samples": 8,
              "clips": {"frame_start": 1, "frame_end": 57, "stride": 8}}
    }

``truth`` (optional per parameter) is the distribution the demo's target images are rendered from; ``targets``
says how many and with which seed, and is required when every parameter has a truth. ``run.clips`` (optional)
makes every sample and target a clip of those frames (physics presets); without it samples are still images.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, DistributionError
from .vocabulary import BASELINES, OBJECTIVES, RENDER_ENGINES

FORMAT = "scenefit-preset"
VERSION = 1
PRESET_DIR = Path(__file__).resolve().parents[2] / "presets"

PRIMITIVES = ("cube", "uv_sphere", "ico_sphere", "cone", "cylinder")
YAW_MESHES = ("car", "monkey", "cone", "cube")
_ID_TYPE = re.compile(r"^[A-Z][A-Z_]*$")


def default_baseline(objective: str) -> str:
    """The score-function baseline SceneFit picks for an objective (``OptimizerConfig.default``): per property
    with the energy distance, where it was measured to help (bench/README.md), leave-one-out with the others."""
    return "per-property" if objective == "energy" else "loo"


def recommended_steps(learned: int) -> int:
    """Steps of a run that leaves them out: 100 for one learned property and 50 more for each further one.

    Properties learned together share one reward per render, so each one's gradient carries the others' effect
    as noise; one that changes the image little next to another settles last. Measured on the independent
    scene with a sun's strength and a base colour's red channel (bench/README.md): the red's σ ended 1.48× the
    truth after 100 steps and 1.09× after 150 (median of 8 seeds, per-property baseline).
    """
    return 100 + 50 * max(0, learned - 1)


Check = Callable[[Any, str], Any]  # (value, field path) -> normalised value, or raise ConfigError


class _Field:
    def __init__(self, check: Check, default: Any = ..., required: bool | None = None) -> None:
        self.check = check
        self.default = default
        self.required = default is ... if required is None else required


# --- value checks ----------------------------------------------------------------------------------------------


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}" if where else problem)


def _child(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be a non-empty string, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, got {value!r}")
    return value


def _integer(low: int, high: int | None = None) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _fail(where, f"must be {bounds}, got {value}")
        return value

    return check


def _number(low: float, high: float) -> Check:
    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise _fail(where, f"must be a number between {low} and {high}, got {value!r}")
        return float(value)

    return check


def _one_of(options: Sequence[str]) -> Check:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise _fail(where, f"must be one of {list(options)}, got {value!r}")
        return value

    return check


def _pair(low: int, high: int) -> Check:
    def check(value: Any, where: str) -> tuple[int, int]:
        if not isinstance(value, list) or len(value) != 2:
            raise _fail(where, f"must be a list of two integers, got {value!r}")
        integer = _integer(low, high)
        return integer(value[0], f"{where}[0]"), integer(value[1], f"{where}[1]")

    return check


def _list_of(check: Check, min_length: int = 1, unique: bool = False) -> Check:
    def check_list(value: Any, where: str) -> tuple:
        if not isinstance(value, list) or len(value) < min_length:
            raise _fail(where, f"must be a list of at least {min_length} item(s), got {value!r}")
        items = tuple(check(item, f"{where}[{i}]") for i, item in enumerate(value))
        if unique and len(set(items)) != len(items):
            raise _fail(where, f"must not repeat items, got {value!r}")
        return items

    return check_list


def _id_type(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID_TYPE.match(value):
        raise _fail(where, f"must be a data-block type such as 'OBJECT' or 'MATERIAL', got {value!r}")
    return value


def _distribution(value: Any, where: str) -> dict[str, Any]:
    from .distributions import distribution_from_dict

    try:
        distribution_from_dict(value)
    except DistributionError as error:
        raise _fail(where, str(error)) from None
    return dict(value)


def _section(schema: Mapping[str, _Field]) -> Check:
    """A JSON object with exactly the keys of ``schema`` (optional ones filled with their defaults)."""

    def check(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object {{…}}, got {value!r}")
        unknown = sorted(set(value) - set(schema))
        if unknown:
            raise _fail(_child(where, unknown[0]), f"unknown field; known fields here: {sorted(schema)}")
        result = {}
        for name, spec in schema.items():
            if name in value:
                result[name] = spec.check(value[name], _child(where, name))
            elif spec.required:
                raise _fail(_child(where, name), "missing required field")
            elif spec.default is not ...:
                result[name] = spec.default
        return result

    return check


# --- schema ----------------------------------------------------------------------------------------------------

_NAME = _Field(_string)

SCENES: dict[str, dict[str, _Field]] = {
    # A supershape at the origin, seen by a camera from the front (blendtorch's densityopt scene).
    "supershape": {"name": _Field(_string, "Supershape"), "resolution": _Field(_pair(4, 2000), (100, 100))},
    # One asymmetric mesh on a floor, seen from above-front, so its yaw (rotation_euler[2]) is visible.
    "yaw_object": {"name": _Field(_string, "YawObject"), "mesh": _Field(_one_of(YAW_MESHES), "monkey")},
    # One object whose Geometry Nodes modifier input "Shape" picks one of the primitives (an integer index).
    "primitive_choice": {
        "name": _Field(_string, "Primitive"),
        "primitives": _Field(_list_of(_one_of(PRIMITIVES), 2, unique=True), ("cube", "uv_sphere", "cone")),
    },
    # A rigid-body ball dropped from ``height`` (m, its centre) on a passive floor, seen from the side; with
    # ``launch_frames`` > 0 it also gets a sampled initial velocity (custom property ["initial_velocity"]).
    "bouncing_ball": {
        "name": _Field(_string, "Ball"),
        "height": _Field(_number(0.5, 10.0), 2.0),
        "restitution": _Field(_number(0.0, 1.0), 0.5),
        "launch_frames": _Field(_integer(0, 24), 0),
    },
}

_PARAMETER = _section(
    {
        "label": _NAME,
        "id_type": _Field(_id_type),
        "id_name": _NAME,
        "data_path": _NAME,
        "distribution": _Field(_distribution),
        "truth": _Field(_distribution, None),
    }
)
_TARGETS = _section({"count": _Field(_integer(1, 100_000)), "seed": _Field(_integer(0), 0)})


def _clips(value: Any, where: str) -> dict[str, int]:
    """Clip samples: frames ``frame_start``…``frame_end`` every ``stride`` frames, at least two of them."""
    clips = _section(
        {"frame_start": _Field(_integer(0)), "frame_end": _Field(_integer(0)), "stride": _Field(_integer(1), 1)}
    )(value, where)
    if len(range(clips["frame_start"], clips["frame_end"] + 1, clips["stride"])) < 2:
        raise _fail(
            where,
            f"frames {clips['frame_start']}–{clips['frame_end']} every {clips['stride']} give fewer than 2 frames",
        )
    return clips


_RUN = _section(
    {
        "objective": _Field(_one_of(OBJECTIVES)),
        "estimator": _Field(_one_of(BASELINES), None),  # None: the objective's own default
        "batch_size": _Field(_integer(2, 1024)),
        "steps": _Field(_integer(1)),
        "seed": _Field(_integer(0), 0),
        "resolution": _Field(_pair(16, 512), (64, 64)),
        "render_engine": _Field(_one_of(RENDER_ENGINES), "BLENDER_WORKBENCH"),
        "samples": _Field(_integer(1, 4096), 8),
        "clips": _Field(_clips, None),
    }
)


def _scene(value: Any, where: str) -> dict[str, Any]:
    head = _section({"builder": _Field(_one_of(tuple(SCENES))), "options": _Field(lambda v, w: v, {})})(value, where)
    head["options"] = _section(SCENES[head["builder"]])(head["options"], _child(where, "options"))
    return head


def _parameters(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    parameters = _list_of(_PARAMETER)(value, where)
    seen: set[str] = set()
    for i, parameter in enumerate(parameters):
        if parameter["label"] in seen:
            raise _fail(f"{where}[{i}].label", f"repeats the label {parameter['label']!r}")
        seen.add(parameter["label"])
    return parameters


def _version(value: Any, where: str) -> int:
    if value != VERSION:
        raise _fail(where, f"this SceneFit reads preset version {VERSION}, got {value!r}")
    return value


def _format(value: Any, where: str) -> str:
    if value != FORMAT:
        raise _fail(where, f"must be {FORMAT!r} (is this a SceneFit preset?), got {value!r}")
    return value


_PRESET = _section(
    {
        "format": _Field(_format),
        "version": _Field(_version),
        "name": _NAME,
        "description": _Field(_text, ""),
        "scene": _Field(_scene),
        "parameters": _Field(_parameters),
        "targets": _Field(_TARGETS, None),
        "run": _Field(_RUN),
    }
)


# --- the preset ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetParameter:
    label: str
    id_type: str
    id_name: str
    data_path: str
    distribution: dict[str, Any]
    truth: dict[str, Any] | None = None


@dataclass(frozen=True)
class Preset:
    """A validated preset. ``scene_options`` has every option of the builder, defaults filled in."""

    name: str
    description: str
    path: Path | None
    scene_builder: str
    scene_options: dict[str, Any]
    parameters: tuple[PresetParameter, ...]
    run: dict[str, Any]
    targets: dict[str, Any] | None = None

    def space(self) -> dict[str, dict[str, Any]]:
        """Label → starting distribution, the form ``ParameterSpace.from_dict`` takes."""
        return {p.label: dict(p.distribution) for p in self.parameters}

    def truth(self) -> dict[str, dict[str, Any]] | None:
        """Label → ground-truth distribution when every parameter has one, else None."""
        if any(p.truth is None for p in self.parameters):
            return None
        return {p.label: dict(p.truth) for p in self.parameters}


def preset_from_dict(data: Any, source: str = "preset", path: Path | None = None) -> Preset:
    """Validate a parsed preset; ``source`` (the file name) starts every error message."""
    try:
        return _preset(data, path)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def _preset(data: Any, path: Path | None) -> Preset:
    _reject_non_finite(data, "")
    checked = _PRESET(data, "")
    parameters = tuple(PresetParameter(**p) for p in checked["parameters"])
    has_truth = all(p.truth is not None for p in parameters)
    if has_truth and checked["targets"] is None:
        raise _fail("targets", "missing: every parameter has a truth, so say how many targets to render")
    if checked["targets"] is not None and not has_truth:
        missing = [p.label for p in parameters if p.truth is None]
        raise _fail("targets", f"targets are rendered from the truth, but {missing} have none")
    return Preset(
        name=checked["name"],
        description=checked["description"],
        path=path,
        scene_builder=checked["scene"]["builder"],
        scene_options=checked["scene"]["options"],
        parameters=parameters,
        run=checked["run"],
        targets=checked["targets"],
    )


def load_preset(path: Path | str) -> Preset:
    """Read and validate one preset file (ConfigError naming the file and the field on any problem)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: preset file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the preset: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path.name}: not valid JSON: {error}") from None
    return preset_from_dict(data, path.name, path)


def _reject_non_finite(value: Any, where: str) -> None:
    # json.loads accepts NaN and Infinity, which JSON itself does not have.
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, f"must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, _child(where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_non_finite(item, f"{where}[{i}]")


def preset_paths(folder: Path | str = PRESET_DIR) -> list[Path]:
    """The preset files shipped in ``folder``, sorted by file name."""
    return sorted(Path(folder).glob("*.json"))


def preset_titles(folder: Path | str = PRESET_DIR) -> list[tuple[str, str, str]]:
    """(file stem, name, description) of each preset, read without validating (for menus; never imports torch).
    Unreadable files are listed with the problem as their description, so a menu can still show them."""
    titles = []
    for path in preset_paths(folder):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            name, description = str(data.get("name", path.stem)), str(data.get("description", ""))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
            name, description = path.stem, f"unreadable preset: {error}"
        titles.append((path.stem, name, description))
    return titles
