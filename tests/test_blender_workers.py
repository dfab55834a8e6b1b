"""Render workers: a run rendered by N headless Blender processes learns exactly what the in-process run learns for
the same seed, survives a worker that crashes or hangs, fails with the reason when a worker cannot start, and
leaves no process behind however it ends."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.blender_scenes import diff, scene_state
from tests.test_blender_batch import (  # noqa: F401  (files: a fixture)
    TIMEOUT_S,
    files,
    render_folders,
    run_batch,
    start_batch,
    wait_for_step,
)
from tests.test_blender_session import _ended_cleanly, blender, scene, targets_dir, yaw_config  # noqa: F401  (fixtures)

STEPS, BATCH = 4, 8


@pytest.fixture
def workers(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.run.workers")


@pytest.fixture
def pool(scenefit):
    """The render pools' fault policy: its time-outs."""
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.run.pool")


def children() -> set[int]:
    """This process's child processes and theirs (Linux /proc)."""
    return set(descendants(os.getpid()))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else ""
    return state not in ("Z", "X", "")


def at_first_image(monkeypatch, workers, strike) -> None:
    """Call ``strike(pool)`` when a worker pool's first image arrives, on the pump's thread: the run has batches
    left then, whatever this machine's speed. (Struck when a step is reported on the main thread instead, the pump
    could have rendered the run's last batch by then, and the pool closed without the fault being seen.)"""
    answered = workers.WorkerPool._answered
    struck = []

    def answered_once_struck(self, worker, answer, ticket=None):
        if not struck:
            struck.append(True)
            strike(self)
        return answered(self, worker, answer, ticket)

    monkeypatch.setattr(workers.WorkerPool, "_answered", answered_once_struck)


def learned(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    output: Path,
    workers: int,
    steps: int = STEPS,
) -> tuple[list, list[str]]:  # noqa: F811
    """The yaw values of every step of a short Workbench run with ``workers`` render processes, and the run's
    warnings."""
    config = yaw_config(blender, targets_dir, output, steps=steps, batch_size=BATCH, workers=workers)
    session = blender.session.Session(scene, config, tick_seconds=0.2)
    before_children = children()
    session.start()
    pids = session.renderer.pids if workers > 1 else []
    assert len(pids) == workers or workers == 1
    while session.step():
        pass
    assert session.status == "finished"
    assert not any(alive(pid) for pid in pids) and children() <= before_children  # no worker outlives its run
    assert render_folders(os.getpid()) == []  # nor its snapshot
    return [entry["values"]["yaw"] for entry in session.optimizer.history], session.warnings


@pytest.mark.slow
def test_one_and_two_workers_learn_the_same_values_for_a_seed(blender, scene, targets_dir, tmp_path):  # noqa: F811
    in_process, _ = learned(blender, scene, targets_dir, tmp_path / "one", workers=1)
    two, _ = learned(blender, scene, targets_dir, tmp_path / "two", workers=2)
    assert len(in_process) == STEPS and two == in_process


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["crash", "hang", "crash and no restart"])
def test_a_worker_that_crashes_or_hangs_is_restarted_and_the_run_learns_the_same(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    workers,
    pool,
    tmp_path,
    monkeypatch,
    fault,
):
    import bpy

    before = scene_state(bpy, scene)
    monkeypatch.setattr(pool, "MIN_IMAGE_TIMEOUT_S", 3.0)
    hit = []

    def strike(renderer):
        if fault == "crash and no restart":  # the restarted worker cannot start: the other renders the rest
            broken = [sys.executable, "-c", "import sys; sys.exit('out of licences')"]
            monkeypatch.setattr(renderer, "_command", broken)
        pid = renderer.pids[0]
        os.kill(pid, signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
        hit.append(pid)

    # Without a restart, steps enough that the other worker is still rendering when the failed start is seen.
    steps = 4 * STEPS if fault == "crash and no restart" else STEPS
    reference, _ = learned(blender, scene, targets_dir, tmp_path / "reference", workers=1, steps=steps)
    at_first_image(monkeypatch, workers, strike)
    struck, warnings = learned(blender, scene, targets_dir, tmp_path / "struck", workers=2, steps=steps)
    assert hit and not alive(hit[0]) and struck == reference
    assert diff(before, scene_state(bpy, scene)) == []
    if fault == "crash and no restart":
        assert len(warnings) == 1 and "out of licences; the run goes on with 1 worker(s)" in warnings[0]
    else:
        assert warnings == []


def test_a_worker_that_cannot_start_fails_the_run_with_its_reason(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    workers,
    tmp_path,
    monkeypatch,
):
    import bpy

    before = scene_state(bpy, scene)
    broken = [sys.executable, "-c", "import sys; sys.exit('no Blender here')"]
    monkeypatch.setattr(workers, "worker_command", lambda: broken)
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=STEPS, batch_size=BATCH, workers=2)
    session = blender.session.Session(scene, config)
    before_children = children()
    session.start()
    with pytest.raises(blender.errors.RenderError, match="render worker . failed: it exited with code 1.*no Blender"):
        while session.step():
            pass
    _ended_cleanly(bpy, scene, before, session, "failed")
    assert children() <= before_children and render_folders(os.getpid()) == []


