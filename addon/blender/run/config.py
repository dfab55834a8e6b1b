"""One run's configuration: :class:`RunConfig` (with :class:`SpecConfig` per random property) and its
conversions — from the scene's settings, a preset, a JSON file or a mapping, to the engine's optimizer config —
validated in one place. Runs, data sets, the batch entry and the panel all read it."""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import bpy

from ...engine.errors import (
    ConfigError,
    SpecError,
    cut,
    quote,
)
from ...engine.presets import recommended_steps
from ...engine.vocabulary import RENDER_ENGINES
from ..data import preferences
from ..data.properties import spec_label
from ..scene import clips, rna
from . import writeback

# The largest count a setting may hold: Blender's integer properties (and the progress shown) are 32-bit.
MAX_INT = 2**31 - 1


# resume_settings: "run" — the checkpoint must match this run's specs, kinds, objective and image size;
# "checkpoint" — take the checkpoint's own (said in Session.notes).
RESUME_SETTINGS = ("run", "checkpoint")


MAX_WORKERS = 256  # render processes a run may start


# The files a run writes into its output folder (a folder holding any of them holds a run).
RUN_FILES = ("result.json", "checkpoint.pt", "targets.png", "parameters.png", "losses.png", "progress.gif")


RUN_FILE_PATTERNS = ("samples_*.png", "*.tmp")


@dataclass
class SpecConfig:
    """A random property in plain form. ``distribution`` is an engine distribution dict (see
    ``engine.distributions``); a categorical's ``choices`` may also be enum identifiers, and may be left out for
    an enum property (all of its items)."""

    label: str
    id_type: str
    id_name: str
    data_path: str
    distribution: dict[str, Any]


