"""How much faster does a training step run on a GPU than on the CPU?

Times, per image size, what a step of training costs besides rendering, with SceneFit's default objective
settings (``OptimizerConfig.default``) and 16 renders against 64 targets:

* adversarial step — one update of the default DCGAN discriminator on 16 renders + a minibatch of 16 targets,
  then the reward pass over the 16 renders (``AdversarialObjective.update`` + ``rewards``);
* energy rewards — the energy objective's rewards of 16 renders against the 64 targets;
* adversarial tell — the whole ``AskTellOptimizer.tell`` around the adversarial step (renders to tensors, the
  rollback copy of the learning state, the score-function step on the CPU).

Each runs on the CPU with one torch thread and with all of them, and on CUDA where torch has it; renders arrive
as CPU tensors every step (as the optimizer gets them), so their copy to the GPU is counted. The blur is 0 (the
coarse-to-fine blur of the first steps fades within ~80 steps). A few warm-up steps, then the median of the rest;
CUDA steps are timed between ``torch.cuda.synchronize()`` calls. No bpy.

    python bench/gpu_training.py [--sizes 64 256] [--steps 20] [--json figures.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from addon.engine.distributions import Normal, ParameterSpace  # noqa: E402
from addon.engine.objectives import make_objective  # noqa: E402
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig  # noqa: E402

RENDERS = 16
TARGETS = 64
WARM_UP = 3
CASES = ("adversarial step", "energy rewards", "adversarial tell")


def images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) smooth random images in [0, 1]: blobs, so that blur and distances see real structure."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 8, 8, 3))
    return np.clip(np.kron(coarse, np.ones((1, size // 8, size // 8, 1))), 0.0, 1.0).astype(np.float32)


def as_tensor(batch: np.ndarray) -> torch.Tensor:
    """(n, H, W, C) [0, 1] → (n, C, H, W) [-1, 1], the objectives' input."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous() * 2 - 1


def step_function(case: str, size: int, device: str) -> Callable[[int], None]:
    """One step of ``case`` at ``size`` on ``device``, given the step's index (each step gets other renders)."""
    config = OptimizerConfig.default(objective="energy" if case == "energy rewards" else "adversarial", device=device)
    targets = images(TARGETS, size, seed=1)
    renders = [images(RENDERS, size, seed=100 + i) for i in range(4)]
    if case == "adversarial tell":
        space = ParameterSpace({"a": Normal(0.0, 1.0), "b": Normal(0.0, 1.0)})
        optimizer = AskTellOptimizer(space, targets, config.replace(batch_size=RENDERS, coarse_to_fine=None))

        def tell(i: int) -> None:
            ids = [sample.id for sample in optimizer.ask()]
            optimizer.tell(ids, list(renders[i % len(renders)]))

        return tell
    objective = make_objective(
        config.objective, as_tensor(targets), config.objective_config(), torch.Generator().manual_seed(0), device
    )
    fakes = [as_tensor(batch) for batch in renders]
    if case == "energy rewards":
        return lambda i: objective.rewards(fakes[i % len(fakes)])

    def adversarial(i: int) -> None:
        objective.update(fakes[i % len(fakes)])
        objective.rewards(fakes[i % len(fakes)])

    return adversarial


def median_ms(step: Callable[[int], None], steps: int, cuda: bool) -> float:
    times = []
    for i in range(WARM_UP + steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(i)
        if cuda:
            torch.cuda.synchronize()
        if i >= WARM_UP:
            times.append((time.perf_counter() - start) * 1000)
    return common.median(times)


def gpu_name() -> str:
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sides in pixels")
    parse.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up (median reported)")
    parse.add_argument("--json", type=Path, help="also write the figures here")
    parse.add_argument("--quick", action="store_true", help="smoke test: 32 px, 2 steps (figures meaningless)")
    args = parse.parse_args()
    sizes, steps = ([32], 2) if args.quick else (args.sizes, args.steps)
    all_threads = os.cpu_count() or 1
    columns = [("cpu", 1), ("cpu", all_threads)] + ([("cuda", all_threads)] if torch.cuda.is_available() else [])

    print(f"machine: {common.machine()}; GPU: {gpu_name()}; torch {torch.__version__}", flush=True)
    figures = []
    for size in sizes:
        for case in CASES:
            row = {"size": size, "case": case}
            for device, threads in columns:
                torch.set_num_threads(threads)
                key = f"{device} {threads} thread{'s' if threads > 1 else ''}"
                row[key] = median_ms(step_function(case, size, device), steps, cuda=device == "cuda")
            figures.append(row)
            print(f"  {size} px {case}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in row.items() if "thread" in k))

    keys = [k for k in figures[0] if "thread" in k]
    header = ["size", "step", *(f"{k} (ms)" for k in keys)]
    if len(keys) == 3:
        header += ["CPU 1 thread ÷ GPU", "CPU all threads ÷ GPU"]
    rows = []
    for row in figures:
        cells = [f"{row['size']}×{row['size']}", row["case"], *(f"{row[k]:.1f}" for k in keys)]
        if len(keys) == 3:
            cells += [f"{row[keys[0]] / row[keys[2]]:.1f}×", f"{row[keys[1]] / row[keys[2]]:.1f}×"]
        rows.append(cells)
    print()
    print(common.table(rows, header))
    if len(keys) < 3:
        print("(no CUDA GPU here: CPU ÷ GPU ratios need one)")
    if args.json:
        args.json.write_text(json.dumps({"machine": common.machine(), "gpu": gpu_name(), "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
