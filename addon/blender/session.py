"""A SceneFit run on the main thread: validate, snapshot, render samples, feed the training thread, write back,
restore.

``Session.step()`` does one short unit of work (render a few samples, hand finished batches to the training
thread, publish progress) and returns whether the run goes on; the UI calls it from a timer, batch mode in a
loop. The scene is restored exactly when the run ends, whichever way it ends: finished, stopped, failed or
interrupted. bpy is only touched here, on the caller's (main) thread; the training thread gets numpy arrays.
"""

from __future__ import annotations

import json
import math
import numbers
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import bpy

from ..engine import diagnostics
from ..engine.errors import (
    ConfigError,
    DistributionError,
    OutputError,
    SceneFitError,
    SpecError,
    TrainingError,
    cut,
    quote,
)
from ..engine.images import render_size
from ..engine.presets import recommended_steps
from . import clips, preferences, rna, writeback
from .clip_targets import load_clip_targets
from .properties import spec_label
from .render import ENGINES, RenderSettings, learned_probes, scene_output_size
from .report import RunReport
from .sampler import Sampler, bind
from .targets import TargetReport, load_targets
from .workers import InProcess, WorkerPool, open_renderer

# How often result.json is rewritten during a run at most (custom properties follow every parameter step).
RESULT_INTERVAL_S = 1.0
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
    # (workers.worker_count).
    workers: int = 1

    def __post_init__(self) -> None:
        self.specs = [s if isinstance(s, SpecConfig) else _spec_from_dict(s) for s in self.specs]
        if self.steps is None:
            self.steps = recommended_steps(sum(not s.distribution.get("fixed", False) for s in self.specs))
        for name in ("steps", "batch_size", "samples"):
            _check_int(name, getattr(self, name), 2 if name == "batch_size" else 1)
        _check_int("seed", self.seed, 0)
        _check_int("checkpoint_steps", self.checkpoint_steps, 0)
        _check_int("workers", self.workers, 0, MAX_WORKERS)
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
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {quote(self.engine)}")
        if self.channels not in (3, 4):
            raise ConfigError(f"channels must be 3 or 4, got {quote(self.channels)}")
        if not isinstance(self.optimizer, Mapping):
            raise ConfigError(f"optimizer must be a mapping of optimizer settings, got {quote(self.optimizer)}")
        for name in ("targets", "output_dir", "resume"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {quote(getattr(self, name))}")
        if self.clips is not None:
            self.clips = clips.ClipSettings.from_dict(self.clips).to_dict()

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
        from ..engine.optimizer import OptimizerConfig

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


class Session:
    """One run on one scene. ``start()`` validates everything before touching the scene; afterwards the scene is
    restored exactly however the run ends. ``on_step`` is called with each new history entry (batch prints it).
    The run's report (``report.RunReport``) goes to the output folder; ``truth``, when known (a preset's), is drawn
    on its parameter plot.
    """

    def __init__(
        self,
        scene: bpy.types.Scene,
        config: RunConfig,
        tick_seconds: float = 0.05,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        truth: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.scene = scene
        self.config = config
        self.tick_seconds = tick_seconds
        self.on_step = on_step
        self.truth = truth
        self.report: RunReport | None = None
        self.status = "new"  # new → running → finished | stopped | failed
        self.error: BaseException | None = None
        self.optimizer: Any = None
        self.target_report: TargetReport | None = None
        self.output_dir = Path(config.output_dir) if config.output_dir else None
        self.parameters: dict[str, writeback.Parameter] = {}
        self.renders = 0
        self.warnings: list[str] = []  # said once each, in the panel, the batch log and result.json
        self.render_settings: RenderSettings | None = None  # what training renders are made with, once started
        self.sampler: Sampler | None = None  # the run's, once started: it renders unless workers do
        self.renderer: InProcess | WorkerPool | None = None  # where samples go to be rendered, once started
        self._thread: Any = None
        self._batch: list[Any] = []
        self._images: dict[int, Any] = {}  # sample id → image, of the batch being rendered
        self._rendered: tuple[list[int], list[Any]] | None = None  # a rendered batch waiting to go to training
        self._batches_asked = 0
        self._reported = 0
        self._result_written_at = 0.0
        self._started_at = 0.0
        self._checkpoint_step: int | None = None  # the step of the last checkpoint this run wrote
        self._checkpoint_at = 0.0
        self.notes: list[str] = []  # what the run decided on its own (e.g. the checkpoint's settings taken)

    # ---- public ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Validate specs, targets, camera, torch, settings, a checkpoint to resume and the output folder (raising
        before anything changes), write a first checkpoint, then snapshot the scene, override the render settings
        and start the training thread. A failure after that restores the scene before it is raised."""
        if self.status != "new":
            raise ConfigError(f"this session was already started (status {self.status})")
        checkpoint = self._read_resume()
        config = self.config
        self.parameters, engine_space = self._bind_specs()
        settings = RenderSettings(config.resolution, config.engine, config.samples, config.channels)
        clip = clips.ClipSettings.from_dict(config.clips) if config.clips is not None else None
        bound = {label: parameter.bound for label, parameter in self.parameters.items()}
        Sampler(self.scene, bound, settings, clip).check()
        if not config.output_dir:
            raise ConfigError("no output folder given for result.json and the checkpoint")
        self._check_output_folder()
        if clip is None:
            targets, self.target_report = load_targets(config.targets, config.resolution, config.channels)
            native = self.target_report.native_size or scene_output_size(self.scene)
            settings = replace(settings, render_size=render_size(native, config.resolution))
        else:
            fps = clips.scene_fps(self.scene)
            size, channels = config.resolution, config.channels
            targets, self.target_report = load_clip_targets(config.targets, clip, fps, size, channels)
        sampler = Sampler(self.scene, bound, settings, clip)
        sampler.check()
        # Every learned property must change the picture: rendered across its range (and put back) before
        # anything is written or learned.
        sampler.probe(learned_probes(self.parameters, engine_space))
        self.render_settings = settings
        self.optimizer = self._make_optimizer(engine_space, targets, checkpoint)
        self._prepare_output_folder()
        self.report = RunReport(self.output_dir, targets, config.steps, self.truth)
        self._save_checkpoint()  # resumable from the first moment (a kill -9 before the first periodic one)
        self._write_result(self.optimizer.values())

        from ..engine.training import TrainingThread

        try:  # from here on the scene changes: whatever is raised, it is put back first
            self.sampler = sampler  # restored at the end (nothing to restore when workers render a snapshot)
            self.renderer = open_renderer(sampler, config.specs, config.workers)
            self._thread = TrainingThread(self.optimizer)
            self._thread.start()
            self._reported = len(self.optimizer.history)  # a resumed run reports only its own steps
            self._started_at = time.perf_counter()
            self.status = "running"
            self._progress(running=True, message=self.target_report.summary())
        except BaseException as error:
            self._end("failed", error)
            raise

    def step(self) -> bool:
        """One unit of work (at least one render, more while ``tick_seconds`` lasts). Returns False once the run
        has ended (it then has been finished and the scene restored). Errors end the run, restore the scene and
        propagate."""
        if self.status != "running":
            return False
        try:
            done = self._advance()
        except BaseException as error:
            self._end("stopped" if isinstance(error, KeyboardInterrupt) else "failed", error)
            raise
        if done:
            self.finish()
        return not done

    def finish(self) -> None:
        """End normally: wait for submitted batches to be learned, write results and the checkpoint, restore."""
        if self.status != "running":
            return
        try:
            self._thread.wait_idle()
        except BaseException as error:
            self._end("failed", error)
            raise
        self._end("finished", None)

    def stop(self) -> None:
        """End now: drop batches not yet learned, keep what was learned, write results, restore the scene."""
        if self.status == "running":
            self._end("stopped", None)

    def abandon(self, error: BaseException) -> None:
        """End a running session because of ``error``, raised outside it (a caller's bug, a signal): the results
        are written as far as they can be and the scene is restored; never raises."""
        if self.status == "running":
            self._end("stopped" if isinstance(error, KeyboardInterrupt) else "failed", error)

    def suspend(self) -> None:
        """Put the user's values and render settings back for a moment, e.g. while the .blend is saved mid-run (the
        file then holds them, not a sample); :meth:`resume` re-applies the run's values."""
        if self.status == "running":
            self.sampler.suspend()

    def resume(self) -> None:
        """Undo :meth:`suspend`: the sample and the training render settings are back."""
        if self.sampler is not None:
            self.sampler.resume()

    @property
    def result_path(self) -> Path | None:
        return self.output_dir / writeback.RESULT_FILE if self.output_dir else None

    @property
    def checkpoint_path(self) -> Path | None:
        return self.output_dir / writeback.CHECKPOINT_FILE if self.output_dir else None

    # ---- start ----------------------------------------------------------------------------------------------

    def _bind_specs(self) -> tuple[dict[str, writeback.Parameter], dict[str, dict[str, Any]]]:
        if not self.config.specs:
            raise ConfigError("no random properties: add at least one property to learn")
        parameters: dict[str, writeback.Parameter] = {}
        engine_space: dict[str, dict[str, Any]] = {}
        for spec, (label, bound) in zip(self.config.specs, bind(self.config.specs).items(), strict=True):
            engine, choices = engine_distribution(bound, spec.distribution)
            parameters[label] = writeback.Parameter(bound, str(engine.get("kind")), choices)
            engine_space[label] = engine
        return parameters, engine_space

    def _activate_torch(self) -> None:
        from ... import torch_vendor

        try:
            torch_vendor.activate(preferences.torch_status())
        except ModuleNotFoundError as error:
            raise SceneFitError(str(error)) from None

    def _read_resume(self) -> Any:
        """The checkpoint to resume from (None without one). With ``resume_settings="checkpoint"`` the run's specs
        (distribution kinds), objective and image size become the checkpoint's, each change noted in :attr:`notes`."""
        if not self.config.resume:
            return None
        self._activate_torch()
        from ..engine.optimizer import read_checkpoint

        checkpoint = read_checkpoint(self.config.resume)
        if self.config.resume_settings != "checkpoint":
            return checkpoint
        config = self.config
        saved = checkpoint.space.to_dict()
        specs = []
        for spec in config.specs:
            distribution = dict(spec.distribution)
            if spec.label in saved:
                distribution = dict(saved[spec.label])
                if distribution["kind"] == "categorical":
                    distribution.pop("choices", None)
                    if spec.distribution.get("choices") is not None:
                        distribution["choices"] = spec.distribution["choices"]
                if distribution["kind"] != spec.distribution.get("kind"):
                    said = spec.distribution.get("kind")
                    self.notes.append(f"{quote(spec.label)} {distribution['kind']} (the run said {said})")
            specs.append({**asdict(spec), "distribution": distribution})
        shape = checkpoint.image_shape
        height, width, channels = shape[-3:]
        changes: dict[str, Any] = {"specs": specs}
        if (width, height, channels) != (*config.resolution, config.channels):
            said = f"{config.resolution[0]}×{config.resolution[1]}×{config.channels}"
            self.notes.append(f"image size {width}×{height}×{channels} (the run said {said})")
            changes.update(resolution=(width, height), channels=channels)
        objective = checkpoint.config.objective
        if objective != self.config.optimizer_config().objective:
            self.notes.append(f"objective {objective} (the run said {self.config.optimizer_config().objective})")
        changes["optimizer"] = {**config.optimizer, "objective": objective}
        self.config = config.replace(**changes)
        return checkpoint

    def _make_optimizer(self, engine_space: dict[str, dict[str, Any]], targets: Any, checkpoint: Any) -> Any:
        self._activate_torch()
        from ..engine.distributions import ParameterSpace, distribution_from_dict
        from ..engine.optimizer import AskTellOptimizer

        distributions = {}
        for label, engine in engine_space.items():
            try:
                distributions[label] = distribution_from_dict(engine)
            except DistributionError as error:
                raise SpecError(f"{self.parameters[label].bound.culprit}: {error}") from None
        optimizer_config = self.config.optimizer_config()
        if checkpoint is None:
            return AskTellOptimizer(ParameterSpace(distributions), targets, optimizer_config)
        differences = _resume_differences(checkpoint, distributions, optimizer_config.objective, targets.shape[1:])
        if differences:
            raise ConfigError(
                f"checkpoint {cut(str(checkpoint.path))} does not match this run: {'; '.join(differences)} "
                "(change the run, or take the checkpoint's settings with --resume-settings checkpoint)"
            )
        return AskTellOptimizer.from_checkpoint(checkpoint, targets, optimizer_config.device)

    # ---- output folder --------------------------------------------------------------------------------------

    def _resumes_in_place(self) -> bool:
        return resumes_in_place(self.config)

    def _check_output_folder(self) -> None:
        check_output_folder(self.config)

    def _prepare_output_folder(self) -> None:
        """Create the folder; remove an earlier run's files (overwrite) or, resuming in place, its report pictures
        and any temporary file a killed run left."""
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            keep = {writeback.CHECKPOINT_FILE, writeback.RESULT_FILE} if self._resumes_in_place() else set()
            for path in run_files(self.output_dir):
                if path.name not in keep:
                    path.unlink(missing_ok=True)
        except OSError as error:
            folder = cut(str(self.output_dir))
            raise OutputError(f"cannot prepare the output folder {folder}: {_reason(error)}") from None

    # ---- running --------------------------------------------------------------------------------------------

    def _advance(self) -> bool:
        """Render until the tick's time is used up; True once every batch of the run has been learned.

        Batches are pipelined with a lag of exactly one: batch n+1 is drawn once batch n−1 has been learned and
        before batch n goes to training, so it renders while batch n trains and always comes from the parameters
        after batch n−1. Which batches the parameters have seen never depends on timing: a seed gives one run.
        """
        deadline = time.perf_counter() + self.tick_seconds
        while True:
            self._thread.raise_if_failed()
            if not self._batch:
                if not self._thread.wait_idle(timeout=max(0.0, deadline - time.perf_counter())):
                    self._publish()
                    return False
                if self._batches_asked < self.config.steps:
                    self._batch = self.optimizer.ask(self.config.batch_size)
                    self._batches_asked += 1
                    self._images = {}
                    for sample in self._batch:
                        self.renderer.submit(sample.id, self._scene_values(sample.values))
                if self._rendered is not None:
                    self._thread.submit(*self._rendered)
                    self._rendered = None
                if not self._batch:
                    idle = self._thread.wait_idle(timeout=self.tick_seconds)
                    self._publish()
                    return idle
            # Images arrive in any order (workers); the batch goes on in the order it was asked.
            for sample_id, image in self.renderer.collect(timeout=max(0.0, deadline - time.perf_counter())):
                self._images[sample_id] = image
                self.renders += 1
            for problem in self.renderer.problems:
                self._warn(problem)
            if len(self._images) == len(self._batch):
                images = [self._images[sample.id] for sample in self._batch]
                self._rendered = ([sample.id for sample in self._batch], images)
                self.report.batch(self._batches_asked, images, self.renders)
                self._batch, self._images = [], {}
            if time.perf_counter() >= deadline:
                self._publish()
                return False

    def _scene_values(self, values: Mapping[str, Any]) -> dict[str, rna.Value]:
        """A sample's engine values as scene values: a categorical's index stands for one of its choices."""
        scene_values = {}
        for label, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"the engine sampled the non-finite value {value} for {label!r}; run stopped")
            choices = self.parameters[label].choices
            scene_values[label] = choices[int(value)] if choices is not None else value
        return scene_values

    def _publish(self, final: bool = False) -> None:
        """Report new history entries, write back after parameter steps, checkpoint when one is due, update the
        progress shown in the UI. Writing result.json and the checkpoint at the end is :meth:`_end`'s."""
        new_entries = self.optimizer.history[self._reported :]
        self._reported += len(new_entries)
        for entry in new_entries:
            if self.on_step is not None:
                self.on_step(entry)
        objective = self.optimizer.config.objective
        if new_entries and diagnostics.saturated(self.optimizer.history, objective):
            self._warn(diagnostics.saturation_warning(objective))
        snapshot = self._thread.snapshot()
        if final or any(entry.get("param_step") for entry in new_entries):
            writeback.write_custom_properties(self.parameters, snapshot["values"])
        if not final:
            if new_entries and self._checkpoint_due():
                self._save_checkpoint()
                self._write_result(snapshot["values"])
            elif any(entry.get("param_step") for entry in new_entries):
                if time.perf_counter() - self._result_written_at >= RESULT_INTERVAL_S:
                    self._write_result(snapshot["values"])
        elapsed = time.perf_counter() - self._started_at
        self._progress(
            step=snapshot["step"],
            renders=self.renders,
            images_per_s=self.renders / elapsed if elapsed > 0 else 0.0,
            d_real=_number(snapshot.get("d_real")),
            d_sim=_number(snapshot.get("d_sim")),
            loss=_number(snapshot.get("d_loss")),
        )

    def _checkpoint_due(self) -> bool:
        done = self.optimizer.step - (self._checkpoint_step or 0)
        every = self.config.checkpoint_steps
        late = time.perf_counter() - self._checkpoint_at >= self.config.checkpoint_seconds
        return done > 0 and ((every > 0 and done >= every) or late)

    def _save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (the last good one stays when this fails: OutputError)."""
        path = self.checkpoint_path
        try:
            step = self.optimizer.save_checkpoint(path)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
            raise OutputError(f"cannot write the checkpoint {cut(str(path))}: {_reason(error, path.parent)}") from None
        self._checkpoint_step, self._checkpoint_at = step, time.perf_counter()

    def _write_result(self, values: Mapping[str, Any]) -> None:
        error = self.error
        shown = None
        if error is not None and not isinstance(error, KeyboardInterrupt):
            shown = cut(str(error) or type(error).__name__)
        document = writeback.result_document(
            self.parameters,
            values,
            list(self.optimizer.history),
            self.renders,
            time.perf_counter() - self._started_at if self._started_at else 0.0,
            "running" if self.status == "new" else self.status,
            {
                "steps": self.optimizer.step,
                "config": self.config.to_dict(),
                "targets": self.target_report.summary() if self.target_report else "",
                "checkpoint": writeback.CHECKPOINT_FILE if self._checkpoint_step is not None else None,
                "checkpoint_steps": self._checkpoint_step,
                "error": shown,
                "warnings": list(self.warnings),
            },
        )
        try:
            writeback.write_result(self.output_dir, document)
        except OSError as caught:
            raise OutputError(f"cannot write {cut(str(self.result_path))}: {_reason(caught)}") from None
        self._result_written_at = time.perf_counter()

    def _end(self, status: str, error: BaseException | None) -> None:
        """Stop training, write what was learned (checkpoint, then result.json, then the report, each on its own)
        and restore the scene whatever happens on the way. A failure to write is raised (after restoring) unless the
        run already ended for another reason; result.json then says "failed" and names the last good checkpoint."""
        self.status, self.error = status, error
        failures: list[Exception] = []

        def attempt(action: Callable[[], Any]) -> None:
            try:
                action()
            except Exception as caught:  # the scene is restored below in any case
                failures.append(caught)

        try:
            if self._thread is not None:
                attempt(self._thread.stop)
                attempt(lambda: self._publish(final=True))
            attempt(self._save_checkpoint)
            if failures and error is None:
                self.status, self.error = "failed", failures[0]
            attempt(lambda: self._write_result(self.optimizer.values()))
            if self.report is not None:
                attempt(lambda: self.report.finish(list(self.optimizer.history)))
        finally:
            problems = self.sampler.restore() if self.sampler else []
            self.sampler = None
            if self.renderer is not None:
                self.renderer.close()  # no worker outlives its run
                self.renderer = None
            message = {"finished": "Finished", "stopped": "Stopped"}.get(self.status, f"Failed: {cut(str(self.error))}")
            if failures and self.error is not failures[0]:
                message += f" — results not written: {cut(str(failures[0]))}"
            if problems:
                message += " — not restored: " + "; ".join(problems)
            if self.report is not None and self.report.problem:
                message += f" — {self.report.problem}"
            if self.warnings:
                message += " — " + "; ".join(self.warnings)
            self._progress(running=False, message=message)
        if failures and error is None:
            raise failures[0]

    def _warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)
            self._progress(message=f"Warning: {warning}")

    def _progress(self, **values: Any) -> None:
        wm = getattr(bpy.context, "window_manager", None)
        progress = getattr(wm, "scenefit_progress", None)
        if progress is None:
            return
        values.setdefault("steps", self.config.steps)
        for key, value in values.items():
            if isinstance(value, int) and not isinstance(value, bool):
                value = max(-MAX_INT, min(value, MAX_INT))  # the panel's counters are 32-bit
            setattr(progress, key, value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


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


def _reason(error: BaseException, folder: Path | None = None) -> str:
    """Why writing failed, in a few words: the OS's reason, "no space left on device" when the folder's disk is
    (nearly) full (torch.save says only "unexpected pos …"), else the first line of the message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    try:
        if folder is not None and shutil.disk_usage(folder).free < 1 << 20:
            return "No space left on device"
    except OSError:
        if folder is not None and not folder.is_dir():
            return "No such file or directory"
    text = str(error).strip().splitlines()
    return cut(text[0] if text else type(error).__name__)


def _resume_differences(checkpoint: Any, distributions: Mapping[str, Any], objective: str, shape: tuple) -> list[str]:
    """What a checkpoint was saved with that this run does not have: labels, distribution kinds, the objective, the
    image (or clip) size."""
    differences = []
    saved = checkpoint.space.distributions
    if list(saved) != list(distributions):
        differences.append(f"it learns {quote(list(saved))}, this run's specs are {quote(list(distributions))}")
    for label in saved:
        if label in distributions and saved[label].kind != distributions[label].kind:
            differences.append(f"{quote(label)} is {saved[label].kind} there, {distributions[label].kind} here")
    if checkpoint.config.objective != objective:
        differences.append(f"objective {checkpoint.config.objective} there, {objective} here")
    if tuple(checkpoint.image_shape) != tuple(shape):
        differences.append(f"images {_shape(checkpoint.image_shape)} there, {_shape(shape)} here")
    return differences


def _shape(shape: tuple) -> str:
    *frames, height, width, channels = shape
    size = f"{width}×{height}×{channels}"
    return f"{frames[0]} frames of {size}" if frames else size
