"""Render workers: images/s of a fitting run rendered in this process and by N render workers, side by side.

The scene is the demo's supershape (presets/supershape_density.json) at 64×64, Cycles with 8 samples and Workbench
with the preset's own anti-aliasing. For each engine the runs alternate — one process, N workers, one process, … —
``--repeats`` times, each a real run (``Session.start()``, then ``Session.step()`` to the end) of ``--steps``
steps with the same seed. A run's rate counts from the end of its first batch to its end, so the workers'
start-up (printed apart) is left out. The learned values of every run must be the same, whatever N: printed as
a check.

Target (DESIGN.md): N workers at ≥ 0.9·N × the images/s of one process — where N free cores are there to use.

    .venv/bin/python bench/workers.py [--workers 2 --steps 12 --repeats 3 --engines CYCLES,BLENDER_WORKBENCH]
    .venv/bin/python bench/workers.py --quick      # smoke test
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

TARGET = 0.9
CYCLES_SAMPLES = 8
SIZE = 64


def run(ext: Any, scene: Any, config: Any) -> dict[str, Any]:
    """One run to its end: images/s after its first batch, seconds until then, its last learned values."""
    session = common.module(ext, "addon.blender.run.session").Session(scene, config, tick_seconds=0.5)
    started = time.perf_counter()
    session.start()
    first_batch: tuple[float, int] | None = None
    while session.step():
        if first_batch is None and session.renders >= config.batch_size:
            first_batch = (time.perf_counter(), session.renders)
    ended = time.perf_counter()
    since, renders = first_batch or (started, 0)
    return {
        "workers": config.workers,
        "images_per_s": (session.renders - renders) / (ended - since),
        "first_batch_s": since - started,
        "values": session.optimizer.history[-1]["values"],
    }


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--workers", type=int, default=2, help="render processes to compare with one process")
    parse.add_argument("--steps", type=int, default=12)
    parse.add_argument("--repeats", type=int, default=3)
    parse.add_argument("--engines", default="CYCLES,BLENDER_WORKBENCH")
    parse.add_argument("--quick", action="store_true", help="smoke test: tiny runs, figures meaningless")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    steps, repeats, targets_count = (2, 1, 4) if args.quick else (args.steps, args.repeats, 16)

    print(f"machine: {common.machine()}", flush=True)
    ext = common.blender()
    config_module = common.module(ext, "addon.blender.run.config")
    scene, preset = common.build_supershape_scene(ext)
    folder = Path(tempfile.mkdtemp(prefix="scenefit-bench-workers-"))
    rows, figures = [], {}
    for engine in args.engines.split(","):
        samples = CYCLES_SAMPLES if engine == "CYCLES" else preset.run["samples"]
        base = config_module.RunConfig.from_preset(preset).replace(
            steps=steps, resolution=(SIZE, SIZE), engine=engine, samples=samples, overwrite=True
        )
        targets = common.render_targets(ext, scene, preset, folder / f"targets-{engine}", base, targets_count)
        runs = []
        for repeat in range(repeats):
            for workers in (1, args.workers):
                output = folder / f"run-{engine}-{repeat}-{workers}"
                config = base.replace(targets=str(targets), output_dir=str(output), workers=workers)
                runs.append(run(ext, scene, config))
                print(f"{engine} workers={workers}: {runs[-1]['images_per_s']:.1f} images/s", flush=True)
        rates = {w: common.median(r["images_per_s"] for r in runs if r["workers"] == w) for w in (1, args.workers)}
        start = {w: common.median(r["first_batch_s"] for r in runs if r["workers"] == w) for w in (1, args.workers)}
        same = all(r["values"] == runs[0]["values"] for r in runs)
        ratio = rates[args.workers] / rates[1]
        rows.append(
            [engine, f"{rates[1]:.1f}", f"{rates[args.workers]:.1f}", f"{ratio:.2f}", f"{start[1]:.1f} / "
             f"{start[args.workers]:.1f}", "yes" if same else "NO"]
        )  # fmt: skip
        figures[engine] = {"rates": rates, "first_batch_s": start, "ratio": ratio, "same_values": same, "runs": runs}
    header = ["engine", "1 process", f"{args.workers} workers", "ratio", "first batch s (1 / N)", "same values"]
    print(common.table(rows, header))
    print(f"images/s ratio {args.workers} workers / 1 process (target ≥ {TARGET * args.workers:.1f} with free cores)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0 if all(f["same_values"] for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
