"""Driver of the real-UI test: runs inside a Blender executable with a window (Xvfb), started as

    blender [--enable-event-simulate] FILE.blend -P real_blender_ui.py -- CONFIG.json

(events are simulated only for the user's session: Esc; the timing runs go without, see ``drive_ui``).

With CONFIG["mode"] = "rate" it times instead the same run in this UI and headless, alternating (``rate_scenario``).
Otherwise it plays a user's session as ``bpy.app.timers`` steps on the main thread — apply a preset, check the targets,
Optimize as the button invokes it, watch progress, save during the run, Esc, Stop, Open Results Folder, disable
the extension mid-run, undo — with every operator under ``bpy.context.temp_override`` of the 3D Viewport, and
forces real redraws of every panel between steps. Each check goes to the report (CONFIG["report"], JSON); the
pytest side asserts on it and on the console log. Blender quits at the end whatever happens (a bounded session).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import time
import traceback

import addon_utils
import bpy
import gpu

CONFIG = json.loads(open(sys.argv[sys.argv.index("--") + 1]).read())
MODULE = "bl_ext.user_default.scenefit"
REPORT: dict = {"checks": [], "error": None, "events": []}
STARTED = time.monotonic()
# With render workers, what the interface's own threads (main, software GL) may take of the cores while the rate is
# measured: 0.05–0.11 measured (0.09–0.16 while the status bar showed the progress each 2 s tick); the targets read
# into the file's data (8 viewport redraws at each start) took 0.52–0.65.
STEADY_CORES = 0.25


def check(name: str, ok: bool, detail: object = "") -> bool:
    REPORT["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)})
    print(f"[driver] {'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    return bool(ok)


def event(text: str) -> None:
    REPORT["events"].append(f"{time.monotonic() - STARTED:7.1f} s  {text}")
    print(f"[driver] {text}", flush=True)


def ui() -> dict:
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    return {"window": window, "screen": window.screen, "area": area, "region": region}


def sidebar() -> bpy.types.Region:
    return next(r for r in ui()["area"].regions if r.type == "UI")


def call(operator, how: str = "EXEC_DEFAULT", **kwargs) -> set[str]:
    """Run an operator as a click in the 3D Viewport would: in its context, pushing an undo step when the operator
    has UNDO (bpy.ops calls push none unless asked)."""
    with bpy.context.temp_override(**ui()):
        return operator(how, True, **kwargs)


def redraw() -> None:
    """Draw the whole window now: every visible panel's draw() runs for real (errors go to the console)."""
    with bpy.context.temp_override(**ui()):
        bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)


def m(name: str):
    return importlib.import_module(f"{MODULE}.addon.blender.{name}")


def values(scene: bpy.types.Scene) -> dict[str, object]:
    """The scene's current value of each random property."""
    rna = m("scene.rna")
    return {s.label: rna.resolve(s.label, s.id_type, s.id_name, s.data_path).get() for s in scene.scenefit.specs}


def learned(scene: bpy.types.Scene) -> dict:
    """What runs wrote on the random properties' owners (obj["scenefit"]), readable without the extension."""
    out = {}
    for obj in scene.objects:
        if obj.get("scenefit") is not None:
            out[obj.name] = obj["scenefit"].to_dict()
    return out


def running() -> bool:
    return m("run.controller").CONTROLLER.running


def step() -> int:
    return bpy.context.window_manager.scenefit_progress.step


def until(predicate, timeout: float, what: str):
    """Yield (inside a scenario) until predicate() holds; a check fails when it does not within timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            check(f"within {timeout:.0f} s: {what}", False)
            raise TimeoutError(what)
        yield 0.2
    event(f"{what}: reached")


def screenshot(path: str) -> None:
    subprocess.run(["import", "-window", "root", path], check=True, timeout=60)
    region = sidebar()
    area = ui()["area"]
    window = ui()["window"]
    REPORT["screenshot"] = {
        "path": path,
        "window": [window.width, window.height],
        "area": [area.x, area.y, area.width, area.height],
        "sidebar": [region.x, region.y, region.width, region.height],
    }


def scene() -> bpy.types.Scene:
    """The window's scene, looked up each time: undo replaces every data-block (old references die)."""
    return bpy.context.window_manager.windows[0].scene


