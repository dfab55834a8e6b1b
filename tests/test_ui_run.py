"""Running from the UI: Optimize with EXEC_DEFAULT runs to the end, the modal operator's timer ticks advance a run
and Esc/Stop end it, saving mid-run writes the user's values, loading a file or disabling the extension stops the
run; the scene comes back exactly every time. Timers never fire in the bpy module, so the modal operator's
``modal()`` gets its TIMER/ESC events by hand."""

from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.blender_scenes import cube_scene, diff, scene_state

SIZE = 32
START_YAW = 12.5  # degrees: the scene's own value, restored after every run


@pytest.fixture
def ui(scenefit):
    blender = scenefit.addon.blender
    return SimpleNamespace(
        run=blender.run.controller,
        optimize=blender.ui.operators.optimize,
        picking=blender.data.picking,
        results=blender.run.results,
        render=blender.scene.render,
    )


@pytest.fixture
def controller(ui):
    yield ui.run.CONTROLLER
    ui.run.CONTROLLER.shutdown()  # a failing test must not leave a run (or a timer) behind
    ui.run.CONTROLLER.forget()


@pytest.fixture
def scene(ui, tmp_path):
    """The cube with its yaw randomized through the context-menu code path, 4 Workbench targets, 2 tiny steps."""
    import bpy

    scene = cube_scene(bpy)
    cube = bpy.data.objects["Cube"]
    folder = tmp_path / "targets"
    folder.mkdir()
    render = ui.render
    with render.RenderOverride(scene, render.RenderSettings((SIZE, SIZE), "BLENDER_WORKBENCH", 1)) as renderer:
        for i, yaw in enumerate((50.0, 55.0, 60.0, 65.0)):
            cube.rotation_euler[2] = math.radians(yaw)
            Image.fromarray(np.round(renderer.render() * 255).astype(np.uint8)).save(folder / f"t{i}.png")
    cube.rotation_euler[2] = math.radians(START_YAW)
    ui.picking.add_spec(scene.scenefit, ui.picking.from_struct(cube, "rotation_euler", 2))
    settings = scene.scenefit
    settings.targets = str(folder)
    settings.output_dir = str(tmp_path / "out")
    settings.steps, settings.batch_size, settings.seed = 2, 4, 1
    settings.resolution_x = settings.resolution_y = SIZE
    settings.render_engine, settings.samples = "BLENDER_WORKBENCH", 1
    settings.workers = 1  # these tests render in this process; the threaded ones below set 2
    return scene


class FakeOperator:
    """Runs SceneFit's modal() with hand-made events; collects what it reports."""

    def __init__(self, operator_class: type) -> None:
        self.reports: list[tuple[set[str], str]] = []
        self._class = operator_class

    def report(self, kind: set[str], message: str) -> None:
        self.reports.append((kind, message))

    def __getattr__(self, name: str):
        return getattr(self._class, name).__get__(self)


def event(kind: str, value: str = "NOTHING") -> SimpleNamespace:
    return SimpleNamespace(type=kind, value=value)


def test_exec_default_runs_to_the_end_and_restores_the_scene(ui, scene, controller, tmp_path):
    import bpy

    before = scene_state(bpy, scene)
    assert bpy.ops.scenefit.optimize() == {"FINISHED"}  # EXEC_DEFAULT: synchronous
    assert not controller.running and controller.outcome.status == "finished"
    assert diff(before, scene_state(bpy, scene)) == []
    progress = bpy.context.window_manager.scenefit_progress
    assert (progress.running, progress.step, progress.renders) == (False, 2, 8)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    label = scene.scenefit.specs[0].label
    assert result["status"] == "finished" and label in result["parameters"]
    assert label in bpy.data.objects["Cube"]["scenefit"]  # written back, shown as "learned" in the panel
    assert scene.scenefit.specs[0].learned
    assert ui.results.results_folder(scene) == tmp_path / "out"


def test_invoke_without_an_event_loop_runs_synchronously(ui, scene, controller):
    import bpy

    before = scene_state(bpy, scene)
    assert bpy.app.background
    assert bpy.ops.scenefit.optimize("INVOKE_DEFAULT") == {"FINISHED"}  # a modal run would never get a tick here
    assert controller.outcome.status == "finished" and not controller.has_timer
    assert diff(before, scene_state(bpy, scene)) == []


def test_one_run_at_a_time(ui, scene, controller):
    import bpy

    controller.start(scene)
    assert not bpy.ops.scenefit.optimize.poll()
    with pytest.raises(ui.run.SceneFitError, match="already in progress"):
        controller.start(scene)
    controller.stop()
    assert bpy.ops.scenefit.optimize.poll()