def hanging_at_start(workers, which: str) -> list[str]:
    """A worker command whose workers (``which``: "all", or the index of one) never connect back to the pool."""
    test = "True" if which == "all" else f"os.environ[{workers.worker_module.TOKEN_VARIABLE!r}].endswith(':{which}')"
    return [sys.executable, "-c", f"import os, time\nif {test}:\n    time.sleep(600)\n{workers.BOOTSTRAP}"]


def test_workers_that_never_start_are_killed_after_the_start_timeout_and_fail_the_run(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    workers,
    pool,
    tmp_path,
    monkeypatch,
):
    import bpy

    before = scene_state(bpy, scene)
    monkeypatch.setattr(pool, "START_TIMEOUT_S", 2.0)
    monkeypatch.setattr(workers, "worker_command", lambda: hanging_at_start(workers, "all"))
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=STEPS, batch_size=BATCH, workers=2)
    session = blender.session.Session(scene, config)
    before_children = children()
    session.start()
    pids = session.renderer.pids
    started = time.monotonic()
    with pytest.raises(blender.errors.RenderError) as raised:
        while session.step():
            pass
    last = re.fullmatch(r"render worker ([01]) failed: it did not start within 2 s", str(raised.value))
    assert last and time.monotonic() - started >= 2.0 and len(pids) == 2
    _ended_cleanly(bpy, scene, before, session, "failed")
    # The last to time out ends the run; the other, a moment before, is said as a warning unless that moment fell
    # in the same check of the pool.
    other = f"render worker {1 - int(last[1])} failed: it did not start within 2 s; the run goes on with 1 worker(s)"
    assert session.warnings in ([], [other])
    assert not any(alive(pid) for pid in pids) and children() <= before_children
    assert render_folders(os.getpid()) == []


def test_a_worker_that_never_starts_is_left_out_and_the_run_learns_the_same(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    workers,
    pool,
    tmp_path,
    monkeypatch,
):
    steps = 2 * STEPS
    reference, _ = learned(blender, scene, targets_dir, tmp_path / "reference", workers=1, steps=steps)
    monkeypatch.setattr(workers, "worker_command", lambda: hanging_at_start(workers, "0"))

    def time_out(renderer):
        """Whatever this machine's load: worker 0 has waited its whole start-up time."""
        if 0 in renderer._workers and not renderer._workers[0].ready:
            renderer._workers[0].started_at -= pool.START_TIMEOUT_S

    at_first_image(monkeypatch, workers, time_out)
    values, warnings = learned(blender, scene, targets_dir, tmp_path / "hung", workers=2, steps=steps)
    assert values == reference  # and no process outlives the run (learned)
    timeout = f"{pool.START_TIMEOUT_S:.0f} s"
    assert warnings == [f"render worker 0 failed: it did not start within {timeout}; the run goes on with 1 worker(s)"]


def crashing_on(workers, sample_id: int) -> list[str]:
    """A worker command whose workers exit (code 3, no word) when they are handed sample ``sample_id``."""
    serve = re.search(r'importlib\.import_module\(package \+ "([\w.]+)"\)\.main\(\)', workers.BOOTSTRAP)
    crash = (
        f'worker = importlib.import_module(package + "{serve[1]}")\n'
        "render = worker.Sampler.render\n"
        f"worker.Sampler.render = lambda self, i, v: os._exit(3) if i == {sample_id} else render(self, i, v)\n"
        "worker.main()"
    )
    return [sys.executable, "-c", workers.BOOTSTRAP.replace(serve[0], crash)]