def workers_left() -> list[str]:
    """Child processes of this Blender still running (render workers end with their run)."""
    found = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as file:
            found += file.read().split()
    return [pid for pid in found if _running(pid)]


def _running(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # not a zombie waiting to be reaped
    except OSError:
        return False


def optimize():
    result = call(bpy.ops.scenefit.optimize, "INVOKE_DEFAULT")
    check("Optimize (INVOKE_DEFAULT, as the button) starts a modal run", result == {"RUNNING_MODAL"}, result)
    yield from until(lambda: step() >= 1, 180, "the first step")


def scenario():
    area = ui()["area"]
    area.spaces.active.show_region_ui = True
    yield 1.0
    redraw()

    # --- preset, targets ---
    result = call(bpy.ops.scenefit.apply_preset, preset="supershape_density")
    check("Apply Preset ▸ Supershape density", result == {"FINISHED"}, result)
    check("the preset's scene is the window's", len(scene().scenefit.specs) == 2, scene().name)
    redraw()
    yield 0.5
    try:
        sidebar().active_panel_category = "SceneFit"
    except TypeError as error:  # the category list is filled by the first draw
        check("the sidebar shows the SceneFit tab", False, error)
    redraw()
    check("the sidebar shows the SceneFit tab", sidebar().active_panel_category == "SceneFit")
    settings = scene().scenefit
    settings.targets = CONFIG["targets"]
    settings.output_dir = CONFIG["output"]
    settings.steps, settings.batch_size = 400, 8
    settings.resolution_x = settings.resolution_y = 32
    settings.workers = CONFIG.get("workers", 1)
    result = call(bpy.ops.scenefit.check_targets)
    current = m("targets.check").current(scene())
    check(
        "Targets ▸ Check loads every target",
        result == {"FINISHED"} and current is not None and len(current.loaded) == CONFIG["target_count"],
        current.summary() if current is not None else result,
    )
    redraw()
    users = values(scene())
    REPORT["user_values"] = users
    event(f"user values {users}")

    # --- run 1: progress, save during the run, screenshot, Esc ---
    yield from optimize()
    first = step()
    yield from until(lambda: step() >= first + 2, 120, "progress advances by two steps")
    if settings.workers > 1:  # the workers render their snapshots: this Blender renders nothing itself
        check("render workers are running", len(workers_left()) == settings.workers, workers_left())
        check("the scene keeps the user's values while workers render", values(scene()) == users, values(scene()))
    else:
        check("the scene shows a sample while running", values(scene()) != users, values(scene()))
    redraw()
    result = call(bpy.ops.wm.save_as_mainfile, filepath=CONFIG["saved"], copy=True)
    check("saving during a run", result == {"FINISHED"} and running(), result)
    check("after the save the run goes on with a sample", running())
    yield from until(lambda: m("run.pictures").current(scene())[1], 60, "the Run panel's pictures")
    renders, plots = m("run.pictures").current(scene())
    check("the Run panel shows renders under targets and a plot per parameter", renders and len(plots) == 2, plots)
    yield 1.0
    redraw()
    screenshot(CONFIG["screenshot"])
    window = ui()["window"]
    window.event_simulate(type="ESC", value="PRESS")
    window.event_simulate(type="ESC", value="RELEASE")
    yield from until(lambda: not running(), 60, "Esc ends the run")
    outcome = m("run.controller").CONTROLLER.outcome
    check("Esc: the run is stopped", outcome is not None and outcome.status == "stopped", outcome)
    check("Esc: every random property has the user's value again", values(scene()) == users, values(scene()))
    check("Esc: the learned values were written", bool(learned(scene())), learned(scene()))
    check("Esc: no render worker is left", workers_left() == [], workers_left())
    check("Esc: the panel shows them", all(s.learned for s in scene().scenefit.specs))
    redraw()

    # --- Open Results Folder, where the system cannot open folders ---
    bpy.context.window_manager.clipboard = ""
    result = call(bpy.ops.scenefit.open_results)
    folder = str(m("run.results").results_folder(scene()))
    check("Open Results Folder without a folder opener is refused", result == {"CANCELLED"}, result)
    check(
        "… and the path is given (clipboard)",
        bpy.context.window_manager.clipboard == folder,
        bpy.context.window_manager.clipboard,
    )

    # --- Apply Mean sets what the panel shows ---
    result = call(bpy.ops.scenefit.apply_mean)
    panels = m("ui.panels")
    shown = {s.label: panels.spec_summary(s)[0] for s in scene().scenefit.specs}
    after = values(scene())
    for spec in scene().scenefit.specs:
        entry = json.loads(spec.learned)
        mean = math.exp(entry["mu"] + entry["sigma"] ** 2 / 2)
        check(
            f"Apply Mean sets {spec.label} to the mean the panel shows",
            abs(after[spec.label] - mean) < 1e-4 and f"mean {mean:.4g}" in shown[spec.label],
            f"{after[spec.label]} vs {shown[spec.label]}",
        )
    call(bpy.ops.ed.undo)
    check("Undo puts back the user's values after Apply Mean", values(scene()) == users, values(scene()))
    redraw()

    # --- run 2: the Stop button ---
    yield from optimize()
    redraw()
    result = call(bpy.ops.scenefit.stop)
    check("Stop ends the run", result == {"FINISHED"} and not running(), result)
    yield 0.5
    check("Stop: every random property has the user's value again", values(scene()) == users, values(scene()))
    check("Stop: no render worker is left", workers_left() == [], workers_left())

    # --- run 3: disabling the extension mid-run; the result survives a later undo ---
    scene().scenefit.seed = 7  # learns other values than run 2
    before = learned(scene())
    yield from optimize()
    yield from until(lambda: step() >= 2, 120, "run 3 reaches step 2")
    redraw()
    bpy.ops.preferences.addon_disable(module=MODULE)
    check("disabling the extension mid-run", MODULE not in bpy.context.preferences.addons)
    yield 0.5
    redraw()
    written = learned(scene())
    check("disabling: the run's learned values were written", written and written != before, written)
    addon_utils.enable(MODULE, default_set=True)
    check("enabling it again", MODULE in bpy.context.preferences.addons)
    check("disabling: every random property has the user's value again", values(scene()) == users, values(scene()))
    check("disabling: no render worker is left", workers_left() == [], workers_left())
    redraw()
    scene().frame_current += 1  # a user edit after the run, then Ctrl+Z
    bpy.ops.ed.undo_push(message="user edit")
    call(bpy.ops.ed.undo)
    check("Ctrl+Z undoes the user's edit, not the run", learned(scene()) == written, learned(scene()))
    redraw()
    yield 0.5


def result(folder) -> dict:
    with open(os.path.join(str(folder), "result.json")) as file:
        return json.load(file)


def headless_run(workers: int, steps: int, output: str) -> dict:
    """The same run as the UI's, through ``blender -b -P scenefit_batch.py`` (this Blender's binary), while this
    Blender waits: its result.json."""
    command = [
        bpy.app.binary_path, "-b", "--python-exit-code", "1", "-P", CONFIG["batch_script"], "--",
        "--config", CONFIG["preset"], "--build-scene", "--targets", CONFIG["targets"], "--output", output,
        "--steps", str(steps), "--batch-size", "8", "--resolution", "32", "--workers", str(workers),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    check(f"headless run ({workers} worker(s)) exits 0", completed.returncode == 0, completed.stdout[-2000:])
    return result(output)


def _stat(path: str) -> tuple[str, float] | None:
    """A /proc stat file's name and CPU seconds (user + system); None once the thread or process has ended."""
    try:
        with open(path) as file:
            name, fields = file.read().split("(", 1)[1].rsplit(")", 1)
    except OSError:
        return None
    utime, stime = (int(v) for v in fields.split()[11:13])
    return name, (utime + stime) / os.sysconf("SC_CLK_TCK")


def _x_server() -> str | None:
    """The /proc stat file of the Xvfb that shows this Blender (it takes each window swap's pixels)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(f"/proc/{entry}/stat")) and found[0] == "Xvfb":
            return f"/proc/{entry}/stat"
    return None


X_SERVER = _x_server()


def cpu_seconds() -> dict[str, float]:
    """CPU seconds this Blender's threads have used — its main thread, llvmpipe's (software GL drawing), the rest —
    and the X server's."""
    used = {"main": 0.0, "llvmpipe": 0.0, "other": 0.0, "xserver": 0.0}
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        if (found := _stat(f"/proc/{os.getpid()}/task/{task}/stat")) is None:  # the thread ended meanwhile
            continue
        name, seconds = found
        kind = "main" if int(task) == os.getpid() else "llvmpipe" if name.startswith("llvmpipe") else "other"
        used[kind] += seconds
    if X_SERVER and (found := _stat(X_SERVER)):
        used["xserver"] = found[1]
    return used


def ui_run(workers: int, steps: int):
    """One run from the panel as the button starts it, to its end; yields, then leaves its result.json in
    REPORT["last_ui"]."""
    settings = scene().scenefit
    settings.steps, settings.workers = steps, workers
    counted = {"UI": 0, "WINDOW": 0}  # redraws of the 3D Viewport's sidebar and of its view during the run

    def count(region: str) -> None:
        counted[region] += 1

    handlers = [(r, bpy.types.SpaceView3D.draw_handler_add(count, (r,), r, "POST_PIXEL")) for r in counted]
    cpu, started = cpu_seconds(), time.monotonic()
    result_ = call(bpy.ops.scenefit.optimize, "INVOKE_DEFAULT")
    check("Optimize (INVOKE_DEFAULT, as the button) starts a modal run", result_ == {"RUNNING_MODAL"}, result_)
    if workers > 1:  # Xvfb's GL is llvmpipe: the status bar's redraws are spaced out
        controller, drawn_by = m("run.controller"), gpu.platform.device_type_get()
        every, wanted = controller.CONTROLLER.status_every, controller.SOFTWARE_DRAWN_STATUS_S
        check("drawn in software, the status bar shows the progress less often", every == wanted, (drawn_by, every))
    timeline = []

    def ended() -> bool:
        session = m("run.controller").CONTROLLER.session
        if session is not None:
            used = cpu_seconds()
            point = (round(time.monotonic() - started, 2), session.renders, used["main"], used["llvmpipe"])
            timeline.append((*point, used["xserver"]))
        return not running()

    yield from until(ended, 300, f"the UI run with {workers} worker(s) ends")
    seconds = time.monotonic() - started
    for region, handler in handlers:
        bpy.types.SpaceView3D.draw_handler_remove(handler, region)
    REPORT.setdefault("ui_timeline", []).append([point[:2] for point in timeline])
    # How responsive the interface stays: this driver's timer asks for a call every 0.2 s (a busy main thread delays
    # it).
    gaps = sorted(later[0] - earlier[0] for earlier, later in zip(timeline, timeline[1:], strict=False))
    if gaps:
        timer = {"workers": workers, "median_s": round(gaps[len(gaps) // 2], 3), "max_s": round(gaps[-1], 3)}
        REPORT.setdefault("ui_timer", []).append(timer)
    # What the interface itself took from the workers' cores while images/s was measured (from the end of the
    # first batch to the last batch): its main thread, its software GL and the X server (reported only), between
    # the first and the last timer call of that span.
    measured = [point for point in timeline if settings.batch_size <= point[1] < steps * settings.batch_size]
    if len(measured) >= 2 and measured[-1][0] > measured[0][0]:
        first, last = measured[0], measured[-1]
        span = last[0] - first[0]
        kinds = {"main": 2, "llvmpipe": 3, "xserver": 4}  # where in a timeline point
        cores = {kind: round((last[at] - first[at]) / span, 3) for kind, at in kinds.items()}
        REPORT.setdefault("ui_steady_cores", []).append({"workers": workers, **cores})
        if workers > 1:
            busy = cores["main"] + cores["llvmpipe"]
            what = f"the interface's threads use at most {STEADY_CORES} cores while workers render"
            check(what, busy <= STEADY_CORES, cores)
    event(f"draws during the run: {counted} in {seconds:.1f} s; renders over time {[p[:2] for p in timeline[::5]]}")
    if workers > 1:  # (one worker renders in this process and redraws the viewport after every slice: the samples)
        # With workers nothing in the scene changes: the view is drawn when the run starts and ends, no more. Reading
        # the targets into the file's data made 8 (one rebuild of the depsgraph restarted the progressive AA).
        check("the 3D Viewport is drawn at most 3 times during a run with workers", counted["WINDOW"] <= 3, counted)
    outcome = m("run.controller").CONTROLLER.outcome
    check("the UI run finished", outcome is not None and outcome.status == "finished", outcome)
    REPORT["last_ui"] = result(outcome.output_dir)
    used = {kind: round((value - cpu[kind]) / seconds, 3) for kind, value in cpu_seconds().items()}
    REPORT.setdefault("ui_cpu_per_s", []).append({"workers": workers, **used})  # cores this Blender kept busy
    event(f"UI run, {workers} worker(s): this Blender used {used} cores over {seconds:.1f} s")


def rate_scenario():
    """images/s of the same run in this UI and headless, alternating (headless, UI, headless, UI…), CONFIG["rounds"]
    times with CONFIG["workers"] render workers and once in-process; the figures go to REPORT["rates"]."""
    area = ui()["area"]
    area.spaces.active.show_region_ui = True
    yield 1.0
    redraw()
    result_ = call(bpy.ops.scenefit.apply_preset, preset="supershape_density")
    check("Apply Preset ▸ Supershape density", result_ == {"FINISHED"}, result_)
    redraw()
    yield 0.5
    sidebar().active_panel_category = "SceneFit"  # a user watches the run's progress and pictures
    redraw()
    settings = scene().scenefit
    settings.targets = CONFIG["targets"]
    settings.output_dir = CONFIG["output"]
    settings.batch_size = 8
    settings.resolution_x = settings.resolution_y = 32
    check("the panel's workers default is 0 (what fits the machine)", settings.workers == 0, settings.workers)
    for kind, where in (("window", {}), ("sidebar", {"region": sidebar()})):
        with bpy.context.temp_override(**{**ui(), **where}):
            cpu, started = sum(cpu_seconds().values()), time.monotonic()
            bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP" if kind == "window" else "DRAW_SWAP", iterations=5)
            used, seconds = (sum(cpu_seconds().values()) - cpu) / 5, (time.monotonic() - started) / 5
        REPORT.setdefault("redraw", {})[kind] = {"cpu_s": round(used, 3), "wall_s": round(seconds, 3)}
        event(f"a {kind} redraw: {used:.3f} CPU s, {seconds:.3f} s")
    rates = REPORT["rates"] = {"ui": {}, "headless": {}, "same_values": []}
    plan = [(CONFIG["workers"], CONFIG["steps"])] * CONFIG["rounds"]
    plan += [(1, CONFIG["in_process_steps"])] if CONFIG["in_process_steps"] else []
    for index, (workers, steps) in enumerate(plan):
        headless = headless_run(workers, steps, os.path.join(CONFIG["output"], f"headless-{index}"))
        yield 0.5
        yield from ui_run(workers, steps)
        ui_result = REPORT["last_ui"]
        for kind, run in (("headless", headless), ("ui", ui_result)):
            rates[kind].setdefault(str(workers), []).append(run["images_per_s"])
        rates["same_values"].append(ui_result["parameters"] == headless["parameters"])
        shown = f"headless {headless['images_per_s']:.1f}, UI {ui_result['images_per_s']:.1f} images/s"
        event(f"{workers} worker(s): {shown}")
    check("no render worker is left", workers_left() == [], workers_left())


def main() -> None:
    steps = rate_scenario() if CONFIG.get("mode") == "rate" else scenario()

    def tick():
        try:
            delay = next(steps)
            if time.monotonic() - STARTED > CONFIG["timeout"]:
                raise TimeoutError(f"the scenario took more than {CONFIG['timeout']} s")
            return delay
        except StopIteration:
            pass
        except Exception:
            REPORT["error"] = traceback.format_exc()
            print("[driver] scenario error:\n" + REPORT["error"], flush=True)
        finish()
        return None

    bpy.app.timers.register(tick, first_interval=2.0)


def finish() -> None:
    REPORT["seconds"] = time.monotonic() - STARTED
    with open(CONFIG["report"], "w") as file:
        json.dump(REPORT, file, indent=1, default=str)
    print("[driver] done", flush=True)
    sys.stdout.flush()
    os._exit(0)  # quit now: nothing of this session is kept (no preferences, no recent files)


main()