@dataclass
class RunConfig:
    """Everything a run needs, JSON round-trippable: the format of batch ``--config`` files and presets.

    steps: optimization steps this run takes (a resumed run continues counting from its checkpoint); left out,
    ``engine.presets.recommended_steps`` of its learned (not fixed) specs — 100 for one, 50 more per further one.
    optimizer: OptimizerConfig fields overriding SceneFit's defaults (objective, estimator, learning rates…);
    batch_size and seed come from this config. resolution is (width, height). resume: a checkpoint file or "".
    """

    specs: list[SpecConfig]
    targets: str = ""
    output_dir: str = ""
    steps: int | None = None
    batch_size: int = 16
    seed: int = 0
    resolution: tuple[int, int] = (64, 64)
    engine: str = "CYCLES"
    samples: int = 8
    channels: int = 3
    optimizer: dict[str, Any] = field(default_factory=dict)
    resume: str = ""
    clips: dict[str, int] | None = None  # clip samples: {"frame_start", "frame_end", "stride"}; None: still images
    # A checkpoint is written every checkpoint_steps steps (0: by time only) and after checkpoint_seconds at most.
    checkpoint_steps: int = 0
    checkpoint_seconds: float = 30.0
    overwrite: bool = False  # replace the run already in output_dir (else such a folder is refused)
    resume_settings: str = "run"  # see RESUME_SETTINGS
    # Render processes (workers.WorkerPool): 1 renders in this process; 0: what fits the machine
    # (workers.worker_count: one per two cores, in the UI at least two).
    workers: int = 0
    # Batch only: the Ray cluster (HOST:PORT or "auto") whose actors render, `workers` of them (0: what it has room
    # for; ray_workers.RayPool); "": workers on this machine.
    ray: str = ""

    def __post_init__(self) -> None:
        self.specs = [s if isinstance(s, SpecConfig) else _spec_from_dict(s) for s in self.specs]
        if self.steps is None:
            self.steps = recommended_steps(sum(not s.distribution.get("fixed", False) for s in self.specs))
        for name in ("steps", "batch_size", "samples"):
            _check_int(name, getattr(self, name), 2 if name == "batch_size" else 1)
        _check_int("seed", self.seed, 0)
        _check_int("checkpoint_steps", self.checkpoint_steps, 0)
        _check_int("workers", self.workers, 0, MAX_WORKERS)
        if not isinstance(self.ray, str):
            raise ConfigError(f'ray must be a Ray cluster address (HOST:PORT or auto) or "", got {quote(self.ray)}')
        seconds = self.checkpoint_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not 0.1 <= seconds <= 86400:
            raise ConfigError(f"checkpoint_seconds must be a number of seconds in 0.1–86400, got {quote(seconds)}")
        self.checkpoint_seconds = float(seconds)
        if not isinstance(self.overwrite, bool):
            raise ConfigError(f"overwrite must be true or false, got {quote(self.overwrite)}")
        if self.resume_settings not in RESUME_SETTINGS:
            known = ", ".join(RESUME_SETTINGS)
            raise ConfigError(f"resume_settings must be one of {known}, got {quote(self.resume_settings)}")
        if (
            not isinstance(self.resolution, (list, tuple))
            or len(self.resolution) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 4096 for v in self.resolution)
        ):
            raise ConfigError(f"resolution must be [width, height] in pixels (4–4096), got {quote(self.resolution)}")
        self.resolution = (int(self.resolution[0]), int(self.resolution[1]))
        if self.engine not in RENDER_ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(RENDER_ENGINES)}, got {quote(self.engine)}")
        if self.channels not in (3, 4):
            raise ConfigError(f"channels must be 3 or 4, got {quote(self.channels)}")
        if not isinstance(self.optimizer, Mapping):
            raise ConfigError(f"optimizer must be a mapping of optimizer settings, got {quote(self.optimizer)}")
        for name in ("targets", "output_dir", "resume"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {quote(getattr(self, name))}")
        if self.clips is not None:
            self.clips = clips.ClipSettings.from_dict(self.clips).to_dict()

    @property
    def clip(self) -> clips.ClipSettings | None:
        """The clip settings as the renderers take them; None for still images."""
        return clips.ClipSettings.from_dict(self.clips) if self.clips is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["resolution"] = list(self.resolution)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a run configuration must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(key) for key in set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown run setting(s) {quote(unknown)}; known: {[f.name for f in fields(cls)]}")
        if not isinstance(data.get("specs"), list):
            raise ConfigError("a run configuration needs 'specs': a list of random properties")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read run configuration {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"run configuration {path} is not UTF-8 text (byte {error.start})") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"run configuration {path} is not valid JSON: {error}") from None
        except RecursionError:
            raise ConfigError(f"run configuration {path} is nested too deeply to be a run configuration") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def optimizer_config(self) -> Any:
        """The run's ``engine.optimizer.OptimizerConfig`` (needs torch): SceneFit's defaults for the run's objective
        (``OptimizerConfig.default(objective=…)``) with ``optimizer``'s settings over them — ``estimator`` and
        ``objective_options`` merged key by key — and this config's batch_size and seed. ConfigError names a bad
        setting."""
        from ...engine.optimizer import OptimizerConfig

        overrides = dict(self.optimizer)
        default = OptimizerConfig.default(**{k: v for k, v in overrides.items() if k == "objective"})
        misplaced = sorted({"batch_size", "seed"} & set(overrides))
        if misplaced:
            raise ConfigError(
                f"optimizer: {misplaced} are run settings: set them at the top level of the configuration"
            )
        for name, base in (
            ("estimator", default.estimator.to_dict()),
            ("objective_options", default.objective_options),
        ):
            if isinstance(overrides.get(name), Mapping):
                overrides[name] = {**base, **overrides[name]}
        return OptimizerConfig.from_dict(
            {**default.to_dict(), **overrides, "batch_size": self.batch_size, "seed": self.seed}
        )

    @classmethod
    def from_preset(cls, preset: Any) -> RunConfig:
        """The run a validated preset (``engine.presets.Preset``) describes; targets and output come from the
        caller."""
        run = preset.run
        return cls(
            specs=[
                SpecConfig(p.label, p.id_type, p.id_name, p.data_path, dict(p.distribution)) for p in preset.parameters
            ],
            steps=run["steps"],
            batch_size=run["batch_size"],
            seed=run["seed"],
            resolution=tuple(run["resolution"]),
            engine=run["render_engine"],
            samples=run["samples"],
            optimizer={
                "objective": run["objective"],
                **({"estimator": {"baseline": run["estimator"]}} if run["estimator"] else {}),
            },
            clips=run.get("clips"),
        )

    @classmethod
    def from_scene(cls, scene: bpy.types.Scene) -> RunConfig:
        """The run described by ``scene.scenefit`` (paths made absolute; the output folder defaults to the
        add-on preferences' folder, then to the extension's user folder)."""
        settings = scene.scenefit
        output = settings.output_dir or preferences.preferences().output_dir
        output_dir = bpy.path.abspath(output) if output else str(preferences.user_dir() / "runs" / scene.name)
        return cls(
            specs=[_spec_from_property(spec) for spec in settings.specs],
            targets=bpy.path.abspath(settings.targets) if settings.targets else "",
            output_dir=output_dir,
            steps=settings.steps,
            batch_size=settings.batch_size,
            seed=settings.seed,
            resolution=(settings.resolution_x, settings.resolution_y),
            engine=settings.render_engine,
            samples=settings.samples,
            optimizer={
                "objective": settings.objective,
                "estimator": {"baseline": settings.estimator},
                "device": settings.device,
            },
            resume=bpy.path.abspath(settings.resume) if settings.resume else "",
            clips=(
                clips.ClipSettings(settings.clip_frame_start, settings.clip_frame_end, settings.clip_stride).to_dict()
                if settings.use_clips
                else None
            ),
            checkpoint_steps=settings.checkpoint_steps,
            checkpoint_seconds=settings.checkpoint_seconds,
            workers=settings.workers,
        )

    def in_free_folder(self) -> RunConfig:
        """This run, in a folder of its own: the output folder itself when it holds no run (or this run continues
        the run there), else a new sub-folder ``run-<date>-<time>`` of it (what the panel's runs do)."""
        output = Path(self.output_dir)
        if self.overwrite or resumes_in_place(self) or not run_files(output):
            return self
        stamp = time.strftime("run-%Y%m%d-%H%M%S")
        folder, n = output / stamp, 1
        while folder.exists():
            n += 1
            folder = output / f"{stamp}-{n}"
        return self.replace(output_dir=str(folder))


