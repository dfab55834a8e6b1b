"""Headless runs: ``blender -b scene.blend -P scenefit_batch.py -- <args>`` or, with the bpy module,
``python scenefit_batch.py scene.blend <args>``. The root script makes this package importable and calls
:func:`main`; both ways run the same code.

The run comes from ``--config`` (a RunConfig JSON or a preset), else from the scene's own SceneFit settings;
command-line options override it. One line per optimization step goes to stdout. Exit codes: 0 finished,
1 bad input or a failed run (one-line message, no traceback: a full disk, a deleted output folder too), 2 bad
command line, 128 + the signal for a stop asked by a signal: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP. A signal
is handled like Ctrl-C: the run stops at the next render, writes its checkpoint and result.json ("stopped"),
restores the scene and removes its temporary files. The scene is restored in every case, and result.json/checkpoint
keep what was learned (checkpoints are also written during the run, see RunConfig.checkpoint_seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bpy

from ...engine import diagnostics
from ...engine.errors import MESSAGE_LIMIT, ConfigError, SceneFitError, cut, quote
from ...engine.vocabulary import DEVICES, OBJECTIVES, RENDER_ENGINES
from ..scene.render import RenderSettings
from ..targets.clips import save_clip
from ..targets.images import save_image
from .config import RunConfig, check_output_folder, engine_distribution
from .ray_workers import actors as ray_actors
from .sampler import Sampler, bind
from .session import Session
from .workers import open_renderer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Signals that stop a run the way Ctrl-C does; the exit code is 128 + the signal's number (130, 143, 129).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
TICK_SECONDS = 0.5  # no interface to keep alive: longer slices, fewer progress updates


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="scenefit_batch.py",
        description="Learn distributions of scene properties from target images, headless.",
        epilog="blender -b scene.blend -P scenefit_batch.py -- ARGS   |   python scenefit_batch.py scene.blend ARGS",
    )
    parse.add_argument("blend", nargs="?", help=".blend file to open (bpy module; blender -b opens its own)")
    parse.add_argument("--config", help="run configuration or preset JSON (default: the scene's SceneFit settings)")
    parse.add_argument("--targets", help="folder or glob of target images")
    parse.add_argument("--output", help="folder for result.json and checkpoint.pt")
    parse.add_argument("--steps", type=int, help="optimization steps")
    parse.add_argument("--batch-size", type=int, help="renders per step")
    parse.add_argument("--seed", type=int, help="seed of sampling and network initialization")
    parse.add_argument("--resolution", type=_resolution, help="training size: 64 or 64x48 (width x height)")
    parse.add_argument("--engine", choices=RENDER_ENGINES, help="render engine")
    parse.add_argument("--samples", type=int, help="render samples (Cycles/EEVEE samples, Workbench AA)")
    parse.add_argument("--objective", choices=OBJECTIVES, help="how renders are compared with the targets")
    parse.add_argument(
        "--device",
        choices=DEVICES,
        help="where the objective trains: auto (the default: CUDA if torch has it), cpu, cuda",
    )
    parse.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="render processes, each a headless Blender on a snapshot of the scene (1: render in this process; "
        "0, the default: what fits the machine, one per two cores)",
    )
    parse.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="render with actors on the Ray cluster at HOST:PORT or auto (needs the Ray extra, requirements-ray.txt; "
        "run on a node of the cluster): --workers of them, by default as many as it has room for",
    )
    parse.add_argument("--resume", help="checkpoint.pt of an earlier run to continue (its folder: continue in place)")
    parse.add_argument(
        "--resume-settings",
        choices=("run", "checkpoint"),
        help="run (default): the checkpoint must match this run's specs, distribution kinds, objective and image "
        "size; checkpoint: take the checkpoint's own",
    )
    parse.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --output (else such a folder is refused)"
    )
    parse.add_argument("--checkpoint-every", type=int, metavar="N", help="also write a checkpoint every N steps")
    parse.add_argument(
        "--checkpoint-seconds", type=float, metavar="T", help="write a checkpoint at least every T seconds (30)"
    )
    parse.add_argument("--scene", help="scene to run on (default: the active scene)")
    parse.add_argument(
        "--build-scene",
        action="store_true",
        help="with a preset: build its demo scene first (into an empty scene when no .blend is given)",
    )
    parse.add_argument("--save", help="save the .blend (scene restored, learned custom properties) to this path")
    parse.add_argument(
        "--generate",
        type=int,
        metavar="N",
        help="render a data set of N images + labels into --output instead of learning",
    )
    parse.add_argument(
        "--source",
        default="initial",
        help="with --generate: initial (the specs'), learned (written back by a run), truth (the --config preset's) "
        "or a run's result.json (default: initial; --seed seeds the draws)",
    )
    return parse


def _resolution(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a resolution: {text!r} (use 64 or 64x48)") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"not a resolution: {text!r} (use 64 or 64x48)")
    return (values[0], values[-1])


def main(argv: Sequence[str], received: list[int] | None = None) -> int:
    """Run SceneFit with command-line arguments ``argv`` (without the program name); returns the exit code.
    ``received``: stop signals that arrived before (the batch script notes them from its first moment)."""
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exit_:  # argparse printed the usage error
        return EXIT_USAGE if exit_.code else EXIT_OK
    # A signal only asks to stop: Blender calls Python handlers (frame change, render) inside renders, and an
    # exception raised there is printed and swallowed by Blender, not seen here. The run checks between renders.
    received = [] if received is None else received
    previous = {
        signum: signal.signal(signum, lambda signum, _frame: received.append(signum)) for signum in STOP_SIGNALS
    }
    try:
        return _run(args, received)
    except SceneFitError as error:
        _say(cut(f"scenefit: error: {error}", MESSAGE_LIMIT), err=True)
        return EXIT_FAILED
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        if getattr(interrupt, "before_run", False):
            _say(f"scenefit: {_stopped_by(signum)} before the run started; nothing was changed", err=True)
        else:
            _say(
                f"scenefit: {_stopped_by(signum)}; the scene was restored and what was learned so far was written",
                err=True,
            )
        return 128 + int(signum)
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler installed by C code (Blender's), which Python cannot reinstall
                signal.signal(signum, handler)


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by signal ``signum`` (``before_run``: before anything was changed)."""

    def __init__(self, signum: int, before_run: bool = False) -> None:
        super().__init__(signum)
        self.signum, self.before_run = signum, before_run


