"""Renders to convergence: blendtorch's densityopt configuration against SceneFit's default, same renderer.

"Default" is what the supershape presets run: their objective, the discriminator, with SceneFit's defaults for it
(the energy distance, SceneFit's default objective elsewhere, barely sees the stand-in's m2 shading rings).

The supershape protocol (bench/common.py): LogNormal m1/m2 start μ = (1.2, 3.0) σ = 0.4, truth μ* = 2.25 σ* = 0.1,
64 targets. Each configuration runs once per seed up to a fixed render budget; a run's figure is the number of
renders after which max|μ − μ*| < 0.1 held for the rest of the run (the budget if it ends outside the band).
Prints each run, the medians and their ratio (target: default ≤ 0.25 × blendtorch).

    .venv/bin/python bench/sample_efficiency.py --renderer blender      # real supershape renders (the figure)
    .venv/bin/python bench/sample_efficiency.py --renderer synthetic    # numpy stand-in, no Blender
    .venv/bin/python bench/sample_efficiency.py --quick                 # smoke test: 1 seed, tiny budget

``--renderer synthetic`` drives the optimizer synchronously (ask, render, tell); ``--renderer blender`` goes
through the product's path, ``Session.step()`` with its training thread, on the demo preset's scene and render
settings (64×64 Workbench).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_RATIO = 0.25
CONFIGS = ("blendtorch", "default")


DEFAULT_OVERRIDES: dict[str, Any] = {}  # --default-overrides: try other settings as "default"


def optimizer_config(name: str, seed: int) -> Any:
    from addon.engine.optimizer import OptimizerConfig

    if name == "default":  # SceneFit's defaults for the supershape presets' objective, the discriminator
        return OptimizerConfig.default(**{"objective": "adversarial", **DEFAULT_OVERRIDES, "seed": seed})
    return OptimizerConfig.blendtorch(seed=seed)


def synthetic_runner(size: int, budget: int) -> Callable[[str, int], dict[str, Any]]:
    import numpy as np
    import torch

    from addon.engine import synthetic
    from addon.engine.distributions import LogNormal, ParameterSpace
    from addon.engine.optimizer import AskTellOptimizer

    torch.set_num_threads(1)  # what the session's training thread gets on 2 cores
    truth = ParameterSpace({label: LogNormal(mu, common.TRUTH_SIGMA) for label, mu in common.TRUTH_MU.items()})
    raw = truth.sample(common.N_TARGETS, torch.Generator().manual_seed(1000))
    targets = np.stack([synthetic.supershape(truth.decode(row), size) for row in raw])

    def run(name: str, seed: int) -> dict[str, Any]:
        space = ParameterSpace({label: LogNormal(mu, sigma) for label, (mu, sigma) in common.START.items()})
        optimizer = AskTellOptimizer(space, targets, optimizer_config(name, seed))
        started = time.perf_counter()
        while optimizer.renders < budget:
            samples = optimizer.ask()
            optimizer.tell([s.id for s in samples], [synthetic.supershape(s.values, size) for s in samples])
        return {"history": optimizer.history, "seconds": time.perf_counter() - started}

    return run


def blender_runner(budget: int, workdir: Path, quick: bool) -> Callable[[str, int], dict[str, Any]]:
    ext = common.blender()
    session_module = common.module(ext, "addon.blender.run.session")
    config_module = common.module(ext, "addon.blender.run.config")
    scene, preset = common.build_supershape_scene(ext)
    base = config_module.RunConfig.from_scene(scene)
    count = 8 if quick else common.N_TARGETS
    if quick:
        base = base.replace(resolution=[32, 32])
    targets = common.render_targets(ext, scene, preset, workdir / "targets", base, count)
    print(
        f"scene: {preset.name}; {base.engine} {base.samples} samples {base.resolution[0]}×{base.resolution[1]}; "
        f"{count} targets in {targets}",
        flush=True,
    )

    def run(name: str, seed: int) -> dict[str, Any]:
        config = optimizer_config(name, seed)
        overrides = {k: v for k, v in config.to_dict().items() if k not in ("batch_size", "seed")}
        run_config = base.replace(
            targets=str(targets),
            output_dir=str(workdir / f"{name}-{seed}"),
            steps=-(-budget // config.batch_size),
            batch_size=config.batch_size,
            seed=seed,
            optimizer=overrides,
        )
        session = session_module.Session(scene, run_config, tick_seconds=0.5)
        started = time.perf_counter()
        session.start()
        while session.step():
            pass
        return {"history": list(session.optimizer.history), "seconds": time.perf_counter() - started}

    return run


def first_entry(history: list[dict[str, Any]], budget: int) -> int:
    """Renders when the band was first entered (blendtorch's published figure; it may leave the band again)."""
    return next((int(e["renders"]) for e in history if common.mu_error(e["values"]) < common.TOLERANCE), budget)


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--renderer", choices=("synthetic", "blender"), default="synthetic")
    parse.add_argument("--seeds", type=int, default=5, help="seeds 0…N−1 per configuration (default 5)")
    parse.add_argument(
        "--budget", type=int, default=4544, help="renders per run (default 4544 = 71 × 64, blendtorch's own run)"
    )
    parse.add_argument("--size", type=int, default=32, help="synthetic image size (default 32; Blender: the preset's)")
    parse.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: blendtorch,default")
    parse.add_argument(
        "--quick", action="store_true", help="smoke test: 1 seed, 64 renders, 32 px (Blender: 8 targets)"
    )
    parse.add_argument(
        "--default-overrides",
        type=json.loads,
        default={},
        help="JSON object of OptimizerConfig fields replacing the default's, e.g. '{\"d_lr\": 1e-4}'",
    )
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    DEFAULT_OVERRIDES.update(args.default_overrides)
    if args.quick:
        args.seeds, args.budget, args.size = 1, 64, 32
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parse.error(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")

    print(f"machine: {common.machine()}", flush=True)
    print(
        f"protocol: start μ={common.START['m1'][0]}/{common.START['m2'][0]} σ=0.4, truth μ*=2.25/2.25 σ*=0.1, "
        f"{common.N_TARGETS} targets; converged = max|μ−μ*|<{common.TOLERANCE} for the rest of the run; "
        f"budget {args.budget} renders; renderer {args.renderer}"
        + (f"; default with {args.default_overrides}" if args.default_overrides else ""),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="scenefit-sample-efficiency-") as folder:
        if args.renderer == "synthetic":
            run = synthetic_runner(args.size, args.budget)
        else:
            run = blender_runner(args.budget, Path(folder), args.quick)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for seed in range(args.seeds):
            for name in configs:  # interleaved, so that a burst of load on the machine hits both
                outcome = run(name, seed)
                history = outcome["history"]
                figure = {
                    "seed": seed,
                    "renders_to_converge": common.renders_to_converge(history, args.budget),
                    "first_in_band": first_entry(history, args.budget),
                    "final_error": common.mu_error(history[-1]["values"]) if history else float("nan"),
                    "renders": int(history[-1]["renders"]) if history else 0,
                    "seconds": outcome["seconds"],
                    "final": {k: {"mu": v["mu"], "sigma": v["sigma"]} for k, v in history[-1]["values"].items()},
                }
                results[name].append(figure)
                final = "; ".join(f"{k} μ={v['mu']:.3f} σ={v['sigma']:.3f}" for k, v in figure["final"].items())
                print(
                    f"{name:>10} seed {seed}: converged at {figure['renders_to_converge']:>5} renders "
                    f"(first in band {figure['first_in_band']}), final max|μ−μ*| {figure['final_error']:.3f} "
                    f"({final}), {figure['renders']} renders in {figure['seconds']:.0f} s",
                    flush=True,
                )

    medians = {name: common.median(f["renders_to_converge"] for f in runs) for name, runs in results.items()}
    rows = [
        (
            name,
            " / ".join(str(f["renders_to_converge"]) for f in runs),
            f"{medians[name]:.0f}",
            f"{common.median(f['first_in_band'] for f in runs):.0f}",
            f"{common.median(f['seconds'] for f in runs):.0f}",
        )
        for name, runs in results.items()
    ]
    print()
    header = ("configuration", "renders to converge (per seed)", "median", "median first in band", "median s/run")
    print(common.table(rows, header))
    summary: dict[str, Any] = {"renderer": args.renderer, "budget": args.budget, "medians": medians, "runs": results}
    if "blendtorch" in medians and "default" in medians:
        ratio = medians["default"] / medians["blendtorch"]
        summary["ratio"] = ratio
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"\nratio default / blendtorch = {medians['default']:.0f} / {medians['blendtorch']:.0f} = {ratio:.3f} "
            f"({verdict} the target ≤ {TARGET_RATIO}; a run that never converges counts as the budget, "
            f"{args.budget})"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
