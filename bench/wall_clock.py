"""Wall clock of the supershape demo, end to end, with its split: start-up, targets, fit, report.

Runs, in this process, the two batch commands ``tools/demo.py`` runs (same arguments, the demo preset's settings):

1. ``--config presets/supershape_density.json --build-scene --generate 64 --source truth`` — build the scene and
   render the 64 targets from the truth;
2. ``--config … --build-scene --targets <images> --output <run>`` — build the scene again and fit m1/m2; the
   Session writes result.json, the checkpoint and the report (snapshots during the run, plots and GIF at the end).

The fit's time is split into the optimisation proper and the report (snapshots + plots, timed around
``RunReport``); the time at which the run entered the band max|μ − μ*| < 0.1 for good is taken from the step
lines. Target: < 60 s from scene build to a converged, reported fit on 2 CPU cores. ``tools/demo.py`` pays the
Python/bpy/torch start-up twice (two processes); that cost is measured once here and printed separately.

    .venv/bin/python bench/wall_clock.py            # the demo as configured by its preset
    .venv/bin/python bench/wall_clock.py --quick    # smoke test: 8 targets, 2 steps of 8 renders at 32 px
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--preset", type=Path, default=common.PRESET)
    parse.add_argument("--quick", action="store_true", help="smoke test: tiny run, figures meaningless")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    quick = ["--resolution", "32", "--batch-size", "8"] if args.quick else []
    count = 8 if args.quick else common.N_TARGETS

    print(f"machine: {common.machine()}", flush=True)
    started = time.perf_counter()
    ext = common.blender()
    import torch  # noqa: F401  (its import is part of the start-up a demo process pays)

    startup = time.perf_counter() - started
    batch = common.module(ext, "addon.blender.run.batch")
    report_module = common.module(ext, "addon.blender.run.report")
    preset = json.loads(args.preset.read_text())
    truth = {p["label"]: p["truth"]["mu"] for p in preset["parameters"]}

    report_seconds = [0.0]
    steps: list[tuple[float, dict[str, Any]]] = []
    originals = (report_module.RunReport.batch, report_module.RunReport.finish, batch._step_line)

    def timed(function: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            begun = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                report_seconds[0] += time.perf_counter() - begun

        return wrapper

    def step_line(entry: dict[str, Any], goal: int) -> str:
        steps.append((time.perf_counter(), entry))
        return originals[2](entry, goal)

    report_module.RunReport.batch = timed(originals[0])
    report_module.RunReport.finish = timed(originals[1])
    batch._step_line = step_line
    try:
        with tempfile.TemporaryDirectory(prefix="scenefit-wall-clock-") as folder:
            output = Path(folder)
            scene = ["--config", str(args.preset), "--build-scene", *quick]
            begun = time.perf_counter()
            code = batch.main([*scene, "--generate", str(count), "--source", "truth", "--output", str(output / "t")])
            targets = time.perf_counter() - begun
            if code != 0:
                sys.exit(f"wall_clock: rendering the targets failed (exit code {code})")
            fit_args = [*scene, "--targets", str(output / "t" / "images"), "--output", str(output / "run")]
            if args.quick:
                fit_args += ["--steps", "2"]
            begun = time.perf_counter()
            code = batch.main(fit_args)
            fit_total = time.perf_counter() - begun
            if code != 0:
                sys.exit(f"wall_clock: the fit failed (exit code {code})")
            result = json.loads((output / "run" / "result.json").read_text())
    finally:
        report_module.RunReport.batch, report_module.RunReport.finish, batch._step_line = originals

    history = result["history"]
    budget = int(result["renders"]) + 1  # "never converged" marker: more renders than the run made
    stay = common.renders_to_converge(history, budget) if set(truth) == set(common.TRUTH_MU) else budget
    converged = stay < budget
    fit = fit_total - report_seconds[0]
    stay_at = next((t for t, entry in steps if int(entry["renders"]) == stay), None) if converged else None
    to_converge = None if stay_at is None else stay_at - begun
    end_to_end = targets + fit_total
    error = max(abs(result["parameters"][label]["mu"] - mu) for label, mu in truth.items())

    rows = [
        ("start-up (import bpy + torch, enable SceneFit; paid by each demo process)", f"{startup:.1f}"),
        (f"scene build + {count} targets (batch --generate)", f"{targets:.1f}"),
        (f"fit: scene build + {result['steps']} steps, {result['renders']} renders, write-back", f"{fit:.1f}"),
        ("report (snapshots during the run + plots/GIF at the end)", f"{report_seconds[0]:.1f}"),
        ("end to end: targets + fit + report (start-up excluded)", f"{end_to_end:.1f}"),
        (
            "fit converged (max|μ−μ*| < 0.1 for good) after",
            f"{to_converge:.1f} s of the fit, {stay} renders" if to_converge is not None else "never",
        ),
    ]
    print()
    print(common.table(rows, ("phase", "seconds")))
    verdict = "meets" if end_to_end < TARGET_S and converged else "misses"
    print(
        f"\nend to end {end_to_end:.1f} s ({verdict} the target < {TARGET_S:.0f} s with convergence); final "
        f"max|μ−μ*| {error:.3f}; {result['renders'] / fit:.1f} images/s during the fit"
    )
    if args.json:
        figures = {
            "startup": startup,
            "targets": targets,
            "fit": fit,
            "report": report_seconds[0],
            "end_to_end": end_to_end,
            "converged_renders": stay if converged else None,
            "converged_seconds": to_converge,
            "renders": result["renders"],
            "final_error": error,
        }
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