def test_timer_ticks_advance_the_run_and_stop_restores(ui, scene, controller):
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)  # one render per tick
    progress = bpy.context.window_manager.scenefit_progress
    assert progress.running and progress.renders == 0
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    for expected in (1, 2, 3):
        assert operator.modal(bpy.context, event("TIMER")) == {"PASS_THROUGH"}
        assert progress.renders == expected
    assert bpy.context.scene.render.engine == "BLENDER_WORKBENCH"  # the run's settings while it runs
    assert operator.modal(bpy.context, event("MOUSEMOVE")) == {"PASS_THROUGH"}  # the UI stays usable
    assert progress.renders == 3
    assert bpy.ops.scenefit.stop() == {"FINISHED"}
    assert not controller.running and controller.outcome.status == "stopped"
    assert diff(before, scene_state(bpy, scene)) == []  # restored by Stop itself, before the next tick
    assert operator.modal(bpy.context, event("TIMER")) == {"FINISHED"}  # the operator then ends
    assert operator.reports[-1][0] == {"INFO"}


def test_escape_ends_the_run_within_one_tick(ui, scene, controller):
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    operator.modal(bpy.context, event("TIMER"))
    assert operator.modal(bpy.context, event("ESC", "PRESS")) == {"FINISHED"}
    assert not controller.running
    assert diff(before, scene_state(bpy, scene)) == []


def test_ticks_run_to_completion(ui, scene, controller):
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    results = []
    deadline = time.monotonic() + 120
    while controller.running and time.monotonic() < deadline:  # ticks also poll the training thread
        results.append(operator.modal(bpy.context, event("TIMER")))
    assert results[-1] == {"FINISHED"} and results[:-1] == [{"PASS_THROUGH"}] * (len(results) - 1)
    assert len(results) >= 8  # 2 steps × 4 renders, one per tick
    assert controller.outcome.status == "finished"
    assert diff(before, scene_state(bpy, scene)) == []


def test_error_during_a_run_is_reported_and_the_scene_restored(ui, scene, controller):
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    operator.modal(bpy.context, event("TIMER"))
    camera, scene.camera = scene.camera, None  # the user removes the scene camera mid-run
    assert operator.modal(bpy.context, event("TIMER")) == {"CANCELLED"}
    kind, message = operator.reports[-1]
    assert kind == {"ERROR"} and "Traceback" not in message and "camera" in message
    assert not controller.running and controller.outcome.status == "failed"
    scene.camera = camera
    assert diff(before, scene_state(bpy, scene)) == []


def test_start_errors_leave_the_scene_alone(ui, scene, controller):
    import bpy

    scene.scenefit.targets = "/nonexistent/targets"
    before = scene_state(bpy, scene)
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.scenefit.optimize()
    assert not controller.running
    assert diff(before, scene_state(bpy, scene)) == []


def test_saving_mid_run_writes_the_users_values(ui, scene, controller, tmp_path):
    import bpy

    before = scene_state(bpy, scene)
    cube = bpy.data.objects["Cube"]
    own = cube.rotation_euler[2]
    controller.start(scene, tick_seconds=0.0)
    controller.tick()
    sample = cube.rotation_euler[2]
    assert sample != own
    path = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    assert controller.running
    assert cube.rotation_euler[2] == sample  # the run carries on with its sample…
    assert scene.render.engine == "BLENDER_WORKBENCH" and scene.render.resolution_x == SIZE
    controller.stop()
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert bpy.data.objects["Cube"].rotation_euler[2] == own  # …but the file has the user's value
    reloaded = diff(before, scene_state(bpy, bpy.context.scene))
    assert [line for line in reloaded if ".session_uid:" not in line] == []  # render settings too


def test_loading_another_file_stops_the_run(ui, scene, controller, tmp_path):
    import bpy

    path = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    controller.start(scene, tick_seconds=0.0)
    controller.add_timer(bpy.context.window_manager, bpy.context.window)
    controller.tick()
    cube = bpy.data.objects["Cube"]
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert not controller.running and controller.outcome is None  # stopped, and its outcome belongs to the old file
    assert not controller.has_timer
    with pytest.raises(ReferenceError):
        cube.name  # noqa: B018  (the run's objects are gone: nothing may touch them any more)


