"""The default's tuning must not be tuned to the supershape alone: the yaw and categorical presets, before and after.

The supershape benchmark (sample_efficiency.py) tuned SceneFit's default: the running average of the distribution
parameters (``param_average`` 0.9, 0.0 before) is what can be switched off; the learning rate's true half-life
replaced a 1/t decay that no setting brings back, so it applies to both columns. This script runs the other
objectives' presets through the product's path (``Session.step()`` with its training thread, the preset's scene,
render settings, batch and steps, targets rendered from the preset's truth) with the default and with the default
as it was before the tuning, over the same seeds, and prints for each the final error, the renders until the
error stays under the tolerance and the medians:

* ``object_yaw`` (MMD): error |μ − μ*| of the yaw in degrees, tolerance 5°;
* ``discrete_choice`` (WGAN-GP): total-variation distance between the learned and the true probabilities,
  tolerance 0.1.

    .venv/bin/python bench/preset_check.py                # 5 seeds per preset and configuration
    .venv/bin/python bench/preset_check.py --quick        # smoke test: 1 seed, 2 steps of 8 renders at 32 px
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# The configurations compared: SceneFit's default, and the default before the supershape tuning.
CONFIGS: dict[str, dict[str, Any]] = {"default": {}, "before tuning": {"param_average": 0.0}}


def yaw_error(values: Mapping[str, Mapping[str, Any]], truth: Mapping[str, Mapping[str, Any]]) -> float:
    return math.degrees(abs(float(values["yaw"]["mu"]) - float(truth["yaw"]["mu"])))


def choice_error(values: Mapping[str, Mapping[str, Any]], truth: Mapping[str, Mapping[str, Any]]) -> float:
    learned, true = values["shape"]["probs"], truth["shape"]["probs"]
    return 0.5 * sum(abs(float(p) - float(q)) for p, q in zip(learned, true, strict=True))


# preset stem → (error of a history entry's values, tolerance, unit)
PRESETS: dict[str, tuple[Callable[..., float], float, str]] = {
    "object_yaw": (yaw_error, 5.0, "°"),
    "discrete_choice": (choice_error, 0.1, " TV"),
}


def renders_to_stay(errors: Sequence[tuple[int, float]], tolerance: float, budget: int) -> int:
    """Renders after which the error stayed under ``tolerance`` to the end (``budget`` if it ends above)."""
    if not errors or errors[-1][1] >= tolerance:
        return budget
    stayed = errors[-1][0]
    for renders, error in reversed(errors):
        if error >= tolerance:
            break
        stayed = renders
    return stayed


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--seeds", type=int, default=5, help="seeds 0…N−1 per preset and configuration (default 5)")
    parse.add_argument("--presets", default=",".join(PRESETS), help="comma-separated: " + ",".join(PRESETS))
    parse.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2 steps of 8 renders at 32 px")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    stems = [s for s in args.presets.split(",") if s]
    unknown = sorted(set(stems) - set(PRESETS))
    if unknown:
        parse.error(f"unknown preset(s) {unknown}; known: {list(PRESETS)}")
    if args.quick:
        args.seeds = 1

    print(f"machine: {common.machine()}", flush=True)
    ext = common.blender()
    import bpy

    session_module = common.module(ext, "addon.blender.run.session")
    config_module = common.module(ext, "addon.blender.run.config")
    batch = common.module(ext, "addon.blender.run.batch")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="scenefit-preset-check-") as folder:
        workdir = Path(folder)
        for stem in stems:
            error_of, tolerance, unit = PRESETS[stem]
            preset = common.load_preset(ext, common.ROOT / "presets" / f"{stem}.json")
            scene = bpy.data.scenes.new(f"SceneFit check {stem}")
            common.module(ext, "addon.blender.scene.presets").apply_preset(preset, scene)
            base = config_module.RunConfig.from_preset(preset)
            count = preset.targets["count"]
            if args.quick:
                base = base.replace(resolution=[32, 32], batch_size=8, steps=2)
                count = 8
            truth = preset.truth()
            targets = workdir / f"{stem}-targets"
            batch.render_truth_targets(scene, base, truth, {**preset.targets, "count": count}, targets)
            budget = base.steps * base.batch_size
            print(
                f"\n{preset.name}: {base.steps} steps × {base.batch_size} renders, {base.engine} "
                f"{base.resolution[0]}×{base.resolution[1]}, {count} targets; tolerance {tolerance}{unit}",
                flush=True,
            )
            results[stem] = {name: [] for name in CONFIGS}
            for seed in range(args.seeds):
                for name, overrides in CONFIGS.items():  # interleaved, so that load on the machine hits both
                    config = base.replace(
                        targets=str(targets),
                        output_dir=str(workdir / f"{stem}-{name}-{seed}".replace(" ", "-")),
                        seed=seed,
                        optimizer={**base.optimizer, **overrides},
                    )
                    session = session_module.Session(scene, config, tick_seconds=0.5)
                    started = time.perf_counter()
                    session.start()
                    while session.step():
                        pass
                    seconds = time.perf_counter() - started
                    errors = [(int(e["renders"]), error_of(e["values"], truth)) for e in session.optimizer.history]
                    figure = {
                        "seed": seed,
                        "final_error": errors[-1][1],
                        "renders_to_stay": renders_to_stay(errors, tolerance, budget),
                        "seconds": seconds,
                    }
                    results[stem][name].append(figure)
                    print(
                        f"  {name:>13} seed {seed}: final {figure['final_error']:.3f}{unit}, under {tolerance} for "
                        f"good from {figure['renders_to_stay']} renders, {seconds:.0f} s",
                        flush=True,
                    )
            for name, runs in results[stem].items():
                rows.append(
                    (
                        stem,
                        name,
                        " / ".join(f"{f['final_error']:.3f}" for f in runs),
                        f"{common.median(f['final_error'] for f in runs):.3f}{unit}",
                        f"{common.median(f['renders_to_stay'] for f in runs):.0f} of {budget}",
                    )
                )
    print()
    header = ("preset", "configuration", "final error per seed", "median final error", "median renders to stay")
    print(common.table(rows, header))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
