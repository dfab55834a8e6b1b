"""The supershape demo (blendtorch's densityopt, end to end, headless): two batch commands and a summary.

1. ``scenefit_batch.py --config presets/supershape_density.json --build-scene --generate 64 --source truth``
   builds the preset's supershape scene and renders 64 target images from its ground truth (m1, m2 ~ LogNormal
   μ* = 2.25, σ* = 0.1) with their labels;
2. ``scenefit_batch.py --config … --build-scene --targets <those images>`` builds the scene again and fits the
   LogNormal distributions of m1 and m2 from the start μ = (1.2, 3.0), σ = 0.4;
3. prints the learned μ/σ next to the truth, the renders and seconds used, and where the report is.

Exit code 0 when max|μ − μ*| < 0.1 for every parameter at the end, 1 otherwise. Options shorten the run (tests).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAND = 0.1  # max|μ − μ*| that counts as recovered (DESIGN.md, "Numbers to beat")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--preset", default=str(ROOT / "presets" / "supershape_density.json"))
    parse.add_argument("--output", default=str(ROOT / "output" / "demo"), help="replaced on every run")
    parse.add_argument("--targets", type=int, help="target images (default: the preset's count)")
    parse.add_argument("--steps", type=int, help="optimization steps (default: the preset's)")
    parse.add_argument("--batch-size", type=int, help="renders per step (default: the preset's)")
    parse.add_argument("--resolution", help="training size, e.g. 32 (default: the preset's)")
    parse.add_argument("--seed", type=int, help="seed of the fit (default: the preset's)")
    return parse.parse_args(argv)


def batch(*args: str) -> None:
    command = [sys.executable, str(ROOT / "scenefit_batch.py"), *args]
    completed = subprocess.run(command, cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"demo: {' '.join(command[1:])} failed with exit code {completed.returncode}")


def option(name: str, value: object) -> list[str]:
    return [name, str(value)] if value is not None else []


def renders_to_stay(history: list[dict], truth: dict[str, dict]) -> int | None:
    """Renders after which max|μ − μ*| < BAND held for the rest of the run (None: it ended outside)."""
    stay = None
    for entry in history:
        distance = max(abs(entry["values"][label]["mu"] - t["mu"]) for label, t in truth.items())
        if distance >= BAND:
            stay = None
        elif stay is None:
            stay = entry["renders"]
    return stay


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    preset = json.loads(Path(args.preset).read_text())
    truth = {p["label"]: p["truth"] for p in preset["parameters"]}
    output = Path(args.output).resolve()
    shutil.rmtree(output, ignore_errors=True)
    overrides = [*option("--resolution", args.resolution), *option("--batch-size", args.batch_size)]
    count = args.targets or preset["targets"]["count"]
    started = time.perf_counter()

    print(f"demo: {preset['name']}: {count} target images from the truth …", flush=True)
    scene = ["--config", args.preset, "--build-scene", *overrides]
    batch(*scene, "--generate", str(count), "--source", "truth", "--output", str(output / "targets"))
    print("demo: fitting …", flush=True)
    fit = [*scene, "--targets", str(output / "targets" / "images"), "--output", str(output / "run")]
    fit += [*option("--steps", args.steps), *option("--seed", args.seed)]
    batch(*fit)
    wall = time.perf_counter() - started

    result = json.loads((output / "run" / "result.json").read_text())
    learned = result["parameters"]
    print(f"\n{'':6}{'learned μ':>11}{'σ':>8}   {'truth μ*':>9}{'σ*':>8}   {'|μ − μ*|':>9}")
    distances = []
    for label, target in truth.items():
        mu, sigma = learned[label]["mu"], learned[label]["sigma"]
        distances.append(abs(mu - target["mu"]))
        print(f"{label:6}{mu:11.3f}{sigma:8.3f}   {target['mu']:9.3f}{target['sigma']:8.3f}   {distances[-1]:9.3f}")
    stay = renders_to_stay(result["history"], truth)
    rate = result["renders"] / result["seconds"] if result["seconds"] else math.nan
    print(
        f"\nrenders: {result['renders']} (inside ±{BAND} for good from {stay if stay is not None else '—'}), "
        f"fit {result['seconds']:.1f} s ({rate:.1f} images/s), {wall:.1f} s end to end (+ {count} targets)"
    )
    print(f"report:  {output / 'run'}  (parameters.png, losses.png, progress.gif, samples_*.png, result.json)")
    print(f"targets: {output / 'targets'}  (images/, labels.csv, labels.json)")
    converged = max(distances) < BAND
    print(f"{'converged' if converged else 'NOT converged'}: max|μ − μ*| = {max(distances):.3f} (band {BAND})")
    return 0 if converged else 1


if __name__ == "__main__":
    sys.exit(main())