def test_disabling_the_extension_stops_the_run(ui, scene, controller, scenefit):
    import addon_utils
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)
    controller.tick()
    controller.add_timer(bpy.context.window_manager, bpy.context.window)
    addon_utils.disable(scenefit.__name__, default_set=True)
    try:
        assert not controller.running and not controller.has_timer
        assert diff(before, scene_state(bpy, scene)) == []
        assert context_menu_hooks() == []
        for handlers in (bpy.app.handlers.save_pre, bpy.app.handlers.load_pre, bpy.app.handlers.undo_pre):
            assert not [h for h in handlers if h.__module__.startswith(scenefit.__name__)]
    finally:
        addon_utils.enable(scenefit.__name__, default_set=True)
    assert len(context_menu_hooks()) == 1


def context_menu_hooks() -> list:
    import bpy

    draw = bpy.types.UI_MT_button_context_menu.draw
    return [f for f in getattr(draw, "_draw_funcs", []) if f.__module__.endswith(".ui.operators.specs")]


def test_apply_mean_sets_the_learned_mean(ui, scene, controller):
    import bpy

    assert not bpy.ops.scenefit.apply_mean.poll()  # nothing learned yet
    bpy.ops.scenefit.optimize()
    spec = scene.scenefit.specs[0]
    learned = json.loads(spec.learned)
    assert bpy.ops.scenefit.apply_mean() == {"FINISHED"}
    assert bpy.data.objects["Cube"].rotation_euler[2] == pytest.approx(learned["mu"], abs=1e-6)


def test_apply_mean_of_categorical_and_bernoulli(ui, scene):
    import bpy

    light = bpy.data.lights["Sun"]
    cube = bpy.data.objects["Cube"]
    ui.picking.add_spec(scene.scenefit, ui.picking.from_id_path(light, "type"))
    ui.picking.add_spec(scene.scenefit, ui.picking.from_id_path(cube, "hide_render"))
    labels = [spec.label for spec in scene.scenefit.specs]
    light["scenefit"] = {labels[1]: {"path": "type", "distribution": "categorical", "probs": {"SUN": 0.2, "SPOT": 0.8}}}
    cube["scenefit"] = {labels[2]: {"path": "hide_render", "distribution": "bernoulli", "p": 0.7}}
    assert ui.results.apply_means(scene) == labels[1:]
    assert (light.type, cube.hide_render) == ("SPOT", True)
    assert cube.rotation_euler[2] == pytest.approx(math.radians(START_YAW))  # nothing learned: untouched


def test_output_folder_defaults_to_the_user_folder(ui, scene, controller):
    scene.scenefit.output_dir = ""
    folder = ui.results.results_folder(scene)
    assert isinstance(folder, Path) and folder.name == scene.name and "runs" in folder.parts


def test_undo_stops_the_run_first(ui, scene, controller):
    """Undo cannot run in the bpy module (no undo stack in background mode): call what Blender calls before it."""
    import bpy

    before = scene_state(bpy, scene)
    controller.start(scene, tick_seconds=0.0)
    controller.tick()
    handlers = [h for h in bpy.app.handlers.undo_pre if h.__module__ == ui.run.__name__]
    assert handlers and handlers == [h for h in bpy.app.handlers.redo_pre if h.__module__ == ui.run.__name__]
    for handler in handlers:
        handler(scene, None)
    assert not controller.running and controller.outcome.status == "stopped"
    assert diff(before, scene_state(bpy, scene)) == []


# ---- with render workers: the run renders and feeds training on a thread of its own ---------------------------


def modal_until(operator, predicate, seconds: float = 120.0) -> set[str]:
    """TIMER events to the modal operator until ``predicate()`` holds or the operator ends; its last answer."""
    import bpy

    deadline = time.monotonic() + seconds
    answer = {"PASS_THROUGH"}
    while answer == {"PASS_THROUGH"} and not predicate():
        assert time.monotonic() < deadline, "the threaded run did not get there in time"
        answer = operator.modal(bpy.context, event("TIMER"))
        time.sleep(0.05)  # the timer's interval, shortened: the pump works meanwhile
    return answer


def with_workers(ui, scene, monkeypatch, steps: int) -> None:
    """The scene's run with 2 render workers, where the main thread may not render a single sample."""
    sampler = importlib.import_module(f"{ui.run.__package__}.sampler")

    def no_render_here(*_args):
        raise AssertionError("a sample was rendered on the main thread")

    monkeypatch.setattr(sampler.Sampler, "render", no_render_here)
    scene.scenefit.workers, scene.scenefit.steps = 2, steps


