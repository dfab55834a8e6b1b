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
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import bpy

from ..engine import diagnostics
from ..engine.errors import ConfigError, DistributionError, SceneFitError, SpecError, TrainingError
from ..engine.images import render_size
from . import clips, preferences, rna, writeback
from .clip_targets import load_clip_targets
from .properties import MAX_LABEL, spec_label
from .render import ENGINES, RenderOverride, RenderSettings, learned_probes, scene_output_size
from .report import RunReport
from .targets import TargetReport, load_targets

# How often result.json is rewritten during a run at most (custom properties follow every parameter step).
RESULT_INTERVAL_S = 1.0


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

    steps: optimization steps this run takes (a resumed run continues counting from its checkpoint).
    optimizer: OptimizerConfig fields overriding SceneFit's defaults (objective, estimator, learning rates…);
    batch_size and seed come from this config. resolution is (width, height). resume: a checkpoint file or "".
    """

    specs: list[SpecConfig]
    targets: str = ""
    output_dir: str = ""
    steps: int = 100
    batch_size: int = 16
    seed: int = 0
    resolution: tuple[int, int] = (64, 64)
    engine: str = "CYCLES"
    samples: int = 8
    channels: int = 3
    optimizer: dict[str, Any] = field(default_factory=dict)
    resume: str = ""
    clips: dict[str, int] | None = None  # clip samples: {"frame_start", "frame_end", "stride"}; None: still images

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "samples"):
            _check_int(name, getattr(self, name), 2 if name == "batch_size" else 1)
        _check_int("seed", self.seed, 0)
        if (
            not isinstance(self.resolution, (list, tuple))
            or len(self.resolution) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 4096 for v in self.resolution)
        ):
            raise ConfigError(f"resolution must be [width, height] in pixels (4–4096), got {self.resolution!r}")
        self.resolution = (int(self.resolution[0]), int(self.resolution[1]))
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.channels not in (3, 4):
            raise ConfigError(f"channels must be 3 or 4, got {self.channels!r}")
        if not isinstance(self.optimizer, Mapping):
            raise ConfigError(f"optimizer must be a mapping of optimizer settings, got {self.optimizer!r}")
        for name in ("targets", "output_dir", "resume"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        self.specs = [s if isinstance(s, SpecConfig) else _spec_from_dict(s) for s in self.specs]
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
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown run setting(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        if not isinstance(data.get("specs"), list):
            raise ConfigError("a run configuration needs 'specs': a list of random properties")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read run configuration {path}: {error.strerror}") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"run configuration {path} is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def optimizer_config(self) -> Any:
        """The run's ``engine.optimizer.OptimizerConfig`` (needs torch): SceneFit's defaults
        (``OptimizerConfig.default()``) with ``optimizer``'s settings over them — ``estimator`` and
        ``objective_options`` merged key by key — and this config's batch_size and seed. ConfigError names a bad
        setting."""
        from ..engine.optimizer import OptimizerConfig

        default = OptimizerConfig.default()
        overrides = dict(self.optimizer)
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
            optimizer={"objective": run["objective"], "estimator": {"baseline": run["estimator"]}},
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
            optimizer={"objective": settings.objective, "estimator": {"baseline": settings.estimator}},
            resume=bpy.path.abspath(settings.resume) if settings.resume else "",
            clips=(
                clips.ClipSettings(settings.clip_frame_start, settings.clip_frame_end, settings.clip_stride).to_dict()
                if settings.use_clips
                else None
            ),
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _spec_from_dict(data: Any) -> SpecConfig:
    names = [f.name for f in fields(SpecConfig)]
    if not isinstance(data, Mapping) or set(data) != set(names):
        raise ConfigError(f"each spec needs exactly the keys {names}, got {data!r}")
    for name in names[:-1]:
        if not isinstance(data[name], str):
            raise ConfigError(f"spec {data['label']!r}: {name} must be a string, got {data[name]!r}")
    if not isinstance(data["distribution"], Mapping):
        raise ConfigError(f"spec {data['label']!r}: distribution must be a mapping, got {data['distribution']!r}")
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
        self._thread: Any = None
        self._renderer: RenderOverride | None = None
        self._saved: list[tuple[rna.BoundProperty, rna.Value]] = []
        self._suspended: tuple[list[tuple[rna.BoundProperty, rna.Value]], list[tuple[Any, str, Any]]] | None = None
        self._batch: list[Any] = []
        self._images: list[Any] = []
        self._rendered: tuple[list[int], list[Any]] | None = None  # a rendered batch waiting to go to training
        self._batches_asked = 0
        self._reported = 0
        self._result_written_at = 0.0
        self._started_at = 0.0

    # ---- public ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Validate specs, targets, camera, torch and settings (raising before anything changes), then snapshot
        the scene, override the render settings and start the training thread."""
        if self.status != "new":
            raise ConfigError(f"this session was already started (status {self.status})")
        config = self.config
        self.parameters, engine_space = self._bind_specs()
        settings = RenderSettings(config.resolution, config.engine, config.samples, config.channels)
        clip = clips.ClipSettings.from_dict(config.clips) if config.clips is not None else None
        probes = learned_probes(self.parameters, engine_space)
        if clip is None:
            RenderOverride(self.scene, settings).check()
        else:
            touched = [p.bound for p in self.parameters.values()]
            renderer = clips.ClipRenderer(self.scene, settings, clip, touched, probes)
            renderer.check()
        if not config.output_dir:
            raise ConfigError("no output folder given for result.json and the checkpoint")
        if clip is None:
            targets, self.target_report = load_targets(config.targets, config.resolution, config.channels)
            native = self.target_report.native_size or scene_output_size(self.scene)
            settings = replace(settings, render_size=render_size(native, config.resolution))
            renderer = RenderOverride(self.scene, settings, probes)
            renderer.check()
        else:
            fps = clips.scene_fps(self.scene)
            size, channels = config.resolution, config.channels
            targets, self.target_report = load_clip_targets(config.targets, clip, fps, size, channels)
        self.render_settings = settings
        self.optimizer = self._make_optimizer(engine_space, targets)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create the output folder {self.output_dir}: {error.strerror}") from None
        self.report = RunReport(self.output_dir, targets, config.steps, self.truth)

        from ..engine.training import TrainingThread

        self._saved = rna.snapshot([p.bound for p in self.parameters.values()])
        renderer.__enter__()
        try:
            self._thread = TrainingThread(self.optimizer)
            self._thread.start()
        except BaseException:
            renderer.restore()
            raise
        self._renderer = renderer
        self._reported = len(self.optimizer.history)  # a resumed run reports only its own steps
        self._started_at = time.perf_counter()
        self.status = "running"
        self._progress(running=True, message=self.target_report.summary())

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

    def suspend(self) -> None:
        """Put the user's values and render settings back for a moment, e.g. while the .blend is saved mid-run (the
        file then holds them, not a sample); :meth:`resume` re-applies the run's values."""
        if self.status != "running" or self._suspended is not None:
            return
        current = rna.snapshot([bound for bound, _ in self._saved])
        overridden = [(owner, name, getattr(owner, name)) for owner, name, _ in self._renderer.saved]
        rna.restore(self._saved)
        _set_all(self._renderer.saved)
        self._suspended = (current, overridden)

    def resume(self) -> None:
        """Undo :meth:`suspend`: the sample and the training render settings are back."""
        if self._suspended is None:
            return
        current, overridden = self._suspended
        self._suspended = None
        _set_all(overridden)
        rna.restore(current)

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
        seen: dict[tuple[int, str], str] = {}
        for spec in self.config.specs:
            label = spec.label.strip()
            if not label or len(label) > MAX_LABEL:
                raise SpecError(f"spec label {spec.label!r} must be 1–{MAX_LABEL} characters")
            if label in parameters:
                raise SpecError(f"two specs are labelled {label!r}; labels must be unique")
            bound = rna.resolve(label, spec.id_type, spec.id_name, spec.data_path)
            key = (bound.owner.as_pointer(), bound.data_path)
            if key in seen:
                raise SpecError(f"{bound.culprit}: the same property is already randomized by {seen[key]!r}")
            seen[key] = label
            engine, choices = engine_distribution(bound, spec.distribution)
            parameters[label] = writeback.Parameter(bound, str(engine.get("kind")), choices)
            engine_space[label] = engine
        return parameters, engine_space

    def _make_optimizer(self, engine_space: dict[str, dict[str, Any]], targets: Any) -> Any:
        from ... import torch_vendor

        status = preferences.torch_status()
        try:
            torch_vendor.activate(status)
        except ModuleNotFoundError as error:
            raise SceneFitError(str(error)) from None
        from ..engine.distributions import ParameterSpace, distribution_from_dict
        from ..engine.optimizer import AskTellOptimizer

        distributions = {}
        for label, engine in engine_space.items():
            try:
                distributions[label] = distribution_from_dict(engine)
            except DistributionError as error:
                raise SpecError(f"{self.parameters[label].bound.culprit}: {error}") from None
        config = self.config
        optimizer_config = config.optimizer_config()
        if not config.resume:
            return AskTellOptimizer(ParameterSpace(distributions), targets, optimizer_config)
        optimizer = AskTellOptimizer.load_checkpoint(config.resume, targets)
        if optimizer.space.labels != list(distributions):
            raise ConfigError(
                f"checkpoint {config.resume} learns {optimizer.space.labels}, this run's specs are "
                f"{list(distributions)}"
            )
        return optimizer

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
                    self._images = []
                if self._rendered is not None:
                    self._thread.submit(*self._rendered)
                    self._rendered = None
                if not self._batch:
                    idle = self._thread.wait_idle(timeout=self.tick_seconds)
                    self._publish()
                    return idle
            sample = self._batch[len(self._images)]
            self._apply(sample.values)
            self._images.append(self._renderer.render())
            self.renders += 1
            if len(self._images) == len(self._batch):
                self._rendered = ([s.id for s in self._batch], self._images)
                self.report.batch(self._batches_asked, self._images, self.renders)
                self._batch, self._images = [], []
            if time.perf_counter() >= deadline:
                self._publish()
                return False

    def _apply(self, values: Mapping[str, Any]) -> None:
        assignments = []
        for label, value in values.items():
            parameter = self.parameters[label]
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"the engine sampled the non-finite value {value} for {label!r}; run stopped")
            assignments.append(
                (parameter.bound, parameter.choices[int(value)] if parameter.choices is not None else value)
            )
        rna.assign(assignments)

    def _publish(self, final: bool = False) -> None:
        """Report new history entries, write back after parameter steps, update the progress shown in the UI."""
        new_entries = self.optimizer.history[self._reported :]
        self._reported += len(new_entries)
        for entry in new_entries:
            if self.on_step is not None:
                self.on_step(entry)
        if new_entries and diagnostics.saturated(self.optimizer.history, self.optimizer.config.objective):
            self._warn(diagnostics.SATURATION_WARNING)
        snapshot = self._thread.snapshot()
        if final or any(entry.get("param_step") for entry in new_entries):
            writeback.write_custom_properties(self.parameters, snapshot["values"])
            if final or time.perf_counter() - self._result_written_at >= RESULT_INTERVAL_S:
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

    def _write_result(self, values: Mapping[str, Any]) -> None:
        document = writeback.result_document(
            self.parameters,
            values,
            list(self.optimizer.history),
            self.renders,
            time.perf_counter() - self._started_at,
            self.status,
            {
                "steps": self.optimizer.step,
                "config": self.config.to_dict(),
                "targets": self.target_report.summary() if self.target_report else "",
                "checkpoint": writeback.CHECKPOINT_FILE,
                "error": str(self.error) if self.error else None,
                "warnings": list(self.warnings),
            },
        )
        writeback.write_result(self.output_dir, document)
        self._result_written_at = time.perf_counter()

    def _end(self, status: str, error: BaseException | None) -> None:
        """Stop training, write what was learned, and restore the scene whatever happens on the way. A failure
        to write results is raised (after restoring) unless the run already failed for another reason."""
        self.status, self.error = status, error
        write_error: Exception | None = None
        try:
            self._thread.stop()
            self._publish(final=True)
            self.optimizer.save_checkpoint(self.checkpoint_path)
            self.report.finish(list(self.optimizer.history))
        except Exception as caught:  # the scene is restored below in any case
            write_error = caught
        finally:
            problems = rna.restore(self._saved)
            problems += self._renderer.restore() if self._renderer else []
            self._renderer = None
            message = {"finished": "Finished", "stopped": "Stopped"}.get(status, f"Failed: {error}")
            if write_error is not None:
                message += f" — results not written: {write_error}"
            if problems:
                message += " — not restored: " + "; ".join(problems)
            if self.report.problem:
                message += f" — {self.report.problem}"
            if self.warnings:
                message += " — " + "; ".join(self.warnings)
            self._progress(running=False, message=message)
        if write_error is not None and error is None:
            self.status, self.error = "failed", write_error
            raise write_error

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
            setattr(progress, key, value)


def _set_all(settings: list[tuple[Any, str, Any]]) -> None:
    for owner, name, value in settings:
        try:
            setattr(owner, name, value)
        except (TypeError, ValueError, AttributeError, ReferenceError):
            pass  # a setting that cannot be set now is restored by the run's end, which reports it


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