def test_a_sample_that_kills_two_workers_stops_the_run_with_the_scene_restored_and_the_checkpoint_kept(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    workers,
    tmp_path,
    monkeypatch,
):
    import bpy

    deadly = 2 * BATCH + 3  # in the third batch: drawn once the first has been learned
    before = scene_state(bpy, scene)
    monkeypatch.setattr(workers, "worker_command", lambda: crashing_on(workers, deadly))
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=STEPS, batch_size=BATCH, workers=2)
    session = blender.session.Session(scene, config)
    before_children = children()
    session.start()
    pids = set(session.renderer.pids)
    with pytest.raises(blender.errors.RenderError) as raised:
        while session.step():
            if session.renderer is not None:
                pids.update(session.renderer.pids)  # a restarted one too, when seen
    assert re.fullmatch(
        rf"sample {deadly} was being rendered when two render workers failed; render worker [01] failed: "
        r"(it ended|its connection broke)( — .*)?",  # then the tail of its log, whatever Blender printed last
        str(raised.value),
    )
    result = _ended_cleanly(bpy, scene, before, session, "failed")
    assert result["checkpoint_steps"] >= 1 and result["error"] == blender.errors.cut(str(raised.value))
    # A restarted worker may come and go within one step, unseen here: children() counts it all the same.
    assert len(pids) >= 2 and not any(alive(pid) for pid in pids) and children() <= before_children
    assert render_folders(os.getpid()) == []


def test_no_blender_binary_is_named(blender, workers):  # noqa: F811
    with pytest.raises(blender.errors.RenderError, match="no Blender binary for the render workers: /nowhere"):
        workers.worker_command("/nowhere/blender")


def batch_learned(files, name: str, workers: int) -> tuple[dict, str]:  # noqa: F811  (the fixture)
    """result.json and stdout of a 3-step batch run with ``--workers``."""
    output = files["tmp"] / name
    done = run_batch(
        files["tmp"],
        files["blend"],
        *("--config", files["config"], "--targets", files["targets"], "--output", output),
        *("--steps", "3", "--seed", "5", "--workers", str(workers)),
    )
    assert done.returncode == 0, done.stderr
    return json.loads((output / "result.json").read_text()), done.stdout


@pytest.mark.slow
def test_batch_workers_1_and_2_learn_the_same_values(files):  # noqa: F811  (the fixture)
    one, _ = batch_learned(files, "one", 1)
    two, printed = batch_learned(files, "two", 2)
    assert "workers      2 processes" in printed and two["config"]["workers"] == 2
    assert "Saved copy" not in printed  # the snapshot is saved quietly: stdout is one line per step
    assert [entry["values"] for entry in two["history"]] == [entry["values"] for entry in one["history"]]
    assert two["parameters"] == one["parameters"] and two["renders"] == one["renders"] == 24


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_batch_run_stopped_or_killed_leaves_no_worker(files, signum):  # noqa: F811  (the fixture)
    tmp = files["tmp"]
    process = start_batch(files, tmp / "out", "--steps", "1000", "--workers", "2")
    try:
        wait_for_step(process, 2)
        workers = descendants(process.pid)
        assert len(workers) == 2
        process.send_signal(signum)
        process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL)
    deadline = time.monotonic() + 10  # the kernel ends a killed run's workers (PR_SET_PDEATHSIG) at once
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)
    if signum == signal.SIGINT:
        assert json.loads((tmp / "out" / "result.json").read_text())["status"] == "stopped"


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