def _check_int(name: str, value: Any, minimum: int, maximum: int = MAX_INT) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum} (at most {maximum}), got {quote(value)}")


def _spec_from_dict(data: Any) -> SpecConfig:
    names = [f.name for f in fields(SpecConfig)]
    if not isinstance(data, Mapping) or set(data) != set(names):
        raise ConfigError(f"each spec needs exactly the keys {names}, got {quote(data)}")
    for name in names[:-1]:
        if not isinstance(data[name], str):
            raise ConfigError(f"spec {quote(data['label'])}: {name} must be a string, got {quote(data[name])}")
    if not isinstance(data["distribution"], Mapping):
        got = quote(data["distribution"])
        raise ConfigError(f"spec {quote(data['label'])}: distribution must be a mapping, got {got}")
    return SpecConfig(**{**data, "distribution": dict(data["distribution"])})


def _parse_list(text: str) -> list[Any]:
    def parse(item: str) -> Any:
        for kind in (int, float):
            try:
                return kind(item)
            except ValueError:
                continue
        return {"true": True, "false": False}.get(item.lower(), item)

    return [parse(item.strip()) for item in text.split(",") if item.strip()]


def _spec_from_property(spec: Any) -> SpecConfig:
    label = spec_label(spec)
    fixed = not spec.learn
    if spec.distribution == "NORMAL":
        distribution = {"kind": "normal", "mu": spec.mu, "sigma": spec.sigma}
        if spec.use_bounds:
            distribution.update(kind="truncnormal", low=spec.low, high=spec.high)
    elif spec.distribution == "LOGNORMAL":
        distribution = {"kind": "lognormal", "mu": spec.mu, "sigma": spec.sigma}
    elif spec.distribution == "CATEGORICAL":
        distribution = {"kind": "categorical", "choices": _parse_list(spec.choices)}
        if spec.probs.strip():
            distribution["probs"] = _parse_list(spec.probs)
    else:
        distribution = {"kind": "bernoulli", "p": spec.p}
    distribution["fixed"] = fixed
    return SpecConfig(label, spec.id_type, spec.id_name, spec.data_path, distribution)


