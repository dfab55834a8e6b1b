"""Targets SceneFit did not render (issue #12): six hand-built scenes, fitted with SceneFit's defaults.

The scenes and their plain targets come from ``tests/independent_scenes.py``: built with plain bpy (no SceneFit
preset or builder), 64 targets per scene rendered by a plain ``bpy.ops.render.render(write_still=True)`` loop at the
scene's own saved settings (scene 5: twice the size and samples), values drawn from the truth with numpy. Each scene
is then fitted once per seed through the product's path (``Session.step()`` with its training thread) with
SceneFit's DEFAULT optimizer, the scene's engine and samples, 64×64 training renders.

Per scene: whether SceneFit's own renders change with each property (max |Δpixel| over probe values, 0 = frozen)
and the "target gap", the mean |Δpixel| between a plain target and SceneFit's training render of the same values
(the truth's centre: render noise plus the colour pipeline, what no parameter explains). Per run: the final μ
error of every property (TV distance for the categorical), the σ ratio learned/true, whether every μ ends inside
its tolerance, the renders after which it stayed inside for good, and how closely the run's renders followed its
samples (distinct images ÷ distinct sampled values per batch; 1 = every sample its own image). Then a table.

    .venv/bin/python bench/independent_targets.py                       # 6 scenes × 5 seeds, 100 steps × 16
    .venv/bin/python bench/independent_targets.py --scenes gn_radius --seeds 1 --steps 30 --batch 8 --targets 32
    .venv/bin/python bench/independent_targets.py --quick               # smoke test: 1 seed, 2 steps of 4, 8 targets
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_SEED = 1234


def _label_unit(case: Any, label: str) -> tuple[float, str]:
    """Scale and unit to print a label's errors in: degrees for rotations."""
    path = next(s["data_path"] for s in case.specs if s["label"] == label)
    if "rotation" in path:
        return math.degrees(1.0), "°"
    return 1.0, " TV" if case.truth[label]["kind"] == "categorical" else ""