@pytest.mark.slow
def test_a_data_set_and_truth_targets_from_two_workers_are_the_in_process_ones(scenefit, tmp_path):
    """The supershape preset: the worker needs the extension's own properties and update handlers."""
    import bpy

    def module(name):
        return importlib.import_module(f"{scenefit.__name__}.addon.{name}")

    preset = module("engine.presets").load_preset(Path(__file__).parent.parent / "presets" / "supershape_density.json")
    supershape_scene = bpy.context.scene
    module("blender.scene.presets").apply_preset(preset, supershape_scene)
    config = module("blender.run.session").RunConfig.from_scene(supershape_scene)
    specs = config.specs
    settings = module("blender.scene.render").RenderSettings((32, 32), "BLENDER_WORKBENCH", 1)
    shape = bpy.data.objects["Supershape"].supershape
    before = (shape.m1, shape.m2, supershape_scene.render.resolution_x, supershape_scene.render.engine)
    made = {}
    for workers in (1, 2):
        folder = tmp_path / f"set{workers}"
        generator = module("blender.run.dataset").DatasetGenerator(
            supershape_scene, specs, folder, 6, seed=4, settings=settings, workers=workers
        )
        made[workers] = generator.run()
        after = (shape.m1, shape.m2, supershape_scene.render.resolution_x, supershape_scene.render.engine)
        assert made[workers].complete and after == before
    assert [row["values"] for row in made[2].rows] == [row["values"] for row in made[1].rows]
    for one, two in zip(made[1].images, made[2].images, strict=True):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert (tmp_path / "set1" / "labels.csv").read_text() == (tmp_path / "set2" / "labels.csv").read_text()

    truth = config.replace(resolution=(32, 32), engine="BLENDER_WORKBENCH", samples=1)
    for workers in (1, 2):
        module("blender.run.batch").render_truth_targets(
            supershape_scene,
            truth.replace(workers=workers),
            preset.truth(),
            {"count": 5, "seed": 2},
            tmp_path / f"t{workers}",
        )
    targets = {workers: sorted((tmp_path / f"t{workers}").iterdir()) for workers in (1, 2)}
    assert len(targets[1]) == 5 and [p.read_bytes() for p in targets[1]] == [p.read_bytes() for p in targets[2]]
    after = (shape.m1, shape.m2, supershape_scene.render.resolution_x, supershape_scene.render.engine)
    assert after == before


def test_the_default_fits_the_machine_and_the_ui_never_renders_itself(workers, monkeypatch):
    """0 workers: one per two cores; headless at least one (this process renders), in the UI at least two."""
    for cores, headless, interactive in ((1, 1, 2), (2, 1, 2), (4, 2, 2), (8, 4, 4)):
        monkeypatch.setattr(workers, "cores", lambda cores=cores: cores)
        assert workers.worker_count(0, interactive=False) == headless
        assert workers.worker_count(0, interactive=True) == interactive
        assert workers.worker_count(3, interactive=True) == workers.worker_count(3, interactive=False) == 3
    assert workers.worker_count(0) == workers.worker_count(0, interactive=False)  # the bpy module is background


def test_with_workers_this_process_neither_renders_nor_sets_a_property_and_an_unlearnable_one_fails_by_name(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    scenefit,
    tmp_path,
    monkeypatch,
):
    """The probe (every learned property must change the picture) renders on the workers too: in the interface a
    change of this scene, even one put back, restarts the 3D Viewport's progressive redraws (eight software-GL
    redraws of the cores the workers render with). A property that changes nothing still fails the run by name,
    with the scene restored, the checkpoint kept and no worker left."""
    import bpy

    rna = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.rna")
    render = importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.render")
    touched = []

    def refused(what):
        def record(*args, **kwargs):
            touched.append(what)
            raise AssertionError(f"{what} in the process of a run with workers")

        return record

    monkeypatch.setattr(rna.BoundProperty, "set", refused("a property set"))
    monkeypatch.setattr(render.RenderOverride, "render", refused("a render"))
    config = yaw_config(blender, targets_dir, tmp_path / "good", steps=2, batch_size=BATCH, workers=2)
    session = blender.session.Session(scene, config, tick_seconds=0.2)
    session.start()
    while session.step():
        pass
    assert session.status == "finished" and touched == []

    bpy.data.objects["Cube"]["unused"] = 1.0
    before = scene_state(bpy, scene)
    flat = {"kind": "normal", "mu": 1.0, "sigma": 1.0}
    unused = blender.config.SpecConfig("unused", "OBJECT", "Cube", '["unused"]', flat)
    config = config.replace(specs=[*config.specs, unused], output_dir=str(tmp_path / "bad"))
    session = blender.session.Session(scene, config, tick_seconds=0.2)
    before_children = children()
    session.start()
    with pytest.raises(blender.errors.SpecError, match=r"not identifiable.*'unused'.*does not change the rendered"):
        while session.step():
            pass
    assert "'yaw'" not in str(session.error) and touched == []
    _ended_cleanly(bpy, scene, before, session, "failed")
    assert children() <= before_children and render_folders(os.getpid()) == []