def _stopped_by(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def _run(args: argparse.Namespace, received: list[int]) -> int:
    def stop_if_asked() -> None:
        if received:
            raise Interrupted(received[0], before_run=True)

    if args.blend:
        try:
            bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
        except RuntimeError as error:
            raise ConfigError(f"cannot open {cut(args.blend)}: {cut(str(error).strip())}") from None
        _say_blocked_drivers()
    elif args.build_scene:
        bpy.ops.wm.read_homefile(use_empty=True)
    stop_if_asked()
    scene = _scene(args.scene)
    config, preset = _config(args, scene)
    if config.ray:  # before anything is rendered or written: a cluster that cannot be used changes nothing
        ray_actors(config.ray, config.workers)
    stop_if_asked()
    if args.generate is not None:
        return _generate(args, scene, config, preset)
    if config.targets == "" and preset is not None and preset.truth() is not None:
        check_output_folder(config)  # before the targets are rendered into it
        folder = Path(config.output_dir) / "targets"
        _say(f"rendering {preset.targets['count']} targets from the preset's truth into {folder}")
        render_truth_targets(scene, config, preset.truth(), preset.targets, folder)
        config = config.replace(targets=str(folder))
        stop_if_asked()
    goal = {"step": 0}

    def report(entry: Mapping[str, Any]) -> None:
        _say(_step_line(entry, goal["step"]))

    truth = preset.truth() if preset is not None else None
    session = Session(scene, config, tick_seconds=TICK_SECONDS, on_step=report, truth=truth)
    try:
        session.start()
        config = session.config  # --resume-settings checkpoint may have taken the checkpoint's settings
        if session.notes:
            _say(f"scenefit: resuming with the checkpoint's settings: {'; '.join(session.notes)}")
        goal["step"] = session.optimizer.step + config.steps
        _say("\n".join(settings_lines(config, session)))
        warned = 0
        while not received and session.step():
            warned = _say_warnings(session, warned)
        _say_warnings(session, warned)  # those of the last step too
        if received and session.status == "running":
            session.stop()  # checkpoint, result.json "stopped", scene restored (a failure to write is raised)
            _save(args)
            raise Interrupted(received[0])
    except BaseException as error:
        session.abandon(error)  # whatever was raised, and wherever: the scene is put back (a no-op once ended)
        raise
    result = json.loads(session.result_path.read_text())
    _say(
        f"scenefit: finished {result['steps']} steps, {result['renders']} renders in {result['seconds']:.1f} s; "
        f"{_values(result['parameters'])}; result: {session.result_path}"
    )
    problem = session.report.problem
    _say(f"scenefit: {problem}" if problem else f"scenefit: report in {session.output_dir}")
    _save(args)
    objective = session.optimizer.config.objective
    if diagnostics.saturated(session.optimizer.history, objective):
        warning = diagnostics.saturation_warning(objective)
        _say(f"scenefit: error: the fit cannot be trusted, it ended with {warning}", err=True)
        return EXIT_FAILED
    return EXIT_OK


def _say_warnings(session: Session, said: int) -> int:
    """Print the run's warnings after the first ``said``; returns how many are said now."""
    for warning in session.warnings[said:]:
        _say(f"scenefit: warning: {warning}", err=True)
    return len(session.warnings)


def _save(args: argparse.Namespace) -> None:
    """--save: the .blend with the scene restored and the learned custom properties."""
    if not args.save:
        return
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save).resolve()), copy=True)
    except RuntimeError as error:
        raise ConfigError(f"cannot save {cut(args.save)}: {cut(str(error).strip())}") from None


