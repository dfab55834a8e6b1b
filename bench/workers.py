"""Render workers: images/s of a fitting run rendered in this process, by N render workers and by N Ray actors.

The scene is the demo's supershape (presets/supershape_density.json) at 64×64, Cycles with 8 samples and Workbench
with the preset's own anti-aliasing. For each engine the runs alternate — one process, N workers (and N Ray actors
with ``--ray``), one process, … — ``--repeats`` times, each a real run (``Session.start()``, then
``Session.step()`` to the end) of ``--steps`` steps with the same seed. A run's rate counts from the end of its
first batch to its end, so the workers' start-up (printed apart) is left out. The learned values of every run must
be the same, whatever N and wherever the renders come from: printed as a check.

``--ray ADDRESS`` adds the runs whose renders come from Ray actors (batch ``--ray``; this process must be on a node
of that cluster). ``--ray-cluster`` starts the tests' two-node cluster on this machine (tests/ray_cluster.py: a head
node and a worker node with two ``scenefit_worker`` slots, in network namespaces; needs root), runs this bench
inside the head node's namespace with ``--ray`` at the head, and ends the cluster.

Target (DESIGN.md): N workers at ≥ 0.9·N × the images/s of one process — where N free cores are there to use.

On paper (:func:`on_paper`), for a machine with more free cores than this one: what a worker's image costs in CPU
seconds (its process's user + system time per image, from ``/proc``, between the end of the first batch and the
last step; the run's own process measured alike: training, receiving images) and what a worker costs to start
(wall seconds from launch to ready, and its CPU seconds until then), then images/s = N ÷ (CPU seconds per image,
worker + run) for N = 1, 2, 4, 8, 16 free cores — one worker of one render thread per core, every core busy, CPU
seconds per image unchanged by N. An upper bound: no memory-bandwidth or scheduling loss is counted, and the run's
own process, mostly its one training thread, is printed apart as the rate it allows on one core. CPU seconds
are what an image costs whatever else the machine runs, so a loaded 2-core machine can still measure them.

``--ui`` measures instead the interactive run against the same run headless, in a real Blender: it runs the real-UI
test ``tests/test_real_blender.py::test_ui_run_with_workers_against_the_headless_images_per_s`` (Debian 13's Blender
4.3.2 under Xvfb, tools/real_blender.sh, needs root), which alternates the supershape preset's run (8 × 32 px images
a step, 2 workers) from the panel and through ``blender -b -P scenefit_batch.py``, and prints its figures. Target
(DESIGN.md): the UI at ≥ 0.9× the headless images/s — the median, over the pairs, of a UI run's rate over the
headless run's before it.

    .venv/bin/python bench/workers.py [--workers 2 --steps 12 --repeats 3 --engines CYCLES,BLENDER_WORKBENCH]
    .venv/bin/python bench/workers.py --ui         # the interactive run vs headless (minutes)
    .venv/bin/python bench/workers.py --ray-cluster  # + 2 Ray actors on the worker node of a namespace cluster
    .venv/bin/python bench/workers.py --quick      # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 0.9
ROOT = Path(__file__).resolve().parent.parent
UI_TEST = "tests/test_real_blender.py::test_ui_run_with_workers_against_the_headless_images_per_s"
CYCLES_SAMPLES = 8
SIZE = 64
PAPER_CORES = (1, 2, 4, 8, 16)
PAPER_IMAGES = 1000  # the run length whose wall time the paper table shows, start-up included


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
        "mode": mode(config),
        "workers": config.workers,
        "images_per_s": (session.renders - renders) / (ended - since),
        "first_batch_s": since - started,
        "values": session.optimizer.history[-1]["values"],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_paper(ext: Any, scene: Any, config: Any) -> dict[str, Any]:
    """Start-up and per-image CPU cost of ``config.workers`` workers, and the images/s they give on paper with more
    free cores (see the module's docstring)."""
    workers_module = common.module(ext, "addon.blender.run.workers")
    session_module = common.module(ext, "addon.blender.run.session")
    render_module = common.module(ext, "addon.blender.scene.render")
    settings = render_module.RenderSettings(config.resolution, config.engine, config.samples, config.channels)
    launched = time.perf_counter()
    pool = workers_module.WorkerPool(config.workers, scene, config.specs, settings)
    try:
        while len(pool.devices) < config.workers:  # every worker has answered "ready"
            pool.collect(timeout=0.05)
        start_s = time.perf_counter() - launched
        start_cpu = common.median(cpu_seconds(pid) for pid in pool.pids)
    finally:
        pool.close()

    session = session_module.Session(scene, config, tick_seconds=0.2)  # short ticks: marks enough in a short run
    session.start()
    marks = []  # (renders, CPU seconds of the workers, of this process) after the first batch, at each step
    while session.step():
        if session.renderer is not None and session.renders >= config.batch_size:
            workers_cpu = sum(cpu_seconds(pid) for pid in session.renderer.pids)
            marks.append((session.renders, workers_cpu, time.process_time()))
    if len(marks) < 2 or marks[-1][0] == marks[0][0]:
        raise SystemExit(f"{config.engine}: the run was too short to measure a worker's CPU time: more --steps")
    (renders0, worker0, run0), (renders1, worker1, run1) = marks[0], marks[-1]
    images = renders1 - renders0
    worker_cpu, run_cpu = (worker1 - worker0) / images, (run1 - run0) / images
    rates = {cores: cores / (worker_cpu + run_cpu) for cores in PAPER_CORES}
    return {
        "start_s": start_s,
        "start_cpu_s": start_cpu,
        "worker_cpu_per_image_s": worker_cpu,
        "run_cpu_per_image_s": run_cpu,
        "images_measured": images,
        "images_per_s": rates,
        "run_on_one_core_images_per_s": 1 / run_cpu,
        "seconds_for_images": {cores: start_s + PAPER_IMAGES / rate for cores, rate in rates.items()},
    }


def paper_table(engine: str, paper: dict[str, Any]) -> str:
    seconds = paper["seconds_for_images"]
    rows = [[cores, f"{rate:.1f}", f"{seconds[cores]:.0f}"] for cores, rate in paper["images_per_s"].items()]
    header = ["free cores (workers)", "images/s on paper", f"s for {PAPER_IMAGES} images, start-up included"]
    return (
        f"{engine} on paper: a worker costs {paper['worker_cpu_per_image_s'] * 1000:.1f} CPU ms per image, the run "
        f"{paper['run_cpu_per_image_s'] * 1000:.1f} ({paper['images_measured']} images); start-up "
        f"{paper['start_s']:.1f} s wall, {paper['start_cpu_s']:.1f} CPU s per worker; the run's process on one core "
        f"allows {paper['run_on_one_core_images_per_s']:.0f} images/s\n" + common.table(rows, header)
    )


def ui_figures(json_path: Path | None) -> int:
    """The real-UI test's figures: images/s of the UI and of headless runs, each run and the best, and their ratio."""
    print(f"machine: {common.machine()}", flush=True)
    figures_path = Path(tempfile.mkdtemp(prefix="scenefit-bench-ui-")) / "figures.json"
    environment = {**os.environ, "SCENEFIT_UI_RATE_JSON": str(figures_path)}
    command = [sys.executable, "-m", "pytest", UI_TEST, "-q", "-s", "-m", "real_blender"]
    completed = subprocess.run(command, cwd=ROOT, env=environment)
    if not figures_path.is_file():
        print("the real-UI test measured nothing (see its output above)")
        return 1
    measured = json.loads(figures_path.read_text())
    figures, rows = measured["figures"], []
    for workers, ratio in sorted(figures["ratio"].items()):
        ui, headless = figures["ui"][workers], figures["headless"][workers]
        every = " / ".join(f"{u:.1f}:{h:.1f}" for u, h in zip(ui["all"], headless["all"], strict=True))
        rows.append([
            workers, f"{ratio['median_of_pairs']:.2f}", f"{ui['best']:.1f}", f"{headless['best']:.1f}",
            f"{ratio['best_over_best']:.2f}", every,
        ])  # fmt: skip
    headers = ["workers", "median of pairs", "UI best", "headless best", "best/best", "each pair UI:headless"]
    print(common.table(rows, headers))
    print(f"images/s ratio UI / the headless run before it, median of the pairs (target ≥ {TARGET} with workers)")
    for steady in measured["steady_cores"]:
        print(f"{steady['workers']} worker(s): the interface's threads used {steady['cores']:.3f} cores meanwhile")
    for workers in sorted({timer["workers"] for timer in measured["timer"]}):
        timers = [timer for timer in measured["timer"] if timer["workers"] == workers]
        medians = ", ".join(f"{timer['median_s']:.2f}" for timer in timers)
        longest = max(timer["max_s"] for timer in timers)
        print(
            f"{workers} worker(s): the interface's 0.2 s timer fired every {medians} s (median of each run), "
            f"at most {longest:.2f} s apart"
        )
    if json_path:
        json_path.write_text(json.dumps(measured, indent=1))
    return completed.returncode


def mode(config: Any) -> str:
    if config.ray:
        return f"{config.workers} Ray actors"
    return "1 process" if config.workers == 1 else f"{config.workers} workers"


def on_cluster(argv: list[str]) -> int:
    """This bench, with ``--ray`` at the head, inside the head node's namespace of a two-node cluster of its own."""
    sys.path.insert(0, str(common.ROOT))
    from tests.ray_cluster import _env, two_node_cluster

    with two_node_cluster() as cluster:
        command = ["ip", "netns", "exec", cluster.head, sys.executable, __file__, *argv, "--ray", cluster.address]
        return subprocess.run(command, env=_env(cluster.temp), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--workers", type=int, default=2, help="render processes to compare with one process")
    parse.add_argument("--steps", type=int, default=12)
    parse.add_argument("--repeats", type=int, default=3)
    parse.add_argument("--engines", default="CYCLES,BLENDER_WORKBENCH")
    parse.add_argument("--quick", action="store_true", help="smoke test: tiny runs, figures meaningless")
    parse.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parse.add_argument("--ui", action="store_true", help="the interactive run vs headless, in a real Blender")
    parse.add_argument("--ray", metavar="ADDRESS", help="also N Ray actors of the cluster at ADDRESS")
    parse.add_argument("--ray-cluster", action="store_true", help="start a two-node cluster here for --ray (root)")
    args = parse.parse_args(argv)
    if args.ui:
        return ui_figures(args.json)
    if args.ray_cluster:
        return on_cluster([a for a in (sys.argv[1:] if argv is None else argv) if a != "--ray-cluster"])
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
        modes = [(1, ""), (args.workers, "")] + ([(args.workers, args.ray)] if args.ray else [])
        for repeat in range(repeats):
            for workers, ray in modes:
                output = folder / f"run-{engine}-{repeat}-{workers}{'-ray' if ray else ''}"
                config = base.replace(targets=str(targets), output_dir=str(output), workers=workers, ray=ray)
                runs.append(run(ext, scene, config))
                print(f"{engine} {runs[-1]['mode']}: {runs[-1]['images_per_s']:.1f} images/s", flush=True)
        names = list(dict.fromkeys(r["mode"] for r in runs))
        rates = {m: common.median(r["images_per_s"] for r in runs if r["mode"] == m) for m in names}
        start = {m: common.median(r["first_batch_s"] for r in runs if r["mode"] == m) for m in names}
        same = all(r["values"] == runs[0]["values"] for r in runs)
        # A --quick run can end within the tick that ends its first batch: no rate measured, no ratio.
        ratios = {m: rates[m] / rates[names[0]] if rates[names[0]] else float("nan") for m in names[1:]}
        rows.append(
            [engine, *(f"{rates[m]:.1f}" for m in names), *(f"{ratios[m]:.2f}" for m in names[1:]),
             " / ".join(f"{start[m]:.1f}" for m in names), "yes" if same else "NO"]
        )  # fmt: skip
        figures[engine] = {"rates": rates, "first_batch_s": start, "ratios": ratios, "same_values": same, "runs": runs}
        paper_config = base.replace(
            steps=max(steps, 8), targets=str(targets), output_dir=str(folder / f"paper-{engine}"), workers=args.workers
        )
        figures[engine]["on_paper"] = on_paper(ext, scene, paper_config)
        print(paper_table(engine, figures[engine]["on_paper"]), flush=True)
    header = ["engine", *names, *(f"{m} / 1" for m in names[1:]), f"first batch s ({' / '.join(names)})", "same values"]
    print(common.table(rows, header))
    print(f"images/s ratio {args.workers} workers / 1 process (target ≥ {TARGET * args.workers:.1f} with free cores)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0 if all(f["same_values"] for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