def main(argv: list[str] | None = None) -> int:
    from tests import independent_scenes as ind

    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--scenes", default=",".join(ind.SCENES), help="comma-separated: " + ",".join(ind.SCENES))
    parse.add_argument("--seeds", type=int, default=5, help="fit seeds 0…N−1 per scene (default 5)")
    parse.add_argument(
        "--steps", type=int, help="steps per run (default: SceneFit's, 100 and 50 more per further learned property)"
    )
    parse.add_argument("--batch", type=int, default=16, help="renders per step (default 16, SceneFit's default)")
    parse.add_argument("--targets", type=int, default=ind.N_TARGETS, help="targets per scene (default 64)")
    parse.add_argument("--target-seed", type=int, default=TARGET_SEED, help="numpy seed of the truth's draws")
    parse.add_argument("--size", type=int, default=ind.TRAINING_SIZE[0], help="training resolution (default 64)")
    parse.add_argument(
        "--quick", action="store_true", help="smoke test: 1 seed, 2 steps of 4 renders, 8 targets, 32 px"
    )
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    names = [s for s in args.scenes.split(",") if s]
    unknown = sorted(set(names) - set(ind.SCENES))
    if unknown:
        parse.error(f"unknown scene(s) {unknown}; known: {list(ind.SCENES)}")
    if args.quick:
        args.seeds, args.steps, args.batch, args.targets, args.size = 1, 2, 4, 8, 32

    print(f"machine: {common.machine()}", flush=True)
    ext = common.blender()
    import bpy

    session_module = common.module(ext, "addon.blender.run.session")
    targets_module = common.module(ext, "addon.blender.targets.images")
    from addon.engine.presets import recommended_steps

    size = (args.size, args.size)
    print(
        f"protocol: {args.targets} plain targets per scene (numpy seed {args.target_seed}); SceneFit defaults, "
        f"{args.steps or 'SceneFit’s default'} steps × {args.batch} renders at {args.size}×{args.size}, the scene's "
        "engine and samples; "
        f"seeds 0–{args.seeds - 1}",
        flush=True,
    )
    results: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="scenefit-independent-") as folder:
        workdir = Path(folder)
        for name in names:
            case = ind.build(bpy, name)
            steps = args.steps or recommended_steps(len(case.labels))
            budget = steps * args.batch
            targets = workdir / name / "targets"
            started = time.perf_counter()
            plain = ind.render_targets(bpy, case, targets, count=args.targets, seed=args.target_seed)
            target_seconds = time.perf_counter() - started
            followed = ind.scenefit_sensitivity(session_module, case, targets, workdir / name / "probe")
            gap = ind.pipeline_gap(bpy, session_module, targets_module, case, targets, workdir / name / "gap", size)
            override = f", targets with {case.target_override}" if case.target_override else ""
            print(
                f"\n{case.name} ({case.title}): {case.settings()}{override}; {args.targets} targets in "
                f"{target_seconds:.1f} s; max |Δpixel| per property, plain {_fmt(plain['sensitivity'])}, "
                f"SceneFit {_fmt(followed)}; plain target vs SceneFit render at the truth's centre: mean |Δ| "
                f"{gap['mean']:.4f}, max {gap['max']:.3f}",
                flush=True,
            )
            runs = []
            for seed in range(args.seeds):
                outcome = ind.run_scenefit(
                    session_module,
                    case,
                    targets,
                    workdir / name / f"run-{seed}",
                    steps,
                    args.batch,
                    seed,
                    size,
                )
                final = outcome.values() if outcome.history else case.start()
                start_errors, final_errors = ind.errors(case, case.start()), ind.errors(case, final)
                figure = {
                    "seed": seed,
                    "status": outcome.status,
                    "start_error": start_errors,
                    "final_error": final_errors,
                    "sigma_ratio": {label: ind.sigma_ratio(case.truth[label], final[label]) for label in case.labels},
                    "inside_at_end": ind.inside(case, final),
                    "renders_to_stay": ind.renders_to_stay(case, outcome.history, budget),
                    "renders": outcome.renders,
                    "seconds": outcome.seconds,
                    "final": final,
                    "batch_spread": [outcome.batch_spread[0], outcome.batch_spread[-1]],
                    "follow_ratio": outcome.follow_ratio,
                    "follow_ratio_first_5": outcome.follow_ratio_of(5),
                }
                runs.append(figure)
                parts = []
                for label in case.labels:
                    scale, unit = _label_unit(case, label)
                    ratio = figure["sigma_ratio"][label]
                    parts.append(
                        f"{label} error {start_errors[label] * scale:.3f} → {final_errors[label] * scale:.3f}{unit}"
                        + (f" σ/σ* {ratio:.2f}" if ratio is not None else "")
                    )
                print(
                    f"  seed {seed}: {'; '.join(parts)}; inside at the end: {figure['inside_at_end']}, for good from "
                    f"{figure['renders_to_stay']} of {budget} renders; renders follow the samples "
                    f"{outcome.follow_ratio:.2f} (first 5 batches {outcome.follow_ratio_of(5):.2f}); "
                    f"{outcome.seconds:.0f} s",
                    flush=True,
                )
            results[name] = {
                "title": case.title,
                "settings": case.settings(),
                "target_override": case.target_override,
                "truth": case.truth,
                "start": case.start(),
                "tolerance": case.tolerance,
                "plain_sensitivity": plain["sensitivity"],
                "scenefit_sensitivity": followed,
                "pipeline_gap": gap,
                "budget": budget,
                "runs": runs,
            }
            errors_column = []
            ratio_column = []
            for label in case.labels:
                scale, unit = _label_unit(case, label)
                errors_column.append(
                    f"{label}: " + " / ".join(f"{r['final_error'][label] * scale:.3f}" for r in runs) + unit
                )
                ratios = [r["sigma_ratio"][label] for r in runs if r["sigma_ratio"][label] is not None]
                if ratios:
                    ratio_column.append(f"{label} {common.median(ratios):.2f}")
            rows.append(
                (
                    case.name,
                    ("yes" if all(v > 0 for v in followed.values()) else "NO: " + ",".join(_frozen(followed)))
                    + f"; run {common.median(r['follow_ratio_first_5'] for r in runs):.2f}",
                    f"{gap['mean']:.4f}",
                    f"{sum(r['inside_at_end'] for r in runs)}/{len(runs)}",
                    f"{common.median(r['renders_to_stay'] for r in runs):.0f} of {budget}",
                    "; ".join(errors_column),
                    ", ".join(ratio_column) or "–",
                    f"{common.median(r['seconds'] for r in runs):.0f}",
                )
            )
    print()
    header = (
        "scene",
        "SceneFit renders follow",
        "target gap",
        "inside at the end",
        "median renders to stay",
        "final μ error per seed",
        "median σ/σ*",
        "median s/run",
    )
    print(common.table(rows, header))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **results}))
    return 0


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{label} {value:.3f}" for label, value in values.items())


def _frozen(values: dict[str, float]) -> list[str]:
    return [label for label, value in values.items() if value == 0]


if __name__ == "__main__":
    sys.exit(main())
