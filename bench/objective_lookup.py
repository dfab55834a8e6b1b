"""Objectives compared on the independent scenes in minutes: the optimizer against a lookup table of plain renders.

A full run of ``independent_targets.py`` renders 1,600 images per seed through the Session (an hour and more for
6 scenes × 5 seeds on 2 cores). To compare objectives and schedules, this script renders each scene once on a
grid of its learned values — a plain ``bpy.ops.render.render`` loop at the scene's saved settings (at the targets'
size, as SceneFit renders), loaded the way SceneFit loads targets — and then drives the ask/tell optimizer with the
nearest grid image as each sample's render, with the Session's pipeline lag (batch n + 1 is drawn before batch n
is told), 5 seeds per configuration, 100 steps × 16. Targets: the same plain 64-target loop as the suite.

What the table cannot show: Cycles noise per sample (one render per grid value, its noise seed fixed as Cycles'
is) and values between grid points. The figures of record are ``independent_targets.py``'s.

    .venv/bin/python bench/objective_lookup.py                                  # 6 scenes, energy vs adversarial
    .venv/bin/python bench/objective_lookup.py --scenes tilt --configs '{"energy": {"param_lr_half_life": 30}}'
    .venv/bin/python bench/objective_lookup.py --quick                          # smoke test
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_SEED = 1234
# Grid per scene and label, in the property's units: fine against each truth's σ (0.5° against 5–6°).
GRIDS: dict[str, dict[str, np.ndarray]] = {
    "gn_radius": {"radius": np.arange(0.05, 2.0001, 0.01)},
    "tilt": {"tilt": np.radians(np.arange(-180.0, 180.01, 0.5))},
    "light_and_colour": {"strength": np.arange(0.0, 6.0001, 0.1), "red": np.arange(0.0, 1.0001, 0.025)},
    "driven_choice": {"choice": np.array([0, 1, 2])},
    "hires_targets": {"height": np.arange(-0.5, 2.5001, 0.01)},
    "metasim_yaw": {"yaw": np.radians(np.arange(-180.0, 180.01, 0.5))},
}
CONFIGS = {"energy": {}, "adversarial": {"objective": "adversarial"}}


def lookup_table(bpy: Any, targets_module: Any, ind: Any, name: str, folder: Path, count: int, size: int, step: int):
    """(grids, images (n1[, n2], H, W, C), targets (N, H, W, C)) of scene ``name``, every ``step``-th grid value."""
    case = ind.build(bpy, name)
    ind.render_targets(bpy, case, folder / "targets", count=count, seed=TARGET_SEED)
    grids = {label: values[::step] for label, values in GRIDS[name].items()}
    scene = case.scene
    scene.render.resolution_percentage = case.target_override.get("resolution_percentage", 100)
    (folder / "grid").mkdir(parents=True, exist_ok=True)
    categorical = {label for label in grids if case.truth[label]["kind"] == "categorical"}
    for k, combo in enumerate(itertools.product(*grids.values())):
        for label, value in zip(grids, combo, strict=True):
            case.setters[label](int(value) if label in categorical else float(value))
        ind._render_still(bpy, scene, folder / "grid" / f"grid_{k:05d}.png")
    images = targets_module.load_targets(folder / "grid", (size, size))[0]
    targets = targets_module.load_targets(folder / "targets", (size, size))[0]
    return case, grids, images.reshape(*[len(g) for g in grids.values()], *images.shape[1:]), targets


def fit(case: Any, grids: dict, images: np.ndarray, targets: np.ndarray, config: Any, steps: int) -> dict[str, Any]:
    """The optimizer with the Session's lag of one batch, the nearest grid image as each render."""
    from addon.engine.distributions import ParameterSpace
    from addon.engine.optimizer import AskTellOptimizer

    def render(values: dict[str, Any]) -> np.ndarray:
        index = tuple(int(np.abs(grid - float(values[label])).argmin()) for label, grid in grids.items())
        return images[index]

    start = {spec["label"]: dict(spec["distribution"]) for spec in case.specs}
    for distribution in start.values():  # a categorical spec without probs starts uniform, as in the Session
        if distribution["kind"] == "categorical" and "probs" not in distribution:
            distribution["probs"] = [1 / len(distribution["choices"])] * len(distribution["choices"])
    space = ParameterSpace.from_dict(start)
    optimizer = AskTellOptimizer(space, targets, config)
    queue = [optimizer.ask()]
    for _ in range(steps):
        queue.append(optimizer.ask())
        batch = queue.pop(0)
        optimizer.tell([s.id for s in batch], [render(s.values) for s in batch])
    return optimizer.values()