def _say_blocked_drivers() -> None:
    """Python drivers do not run while auto-run of scripts is off: say so, and which, before the run."""
    if not getattr(bpy.app, "autoexec_fail", False):
        return
    blocked = []
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.lights, bpy.data.scenes):
        for owner in collection:
            animation = getattr(owner, "animation_data", None)
            for fcurve in animation.drivers if animation is not None else ():
                driver = fcurve.driver
                if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                    blocked.append(f"{owner.name}.{fcurve.data_path}[{fcurve.array_index}] = {driver.expression}")
    shown = "; ".join(cut(line) for line in blocked[:5]) + ("; …" if len(blocked) > 5 else "")
    _say(
        f"scenefit: warning: auto-run of Python scripts is off: {len(blocked)} Python driver(s) blocked"
        + (f" ({shown})" if shown else "")
        + "; their properties keep their stored values",
        err=True,
    )


def _generate(args: argparse.Namespace, scene: bpy.types.Scene, config: RunConfig, preset: Any) -> int:
    from .dataset import generate_for_run

    dataset = generate_for_run(scene, config, args.generate, args.source, args.seed, preset)
    _say(f"scenefit: {len(dataset.rows)} images ({args.source}) in {dataset.seconds:.1f} s → {dataset.folder}")
    _save(args)
    return EXIT_OK


def _scene(name: str | None) -> bpy.types.Scene:
    if name is None:
        return bpy.context.scene
    scene = bpy.data.scenes.get(name)
    if scene is None:
        raise ConfigError(f"no scene named {quote(name)}; scenes: {cut(', '.join(bpy.data.scenes.keys()))}")
    return scene


def _config(args: argparse.Namespace, scene: bpy.types.Scene) -> tuple[RunConfig, Any]:
    """The run: from --config (RunConfig JSON or preset) or the scene's settings, then command-line overrides."""
    preset = None
    if args.config is None:
        if args.build_scene:
            raise ConfigError("--build-scene needs a preset given with --config")
        config = RunConfig.from_scene(scene)
    elif _is_preset(args.config):
        preset = _load_preset(args.config)
        if args.build_scene:
            from ..scene.presets import apply_preset

            apply_preset(preset, scene)
            config = RunConfig.from_scene(scene).replace(targets="", output_dir="", resume="")
        else:
            config = RunConfig.from_preset(preset)
    else:
        if args.build_scene:
            raise ConfigError(f"--build-scene needs a preset; {args.config} is a run configuration")
        config = RunConfig.from_json(args.config)
    overrides = {
        "targets": args.targets,
        "output_dir": str(Path(args.output).resolve()) if args.output else None,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "resolution": args.resolution,
        "engine": args.engine,
        "samples": args.samples,
        "resume": args.resume,
        "resume_settings": args.resume_settings,
        "overwrite": True if args.overwrite else None,
        "checkpoint_steps": args.checkpoint_every,
        "checkpoint_seconds": args.checkpoint_seconds,
        "workers": 0 if args.ray and args.workers is None else args.workers,
        "ray": args.ray,
    }
    config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.objective is not None:
        config = config.replace(optimizer={**config.optimizer, "objective": args.objective})
    if args.device is not None:
        config = config.replace(optimizer={**config.optimizer, "device": args.device})
    if not config.output_dir:
        raise ConfigError("no output folder: give --output")
    return config, preset


def _is_preset(path: str) -> bool:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False  # RunConfig.from_json reports the problem
    return isinstance(data, dict) and data.get("format") == "scenefit-preset"


def _load_preset(path: str) -> Any:
    from .... import torch_vendor
    from ..data import preferences

    try:  # presets are validated with the engine's distributions, which need torch
        torch_vendor.activate(preferences.torch_status())
    except ModuleNotFoundError as error:
        raise SceneFitError(str(error)) from None
    from ...engine.presets import load_preset

    return load_preset(path)


