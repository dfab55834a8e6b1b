"""Loop efficiency: images/s of a full fitting run divided by images/s of the bare render loop, same process.

The scene is the demo's supershape (presets/supershape_density.json) at 64×64. For each engine (Cycles with 8
samples; Workbench with the demo preset's anti-aliasing, AA off) the two loops alternate, ``--repeats`` times:

* bare: a sampler (``sampler.Sampler``, what a run renders through) applies a sample and renders it to an array,
  nothing else;
* full: a SceneFit run through the real path — ``Session.start()``, then ``Session.step()`` until it has rendered
  as many images — default optimizer settings and batch size, the training thread learning while the main
  thread renders. It is the start of a long run (64 times longer, so report snapshots come as rarely as in one),
  stopped after those images; its rate runs to the step that rendered the last of them, and the end (results,
  plots) is printed separately.

It prints both rates and their ratio (target ≥ 0.95: training hidden behind rendering) and where the full run's
main thread spent its time: applying samples, rendering, reading the image back, waiting for the training
thread before drawing the next batch (the pipeline's lag of one batch), and the rest (asking, progress, write-back),
plus the training thread's time per batch.

    .venv/bin/python bench/loop_efficiency.py              # 4 × 256 images per loop and engine
    .venv/bin/python bench/loop_efficiency.py --quick      # smoke test
    .venv/bin/python bench/loop_efficiency.py --cprofile   # also the main thread's top functions in a full run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 0.95
CYCLES_SAMPLES = 8
LONG_RUN = 64  # the full loop is the start of a run this many times longer (see Bench.run_config)


class Timers:
    """Wall seconds, CPU seconds of the calling thread and calls per named phase; wraps callables without changing
    what they do. ``process_cpu`` is the CPU time of every thread of the process over the timed loop."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.process_cpu = 0.0

    def wrap(self, name: str, function: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.cpu[name] += time.thread_time() - cpu
                self.calls[name] += 1

        return timed


@contextmanager
def patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


class Bench:
    def __init__(self, workdir: Path, size: int, targets: int) -> None:
        self.ext = common.blender()
        self.render = common.module(self.ext, "addon.blender.scene.render")
        self.sampler = common.module(self.ext, "addon.blender.run.sampler")
        self.session = common.module(self.ext, "addon.blender.run.session")
        self.config = common.module(self.ext, "addon.blender.run.config")
        self.scene, self.preset = common.build_supershape_scene(self.ext)
        self.base = self.config.RunConfig.from_scene(self.scene)
        self.workdir = workdir
        self.size = size
        self.targets = targets

    def run_config(self, engine: str, samples: int, images: int) -> Any:
        from addon.engine.optimizer import OptimizerConfig

        batch = OptimizerConfig.default().batch_size
        config = self.base.replace(
            engine=engine,
            samples=samples,
            resolution=[self.size, self.size],
            batch_size=batch,
            # A long run, stopped once ``images`` are rendered: its report snapshots (one per steps/32 batches)
            # and end are those of a long run, which the steady state rate describes.
            steps=LONG_RUN * max(1, images // batch),
        )
        folder = self.workdir / f"targets-{engine}"
        if not folder.is_dir():
            common.render_targets(self.ext, self.scene, self.preset, folder, config, self.targets)
        # Every repeat runs into the same folder: each replaces the last (overwrite).
        return config.replace(targets=str(folder), output_dir=str(self.workdir / f"out-{engine}"), overwrite=True)

    def bare(self, config: Any, images: int) -> tuple[float, Timers]:
        """Apply a sample, render, read back; values drawn from the start distribution like a run's first batch."""
        import numpy as np

        timers = Timers()
        start = {s.label: (s.distribution["mu"], s.distribution["sigma"]) for s in config.specs}
        rng = np.random.default_rng(0)
        settings = self.render.RenderSettings(config.resolution, config.engine, config.samples, config.channels)
        sampler = self.sampler.Sampler(self.scene, self.sampler.bind(config.specs), settings)
        with sampler, patched(self.render, "read_tga", timers.wrap("read back", self.render.read_tga)):
            sampler.render(-1, {})  # first render: engine start-up, not the loop
            with (
                patched(sampler, "apply", timers.wrap("apply", sampler.apply)),
                patched(sampler.renderer, "render", timers.wrap("render", sampler.renderer.render)),
            ):
                started, cpu = time.perf_counter(), time.process_time()
                for i in range(images):
                    values = {label: float(rng.lognormal(mu, sigma)) for label, (mu, sigma) in start.items()}
                    sampler.render(i, values)
                elapsed = time.perf_counter() - started
            timers.process_cpu = time.process_time() - cpu
        timers.seconds["render"] -= timers.seconds["read back"]
        return images / elapsed, timers

    def full(self, config: Any, images: int, profile: cProfile.Profile | None) -> tuple[float, Timers, dict[str, Any]]:
        """Rate while optimising: from the first step to the step that rendered the last measured image, in a long
        run stopped there (its end — dropping the batches not yet learned, results, plots — is timed separately)."""
        timers = Timers()
        session = self.session.Session(self.scene, config, tick_seconds=0.05)
        session.start()
        optimizer = session.optimizer
        thread = session._thread
        with (
            patched(self.render, "read_tga", timers.wrap("read back", self.render.read_tga)),
            patched(session.sampler.renderer, "render", timers.wrap("render", session.sampler.renderer.render)),
            patched(session.sampler, "apply", timers.wrap("apply", session.sampler.apply)),
            patched(thread, "wait_idle", timers.wrap("waiting for training", thread.wait_idle)),
            patched(thread, "submit", timers.wrap("submit", thread.submit)),
            patched(optimizer, "ask", timers.wrap("ask", optimizer.ask)),
            patched(session, "_publish", timers.wrap("progress + write-back", session._publish)),
            patched(session.report, "batch", timers.wrap("report snapshots", session.report.batch)),
            patched(optimizer, "tell", timers.wrap("training thread: tell", optimizer.tell)),
        ):
            # Warm-up: the first render of a session starts the engine (the bare loop discards one as well).
            session.sampler.render(-1, {})
            started, cpu = time.perf_counter(), time.process_time()
            if profile is not None:
                profile.enable()
            while session.renders < images:
                session.step()
            measured, measured_cpu = time.perf_counter(), time.process_time()
            session.stop()
            if profile is not None:
                profile.disable()
            ended = time.perf_counter()
        timers.seconds["render"] -= timers.seconds["read back"]
        elapsed = measured - started
        timers.process_cpu = measured_cpu - cpu
        history = optimizer.history
        info = {
            "renders": session.renders,
            "steps": len(history),
            "status": session.status,
            "elapsed": elapsed,
            "finish_s": ended - measured,
            "total_s": ended - started,
        }
        return session.renders / elapsed, timers, info


def breakdown(timers: Timers, images: int, elapsed: float) -> str:
    main = (
        "apply",
        "render",
        "read back",
        "waiting for training",
        "submit",
        "ask",
        "progress + write-back",
        "report snapshots",
    )
    parts = [f"{name} {timers.seconds[name] / images * 1e3:.1f}" for name in main if name in timers.seconds]
    rest = elapsed - sum(timers.seconds[name] for name in main if name in timers.seconds)
    parts.append(f"other {rest / images * 1e3:.1f}")
    text = "main thread ms/image: " + ", ".join(parts)
    text += f"; CPU ms/image, all threads: {timers.process_cpu / images * 1e3:.1f}"
    tell = timers.seconds.get("training thread: tell")
    if tell is not None:
        calls = timers.calls["training thread: tell"]
        cpu = timers.cpu["training thread: tell"]
        text += (
            f", of which training {cpu / images * 1e3:.1f} (training thread: {tell / max(calls, 1) * 1e3:.0f} ms "
            f"wall per batch of {images // max(calls, 1)})"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--images", type=int, default=256, help="images per loop (default 256)")
    parse.add_argument("--repeats", type=int, default=4, help="bare/full pairs per engine (default 4)")
    parse.add_argument("--engines", default="CYCLES,BLENDER_WORKBENCH", help="comma-separated engines")
    parse.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parse.add_argument(
        "--quick", action="store_true", help="smoke test: 16 images at 32 px, 8 targets, one pair, Workbench only"
    )
    parse.add_argument("--cprofile", action="store_true", help="print the main thread's top functions (full run)")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parse.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.engines, args.size = 16, 1, "BLENDER_WORKBENCH", 32

    import torch

    print(f"machine: {common.machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="scenefit-loop-efficiency-") as folder:
        bench = Bench(Path(folder), args.size, 8 if args.quick else common.N_TARGETS)
        print(
            f"scene: {bench.preset.name}; {args.size}×{args.size}; {args.images} images per loop; torch threads "
            f"in the training thread: {common.module(bench.ext, 'addon.engine.training').default_torch_threads()} of "
            f"{torch.get_num_threads()}",
            flush=True,
        )
        results: dict[str, Any] = {}
        rows = []
        # Workbench as the demo renders it (its preset's anti-aliasing samples), Cycles with 8 samples.
        workbench = bench.base.samples if bench.base.engine == "BLENDER_WORKBENCH" else 1
        engines = [("CYCLES", CYCLES_SAMPLES), ("BLENDER_WORKBENCH", workbench)]
        for engine, samples in [(e, n) for e, n in engines if e in args.engines.split(",")]:
            config = bench.run_config(engine, samples, args.images)
            pairs = []
            for repeat in range(args.repeats):
                bare_rate, bare_timers = bench.bare(config, args.images)
                profile = cProfile.Profile() if args.cprofile and repeat == args.repeats - 1 else None
                full_rate, full_timers, info = bench.full(config, args.images, profile)
                ratio = full_rate / bare_rate
                pairs.append({"bare": bare_rate, "full": full_rate, "ratio": ratio, **info})
                print(
                    f"{engine} {samples} samples, pair {repeat + 1}: bare {bare_rate:.1f} img/s, full "
                    f"{full_rate:.1f} img/s (batch {config.batch_size}, {info['steps']} steps; then "
                    f"{info['finish_s']:.1f} s to finish), ratio {ratio:.3f}",
                    flush=True,
                )
                print("  bare " + breakdown(bare_timers, args.images, args.images / bare_rate), flush=True)
                print("  full " + breakdown(full_timers, info["renders"], info["elapsed"]), flush=True)
                if profile is not None:
                    text = io.StringIO()
                    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
                    print("  cProfile of the full run's main thread (tottime):", flush=True)
                    print("\n".join("    " + line for line in text.getvalue().splitlines()[4:30]), flush=True)
            ratios = [p["ratio"] for p in pairs]
            results[engine] = {"samples": samples, "pairs": pairs, "median_ratio": common.median(ratios)}
            rows.append(
                (
                    f"{engine} {samples}",
                    f"{common.median(p['bare'] for p in pairs):.1f}",
                    f"{common.median(p['full'] for p in pairs):.1f}",
                    " / ".join(f"{r:.3f}" for r in ratios),
                    f"{common.median(ratios):.3f}",
                    "meets" if common.median(ratios) >= TARGET else f"misses by {TARGET - common.median(ratios):.3f}",
                )
            )
    print()
    header = ("engine, samples", "bare img/s", "full img/s", "ratio per pair", "median ratio", f"target ≥ {TARGET}")
    print(common.table(rows, header))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