def main(argv: list[str] | None = None) -> int:
    from tests import independent_scenes as ind

    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--scenes", default=",".join(GRIDS), help="comma-separated: " + ",".join(GRIDS))
    parse.add_argument(
        "--configs",
        type=json.loads,
        default=CONFIGS,
        help='JSON: name → OptimizerConfig.default() overrides (default: {"energy": {}, "adversarial": …})',
    )
    parse.add_argument("--seeds", type=int, default=5)
    parse.add_argument("--steps", type=int, default=100)
    parse.add_argument("--batch", type=int, default=16)
    parse.add_argument("--quick", action="store_true", help="smoke test: metasim_yaw, coarse grid, 1 seed, 3 steps")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    names = [s for s in args.scenes.split(",") if s]
    unknown = sorted(set(names) - set(GRIDS))
    if unknown:
        parse.error(f"unknown scene(s) {unknown}; known: {list(GRIDS)}")
    count, size, grid_step = ind.N_TARGETS, ind.TRAINING_SIZE[0], 1
    if args.quick:
        names, args.seeds, args.steps, args.batch, count, size, grid_step = ["metasim_yaw"], 1, 3, 4, 8, 32, 20

    print(f"machine: {common.machine()}", flush=True)
    ext = common.blender()
    import bpy
    import torch

    from addon.engine.optimizer import OptimizerConfig

    torch.set_num_threads(1)
    targets_module = common.module(ext, "addon.blender.targets.images")
    rows, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="scenefit-lookup-") as folder:
        for name in names:
            started = time.perf_counter()
            case, grids, images, targets = lookup_table(
                bpy, targets_module, ind, name, Path(folder) / name, count, size, grid_step
            )
            print(
                f"\n{name}: {images.shape[:-3]} grid renders + {len(targets)} targets in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
            for config_name, overrides in args.configs.items():
                runs = []
                for seed in range(args.seeds):
                    config = OptimizerConfig.default(**{**overrides, "batch_size": args.batch, "seed": seed})
                    values = fit(case, grids, images, targets, config, args.steps)
                    errors = ind.errors(case, values)
                    ratios = {label: ind.sigma_ratio(case.truth[label], values[label]) for label in case.labels}
                    runs.append({"errors": errors, "sigma_ratio": ratios, "inside": ind.inside(case, values)})
                    print(
                        f"  {config_name} seed {seed}: "
                        + "; ".join(
                            f"{label} error {errors[label] / case.tolerance[label]:.2f} tol"
                            + (f" σ/σ* {ratios[label]:.2f}" if ratios[label] is not None else "")
                            for label in case.labels
                        ),
                        flush=True,
                    )
                figures.setdefault(name, {})[config_name] = runs
                ratios = [r for run in runs for r in run["sigma_ratio"].values() if r is not None]
                rows.append(
                    (
                        name,
                        config_name,
                        f"{sum(run['inside'] for run in runs)}/{len(runs)}",
                        f"{common.median(ratios):.2f}" if ratios else "–",
                        " / ".join(
                            f"{max(run['errors'][label] / case.tolerance[label] for label in case.labels):.2f}"
                            for run in runs
                        ),
                    )
                )
    print()
    print(common.table(rows, ("scene", "configuration", "μ inside", "median σ/σ*", "worst μ error ÷ tolerance")))
    if args.json:
        args.json.write_text(json.dumps({"args": {**vars(args), "json": str(args.json)}, "figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