def engine_distribution(
    bound: rna.BoundProperty, distribution: Mapping[str, Any]
) -> tuple[dict[str, Any], list | None]:
    """The engine's distribution dict for a spec, and for categoricals the scene values its indices stand for.

    Checks that the distribution suits the property (enums need a categorical over their identifiers, booleans
    a Bernoulli or categorical) and that bounds are ordered; raises :class:`SpecError` naming the spec.
    """
    kind = distribution.get("kind")
    where = bound.culprit
    if bound.value_type == "enum" and kind != "categorical":
        raise SpecError(f"{where}: an enum property needs a Categorical distribution over its items, not {kind!r}")
    if bound.value_type == "bool" and kind not in ("bernoulli", "categorical"):
        raise SpecError(f"{where}: an on/off property needs a Bernoulli or Categorical distribution, not {kind!r}")
    if kind == "truncnormal" and not _below(distribution.get("low"), distribution.get("high")):
        raise SpecError(
            f"{where}: bounds low={distribution.get('low')!r} ≥ high={distribution.get('high')!r}; low must be "
            "below high"
        )
    if kind != "categorical":
        return dict(distribution), None
    choices = list(distribution.get("choices") or ())
    if not choices:
        if bound.value_type != "enum":
            raise SpecError(f"{where}: a Categorical distribution needs its choices, e.g. 1, 2, 4")
        choices = list(bound.enum_items)
    for choice in choices:
        if bound.value_type == "enum" and choice not in bound.enum_items:
            raise SpecError(f"{where}: choice {choice!r} is not one of {', '.join(bound.enum_items)}")
        if bound.value_type != "enum" and (isinstance(choice, str) or not math.isfinite(float(choice))):
            raise SpecError(f"{where}: choice {choice!r} is not a number")
    probs = distribution.get("probs") or [1.0 / len(choices)] * len(choices)
    if not isinstance(probs, list) or len(probs) != len(choices):
        raise SpecError(f"{where}: {len(choices)} choices need {len(choices)} probabilities, got {probs!r}")
    engine = {k: v for k, v in distribution.items() if k != "choices"}
    return {**engine, "probs": probs}, choices


def _below(low: Any, high: Any) -> bool:
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (low, high))
    return numeric and low < high


def resumes_in_place(config: RunConfig) -> bool:
    """Whether the run continues the checkpoint of the run in its own output folder."""
    output = Path(config.output_dir)
    return bool(config.resume) and Path(config.resume).resolve() == (output / writeback.CHECKPOINT_FILE).resolve()


def check_output_folder(config: RunConfig) -> None:
    """Refuse an output folder that holds another run, unless ``overwrite`` or the run resumes that run's checkpoint
    (ConfigError, before anything is written)."""
    output = Path(config.output_dir)
    if config.overwrite or resumes_in_place(config):
        return
    found = run_files(output)
    if found:
        names = ", ".join(sorted(p.name for p in found)[:4]) + (", …" if len(found) > 4 else "")
        raise ConfigError(
            f"output folder {cut(str(output))} already holds a run ({names}): give another output folder, "
            f"overwrite it (--overwrite), or continue it (--resume {output / writeback.CHECKPOINT_FILE})"
        )


def run_files(folder: Path) -> list[Path]:
    """The files of a SceneFit run in ``folder`` (result.json, checkpoint.pt, report pictures, temporary files)."""
    if not folder.is_dir():
        return []
    found = {folder / name for name in RUN_FILES if (folder / name).exists()}
    for pattern in RUN_FILE_PATTERNS:
        found.update(path for path in folder.glob(pattern) if path.is_file())
    return sorted(found)
