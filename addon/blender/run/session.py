"""A SceneFit run on the main thread: validate, snapshot, render samples, feed the training thread, write back,
restore.

``Session.step()`` does one short unit of work (render a few samples, hand finished batches to the training
thread, publish progress) and returns whether the run goes on; the UI calls it from a timer, batch mode in a
loop. With render workers the rendering and feeding runs on a thread of its own (:class:`pipeline.Pump`: sockets and
numpy only) and ``step()`` only publishes. The scene is restored exactly when the run ends, whichever way it ends:
finished, stopped, failed or interrupted. bpy is only touched here, on the caller's (main) thread; the training
thread gets numpy arrays.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import bpy

from ...engine import diagnostics
from ...engine.errors import (
    ConfigError,
    DistributionError,
    OutputError,
    SceneFitError,
    SpecError,
    TrainingError,
    cut,
    quote,
)
from ...engine.images import render_size
from ..data import preferences
from ..scene import clips, rna
from ..scene.render import RenderSettings, learned_probes, scene_output_size
from ..targets.clips import load_clip_targets
from ..targets.images import TargetReport, load_targets
from . import writeback
from .config import MAX_INT, RunConfig, check_output_folder, engine_distribution, resumes_in_place, run_files
from .pipeline import Pipeline, Pump
from .report import RunReport
from .sampler import Sampler, bind
from .workers import InProcess, WorkerPool, open_renderer, renders_elsewhere

# How often result.json is rewritten during a run at most (custom properties follow every parameter step).
RESULT_INTERVAL_S = 1.0


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
        self.warnings: list[str] = []  # said once each, in the panel, the batch log and result.json
        self.render_settings: RenderSettings | None = None  # what training renders are made with, once started
        self.sampler: Sampler | None = None  # the run's, once started: it renders unless workers do
        self.renderer: InProcess | WorkerPool | None = None  # where samples go to be rendered, once started
        self._thread: Any = None
        self._pipeline: Pipeline | None = None  # asks, renders and hands batches to training, once started
        self._pump: Pump | None = None  # the pipeline's own thread, with workers
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
        clip = config.clip
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
        # anything is written or learned; with workers by them, before the first batch (this scene untouched).
        probes = learned_probes(self.parameters, engine_space)
        threaded = renders_elsewhere(config.workers, config.ray)  # as open_renderer decides below
        worker_probe = sampler.probe_elsewhere(probes) if threaded else None
        if not threaded:
            sampler.probe(probes)
        self.render_settings = settings
        self.optimizer = self._make_optimizer(engine_space, targets, checkpoint)
        self._prepare_output_folder()
        self.report = RunReport(self.output_dir, targets, config.steps, self.truth)
        self._save_checkpoint()  # resumable from the first moment (a kill -9 before the first periodic one)
        self._write_result(self.optimizer.values())

        from ...engine.training import DEFAULT_NICE, TrainingThread

        try:  # from here on the scene changes: whatever is raised, it is put back first
            self.sampler = sampler  # restored at the end (nothing to restore when workers render a snapshot)
            self.renderer = open_renderer(sampler, config.specs, config.workers, config.ray)
            # With workers nothing renders in this process, and the pipeline waits for each batch to be learned: a
            # niced training thread would starve behind the interface's redraws (bench/README.md, "The interactive
            # run"). In-process it gives way to the rendering main thread.
            self._thread = TrainingThread(self.optimizer, nice=0 if threaded else DEFAULT_NICE)
            self._thread.start()
            self._pipeline = Pipeline(
                self.optimizer,
                self._thread,
                self.renderer,
                config.steps,
                config.batch_size,
                self._scene_values,
                # The report is looked up at each batch, not bound now: whoever holds the session may wrap it.
                lambda index, images, renders: self.report.batch(index, images, renders),
            )
            if threaded:  # the pool touches no bpy: its pipeline runs off the main thread
                self._pump = Pump(self._pipeline, worker_probe)
                self._pump.start()
            self._reported = len(self.optimizer.history)  # a resumed run reports only its own steps
            self._started_at = time.perf_counter()
            self.status = "running"
            self._progress(running=True, message=self.target_report.summary())
        except BaseException as error:
            self._end("failed", error)
            raise

    def step(self) -> bool:
        """One unit of work (in-process: at least one render, more while ``tick_seconds`` lasts; with workers: the
        progress their thread made, waiting for it at most ``tick_seconds``). Returns False once the run has ended
        (it then has been finished and the scene restored). Errors end the run, restore the scene and propagate."""
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
    def renders(self) -> int:
        """Images rendered so far."""
        return self._pipeline.renders if self._pipeline is not None else 0

    @property
    def threaded(self) -> bool:
        """Whether render workers and a thread of the run's own render and feed training (the main thread then only
        publishes progress)."""
        return self._pump is not None

    @property
    def images_per_s(self) -> float:
        """The run's rate from the end of its first batch on (its start-up left out; 0 before its second batch)."""
        return self._pipeline.images_per_s if self._pipeline is not None else 0.0

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
        from .... import torch_vendor

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
        from ...engine.optimizer import read_checkpoint

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
        from ...engine.distributions import ParameterSpace, distribution_from_dict
        from ...engine.optimizer import AskTellOptimizer

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
        """The run's next slice; True once every batch of the run has been learned. In-process the pipeline renders
        here for ``tick_seconds``; with workers the pump renders on its own thread and this waits for it at most that
        long. Then the progress is published (here: it touches bpy)."""
        if self._pump is None:
            done = self._pipeline.advance(self.tick_seconds)
        else:
            done = self._pump.wait(self.tick_seconds)
        for problem in self.renderer.problems:
            self._warn(problem)
        self._publish()
        return done

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
                "images_per_s": round(self.images_per_s, 3),
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
            if self._pump is not None:  # before anything else uses the pipeline or the workers
                attempt(self._pump.stop)
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
            value = _PROGRESS_TYPES[progress.bl_rna.properties[key].type](value)
            if isinstance(value, int) and not isinstance(value, bool):
                value = max(-MAX_INT, min(value, MAX_INT))  # the panel's counters are 32-bit
            # Into the properties' ID-property storage, not through setattr: an RNA write of a registered property
            # tags every region of the window for a redraw, and a software-GL 3D Viewport redraw takes ~0.65 CPU s
            # of the cores the workers render with (bench/README.md, "The interactive run"). Whoever shows the
            # progress tags what shows it (the run controller: the sidebar).
            if getattr(progress, key) != value:
                progress[key] = value


# What each kind of progress property stores (an ID property of another type would not be read back).
_PROGRESS_TYPES = {"BOOLEAN": bool, "INT": int, "FLOAT": float, "STRING": str}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


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