def render_truth_targets(
    scene: bpy.types.Scene,
    config: RunConfig,
    truth: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, int],
    folder: Path,
) -> None:
    """Render ``targets["count"]`` images of the scene with values drawn from the ``truth`` distributions (seeded by
    ``targets["seed"]``) into ``folder`` as PNG — with clips on, one sub-folder of frames per clip — by the run's
    render workers (target i holds draw i whichever finishes first); the scene is restored afterwards."""
    import torch

    from ...engine.distributions import distribution_from_dict

    folder.mkdir(parents=True, exist_ok=True)
    bound = bind(config.specs)
    draws = {}
    generator = torch.Generator().manual_seed(targets["seed"])
    for label, distribution in truth.items():
        engine, choices = engine_distribution(bound[label], distribution)
        decoded = distribution_from_dict(engine)
        values = [decoded.decode(float(x)) for x in decoded.sample(targets["count"], generator)]
        draws[label] = [choices[int(v)] for v in values] if choices is not None else values
    settings = RenderSettings(config.resolution, config.engine, config.samples, config.channels)
    clip = config.clip
    sampler = Sampler(scene, bound, settings, clip)
    renderer = open_renderer(sampler, config.specs, config.workers, config.ray)
    try:
        for i in range(targets["count"]):
            renderer.submit(i, {label: values[i] for label, values in draws.items()})
        saved = 0
        while saved < targets["count"]:
            for i, image in renderer.collect(timeout=TICK_SECONDS):  # workers: in any order
                if clip is None:
                    save_image(image, folder / f"target_{i:04d}.png")
                else:
                    save_clip(image, folder / f"target_{i:04d}")
                saved += 1
    finally:
        renderer.close()
        problems = sampler.restore()
    if problems:
        raise SceneFitError("the scene was not fully restored: " + "; ".join(problems))


def settings_lines(config: RunConfig, session: Session) -> list[str]:
    """Every setting of a started run, one per line, printed as one block before the first step. Objective and
    baseline are the optimizer's own (a resumed run's come from its checkpoint); the specs show the distributions
    they start from (a resumed run continues from the checkpoint's)."""
    optimizer = session.optimizer
    width, height = config.resolution
    rendered = session.render_settings.rendered
    rows = [
        ("engine", config.engine),
        ("samples", str(config.samples)),
        ("resolution", f"{width}×{height}, {'RGBA' if config.channels == 4 else 'RGB'}"),
        ("rendered at", f"{rendered[0]}×{rendered[1]}, then resized like the targets"),
        ("objective", optimizer.config.objective),
        ("device", str(optimizer.device) + (" (auto)" if optimizer.config.device == "auto" else "")),
        ("baseline", optimizer.config.estimator.baseline),
        ("workers", session.renderer.summary),
        ("steps", f"{config.steps}" + (f" after the checkpoint's {optimizer.step}" if config.resume else "")),
        ("batch size", str(config.batch_size)),
        ("seed", str(config.seed)),
        ("targets", session.target_report.summary()),
        ("output", config.output_dir),
    ]
    if (clip := config.clip) is not None:
        rows.append(("clips", f"frames {clip.frame_start}–{clip.frame_end} every {clip.stride} ({clip.length})"))
    if config.resume:
        rows.append(("resume", config.resume))
    for spec in config.specs:
        distribution = dict(spec.distribution)
        kind = distribution.pop("kind", "?")
        values = " ".join(f"{k}={_show(v)}" for k, v in distribution.items())
        where = f"{spec.id_type} {spec.id_name!r} {spec.data_path}"
        rows.append((f"spec {spec.label!r}", f"{where} ~ {kind} {values}".rstrip()))
    width = max(len(name) for name, _ in rows)
    return ["scenefit: run settings", *(f"  {name.ljust(width)}  {value}" for name, value in rows)]


def _step_line(entry: Mapping[str, Any], goal: int) -> str:
    parts = [f"step {entry['step']}/{goal}", f"renders {entry['renders']}", _values(entry.get("values", {}))]
    for key, name in (("d_loss", "loss"), ("d_real", "D(real)"), ("d_sim", "D(sim)")):
        if isinstance(entry.get(key), float) and math.isfinite(entry[key]):
            parts.append(f"{name} {entry[key]:.3f}")
    return "  ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _values(parameters: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{label} " + " ".join(f"{k}={_show(v)}" for k, v in values.items() if k not in ("distribution", "id", "path"))
        for label, values in parameters.items()
    )


def _say(line: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    print(line, file=stream, flush=True)