def started(controller, scene):
    """Start the run as the button does (its timer in the UI); the session and its workers' process ids."""
    session = controller.start(scene)
    assert controller.threaded and session.threaded
    pids = session.renderer.pids
    assert len(pids) == 2
    return session, pids


def test_with_workers_the_timer_only_publishes_and_learns_the_headless_values(
    ui, scene, controller, tmp_path, monkeypatch
):
    import bpy

    from tests.test_blender_workers import alive

    steps = 3
    # The same run headless first, in this process (as batch mode steps it): what the threaded run must learn.
    run = importlib.import_module(ui.run.__package__)
    config = run.config.RunConfig.from_scene(scene).replace(steps=steps, workers=1, output_dir=str(tmp_path / "h"))
    headless = run.session.Session(scene, config, tick_seconds=0.5)
    headless.start()
    while headless.step():
        pass
    expected = [entry["values"] for entry in headless.optimizer.history]

    with_workers(ui, scene, monkeypatch, steps)
    before = scene_state(bpy, scene)
    session, pids = started(controller, scene)
    progress = bpy.context.window_manager.scenefit_progress
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    answer = modal_until(operator, lambda: progress.step >= 1)
    assert answer == {"PASS_THROUGH"} and controller.running
    assert diff(before, scene_state(bpy, scene)) == []  # workers render their snapshots: the scene keeps its values
    assert modal_until(operator, lambda: False) == {"FINISHED"} and controller.outcome.status == "finished"
    assert diff(before, scene_state(bpy, scene)) == []
    assert not any(alive(pid) for pid in pids) and not session._pump._thread.is_alive()
    assert [entry["values"] for entry in session.optimizer.history] == expected and len(expected) == steps
    result = json.loads((controller.outcome.output_dir / "result.json").read_text())
    assert result["status"] == "finished" and result["renders"] == steps * 4 and result["images_per_s"] > 0
    assert (progress.running, progress.step, progress.renders) == (False, steps, steps * 4)


def test_with_workers_stop_mid_run_keeps_the_checkpoint_and_leaves_no_worker(ui, scene, controller, monkeypatch):
    import bpy

    from tests.test_blender_workers import alive

    with_workers(ui, scene, monkeypatch, steps=1000)
    before = scene_state(bpy, scene)
    session, pids = started(controller, scene)
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    modal_until(operator, lambda: session.optimizer.step >= 2)
    assert bpy.ops.scenefit.stop() == {"FINISHED"}
    assert not controller.running and controller.outcome.status == "stopped"
    assert diff(before, scene_state(bpy, scene)) == []
    assert not any(alive(pid) for pid in pids) and not session._pump._thread.is_alive()
    assert operator.modal(bpy.context, event("TIMER")) == {"FINISHED"}
    result = json.loads((controller.outcome.output_dir / "result.json").read_text())
    assert result["status"] == "stopped" and result["checkpoint_steps"] == session.optimizer.step >= 2
    assert (controller.outcome.output_dir / "checkpoint.pt").is_file()
    assert bpy.data.objects["Cube"]["scenefit"]  # what was learned so far is on the scene


def test_with_workers_a_worker_error_mid_run_fails_it_with_one_message(ui, scene, controller, monkeypatch):
    """Both workers die and cannot start again: the run fails with the reason, restored, no worker left."""
    import os
    import signal
    import sys

    import bpy

    from tests.test_blender_workers import alive

    with_workers(ui, scene, monkeypatch, steps=1000)
    before = scene_state(bpy, scene)
    session, pids = started(controller, scene)
    operator = FakeOperator(ui.optimize.SCENEFIT_OT_optimize)
    modal_until(operator, lambda: session.optimizer.step >= 1)
    monkeypatch.setattr(session.renderer, "_command", [sys.executable, "-c", "import sys; sys.exit('no licence')"])
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert modal_until(operator, lambda: False) == {"CANCELLED"}
    kind, message = operator.reports[-1]
    assert kind == {"ERROR"} and "\n" not in message and "Traceback" not in message
    # Both workers died at once: whichever the pool sees second either cannot start again (its reason quoted) or
    # was sent the first one's samples, which then stood at two deaths (workers.py): both are the run's error.
    assert (
        (message.startswith("render worker") and "no licence" in message)
        or message.startswith("sample ")
        and "when two render workers failed" in message
    ), message
    assert not controller.running and controller.outcome.status == "failed"
    assert diff(before, scene_state(bpy, scene)) == []
    assert not any(alive(pid) for pid in pids) and not session._pump._thread.is_alive()
    assert session.renderer is None  # closed: its restarted workers ended with it
