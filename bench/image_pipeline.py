"""Can a discriminator tell renders from targets when both show the TRUE parameters? It should not.

A Cycles scene (tests/blender_scenes.py's cube) saved at 64×64, 8 samples, AgX; its targets are made by a plain
``bpy.ops.render.render`` loop at those saved settings, never through SceneFit. The renders come from SceneFit's
render path at a 32×32 training size, from the same yaw distribution (another seed), in four ways: at the training
size (what SceneFit did before the image pipeline), at the targets' size then through the targets' resize (what a
run does now), the same with the targets' own samples, and with the objective's input blur. For each, the default
DCGAN discriminator trains on half the renders against half the targets and is scored on the held-out halves:
D(real) − D(sim) near 0 means the renders pass for targets; near 1, it tells them apart by something the
parameters cannot change.

    .venv/bin/python bench/image_pipeline.py            # 48 images a side, 300 discriminator steps, 3 seeds
    .venv/bin/python bench/image_pipeline.py --quick    # smoke test: 8 images a side, 10 steps, 1 seed
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TRUTH_DEG = (60.0, 20.0)
TRAINING = (32, 32)
SCENE = {"resolution": (64, 64), "samples": 8}
# name: (render size, Cycles samples of the renders, objective input blur in px)
WAYS: dict[str, tuple[tuple[int, int] | None, int, float]] = {
    "training size, 4 samples": (None, 4, 0.0),
    "targets' size, 4 samples": ((64, 64), 4, 0.0),
    "targets' size, 8 samples": ((64, 64), 8, 0.0),
    "targets' size, 4 samples, blur 0.7 px": ((64, 64), 4, 0.7),
}


def cube_targets(bpy: Any, scene: Any, folder: Path, count: int, seed: int) -> None:
    """The user's own render loop: set the yaw, render at the scene's saved settings, save a PNG."""
    import numpy as np

    cube = bpy.data.objects["Cube"]
    rng = np.random.default_rng(seed)
    for index in range(count):
        cube.rotation_euler[2] = math.radians(rng.normal(*TRUTH_DEG))
        scene.render.filepath = str(folder / f"target_{index:03d}.png")
        bpy.ops.render.render(write_still=True)
    cube.rotation_euler[2] = 0.0


def gap(targets: Any, renders: Any, blur: float, steps: int, seed: int) -> float:
    """Held-out D(real) − D(sim) of SceneFit's default discriminator trained on the other halves."""
    import torch

    from addon.engine.objectives import ObjectiveConfig, make_objective
    from addon.engine.optimizer import OptimizerConfig, images_to_tensor

    real, fake = images_to_tensor(targets, "targets"), images_to_tensor(renders, "renders")
    half = len(real) // 2
    options = {**OptimizerConfig.default().objective_config().to_dict(), "input_blur": blur}
    generator = torch.Generator().manual_seed(seed)
    objective = make_objective("adversarial", real[:half], ObjectiveConfig.from_dict(options), generator)
    for _ in range(steps):
        objective.update(fake[:half][torch.randint(0, half, (min(16, half),), generator=generator)])
    held_out = make_objective("adversarial", real[half:], ObjectiveConfig.from_dict(options), generator)
    held_out.net = objective.net
    stats = held_out.evaluate(fake[half:])
    return stats["d_real"] - stats["d_sim"]


def main() -> int:
    parse = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, figures meaningless")
    parse.add_argument("--seeds", type=int, default=3, help="discriminator seeds per way (default 3)")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args()
    count, steps, seeds = (8, 10, 1) if args.quick else (48, 300, args.seeds)

    print(f"machine: {common.machine()}")
    ext = common.blender()
    import bpy
    import numpy as np
    import torch

    from tests.blender_scenes import cube_scene

    torch.set_num_threads(1)
    render = common.module(ext, "addon.blender.scene.render")
    sampler = common.module(ext, "addon.blender.run.sampler")
    config_module = common.module(ext, "addon.blender.run.config")
    targets_module = common.module(ext, "addon.blender.targets.images")
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = cube_scene(bpy)
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = SCENE["samples"], False
    scene.render.resolution_x, scene.render.resolution_y = SCENE["resolution"]
    folder = Path(tempfile.mkdtemp(prefix="scenefit-pipeline-"))
    cube_targets(bpy, scene, folder, count, seed=0)
    targets, _ = targets_module.load_targets(folder, TRAINING, 3)

    yaw = sampler.bind([config_module.SpecConfig("yaw", "OBJECT", "Cube", "rotation_euler[2]", {"kind": "normal"})])
    rng = np.random.default_rng(1)
    figures: dict[str, list[float]] = {}
    rows = []
    for name, (render_size, samples, blur) in WAYS.items():
        settings = render.RenderSettings(TRAINING, "CYCLES", samples, render_size=render_size)
        with sampler.Sampler(scene, yaw, settings) as rendering:
            renders = [rendering.render(i, {"yaw": math.radians(rng.normal(*TRUTH_DEG))}) for i in range(count)]
        figures[name] = [gap(targets, np.stack(renders), blur, steps, seed) for seed in range(seeds)]
        rows.append([name, *(f"{g:.3f}" for g in figures[name]), f"{common.median(figures[name]):.3f}"])
        print(f"{name}: held-out D(real) − D(sim) {figures[name]}", flush=True)
    print()
    print(common.table(rows, ["renders", *(f"seed {s}" for s in range(seeds)), "median gap"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
