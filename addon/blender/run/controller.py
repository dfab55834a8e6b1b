"""The interactive run: one :class:`RunController` drives a :class:`~.session.Session` a slice at a time.

The Optimize operator (``ui/operators/optimize.py``) calls :meth:`RunController.tick` from its window-manager
TIMER events (the UI stays live between slices), and in a plain loop when called with EXEC_DEFAULT; tests call
``tick()`` directly because timers never fire in the bpy module. In-process a tick renders for :data:`TICK_SECONDS`;
with render workers the session renders on a thread of its own and a tick, every :data:`WORKERS_TIMER_INTERVAL_S`,
only publishes the progress (in the status bar every :data:`SOFTWARE_DRAWN_STATUS_S` where the interface is drawn in
software) and tags the sidebar for a redraw (each redraw costs the cores the workers render with:
a software-GL sidebar redraw takes ~0.2 CPU s on 2 cores). Saving the .blend mid-run writes the user's values, not a
sample; undo, loading another file and disabling the extension stop the run first. Only one run exists at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from ...engine.errors import MESSAGE_LIMIT, SceneFitError, cut
from ..scene import compat
from ..targets import check as target_check
from . import pictures
from .config import RunConfig
from .session import Session

TIMER_INTERVAL_S = 0.02  # how often the UI asks for the next slice
WORKERS_TIMER_INTERVAL_S = 2.0  # with workers: how often the progress is published (the run goes on meanwhile)
# …in the status bar where Blender draws in software (llvmpipe: a VM, a remote desktop, Xvfb): there each of its
# redraws composites the whole window on the CPU, ~0.09 CPU s each (0.045 of 2 cores at one every 2 s), taken from
# the workers (bench/README.md, "The interactive run"). The run's end is still seen at the next tick.
SOFTWARE_DRAWN_STATUS_S = 6.0
# With workers: how often the sidebar (its numbers and pictures) is redrawn. The sidebar overlaps the 3D Viewport,
# so each of its redraws redraws the viewport too (~0.65 CPU s in software GL, the cores the workers render with);
# the status bar shows the progress in between (ui/operators/optimize.py).
WORKERS_SIDEBAR_S = 10.0
TICK_SECONDS = 0.05  # rendering time per slice: short enough that the interface keeps responding


@dataclass
class RunOutcome:
    """How the last run ended, for the Run panel and the after-run operators."""

    scene_name: str
    status: str  # "finished" | "stopped" | "failed"
    message: str
    output_dir: Path | None


class RunController:
    """Owns the single SceneFit run of this Blender session (module-level :data:`CONTROLLER`)."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.outcome: RunOutcome | None = None
        self._timer: Any = None
        self._window_manager: Any = None
        self._suspended = False
        self.status_every = 0.0  # seconds between progress texts in the status bar (0: each tick)
        self._shown_at = dict.fromkeys(("sidebar", "status"), 0.0)

    @property
    def running(self) -> bool:
        return self.session is not None and self.session.status == "running"

    @property
    def threaded(self) -> bool:
        """Whether the run renders with workers on a thread of its own (the main thread renders nothing)."""
        return self.session is not None and self.session.threaded

    def start(self, scene: bpy.types.Scene, tick_seconds: float = TICK_SECONDS) -> Session:
        """Validate and start a run on ``scene`` (SceneFitError, scene untouched, when it cannot start)."""
        if self.running:
            raise SceneFitError(
                f"a SceneFit run is already in progress on scene {self.session.scene.name!r}: stop it first"
            )
        # Every panel run writes into a folder of its own: a new sub-folder when the output folder holds a run.
        config = RunConfig.from_scene(scene).in_free_folder()
        session = Session(scene, config, tick_seconds=tick_seconds)
        session.start()
        self.session, self.outcome = session, None
        target_check.remember(scene, session.target_report, session.config.resolution)
        return session

    def tick(self) -> bool:
        """One slice of the run (a few renders). True while it goes on; False once it has ended, the scene
        restored. A failure ends the run, restores the scene and is raised."""
        session = self.session
        if session is None:
            return False
        try:
            going = session.step()
        except BaseException:
            self._ended()
            raise
        if not going:
            self._ended()
        else:
            every = WORKERS_SIDEBAR_S if session.threaded else pictures.REFRESH_SECONDS
            pictures.refresh(session, every=every)
        return going

    def run_to_end(self) -> None:
        """The synchronous path (scripts, EXEC_DEFAULT): the same slices in a plain loop."""
        while self.tick():
            pass

    def stop(self) -> None:
        """End the run now (the scene is restored before this returns); a no-op without a run."""
        session = self.session
        if session is None:
            return
        try:
            session.stop()
        finally:
            self._ended()

    def suspend(self) -> None:
        """Put the user's values back for a moment (the .blend is being saved); :meth:`resume` undoes it."""
        if self.running and not self._suspended:
            self.session.suspend()
            self._suspended = True

    def resume(self) -> None:
        if self._suspended:
            self._suspended = False
            if self.running:
                self.session.resume()

    # ---- the UI timer ---------------------------------------------------------------------------------------

    def add_timer(self, window_manager: bpy.types.WindowManager, window: bpy.types.Window) -> None:
        self.remove_timer()
        interval = WORKERS_TIMER_INTERVAL_S if self.threaded else TIMER_INTERVAL_S
        self._timer = window_manager.event_timer_add(interval, window=window)
        self._window_manager = window_manager
        self.status_every = SOFTWARE_DRAWN_STATUS_S if _drawn_in_software() else 0.0
        self._shown_at = dict.fromkeys(("sidebar", "status"), time.monotonic())

    def sidebar_due(self) -> bool:
        """With workers: whether the sidebar is due for a redraw (every :data:`WORKERS_SIDEBAR_S`); True starts the
        next wait."""
        return self._due("sidebar", WORKERS_SIDEBAR_S)

    def status_due(self) -> bool:
        """With workers: whether the status bar is due for the progress (each tick, every
        :data:`SOFTWARE_DRAWN_STATUS_S` where the interface is drawn in software); True starts the next wait."""
        return self._due("status", self.status_every)

    def _due(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._shown_at[what] < every:
            return False
        self._shown_at[what] = now
        return True

    def remove_timer(self) -> None:
        """Remove the window-manager timer (a timer left registered can keep Blender from exiting)."""
        if self._timer is not None:
            try:
                self._window_manager.event_timer_remove(self._timer)
            except (ReferenceError, ValueError, RuntimeError):
                pass  # the window manager went away with the file: its timers went with it
        self._timer, self._window_manager = None, None

    @property
    def has_timer(self) -> bool:
        return self._timer is not None

    # ---- ending ---------------------------------------------------------------------------------------------

    def _ended(self, push_undo: bool = True) -> None:
        session, self.session = self.session, None
        self._suspended = False
        if session is None:
            return
        failed = f"Failed: {cut(str(session.error), MESSAGE_LIMIT)}"
        message = {"finished": "Finished", "stopped": "Stopped"}.get(session.status, failed)
        self.outcome = RunOutcome(_scene_name(session.scene), session.status, message, session.output_dir)
        if push_undo:  # not while a file is loaded or an undo step replaces the data-blocks
            pictures.refresh(session, final=True)
        if push_undo and self._timer is not None:
            _push_undo_step()

    def shutdown(self, push_undo: bool = True) -> None:
        """Stop any run and drop the timer: for loading another file (``push_undo=False``: that file's undo
        history is gone anyway), undo (``False``: never push during an undo) and disabling the extension."""
        try:
            if self.session is not None:
                try:
                    self.session.stop()
                finally:
                    self._ended(push_undo)
        except Exception as error:  # the scene was restored; the results could not be written
            print(f"SceneFit: run stopped, results not written: {error}")
        finally:
            self.remove_timer()

    def forget(self) -> None:
        """Drop the last run's outcome (another file was loaded: its scenes are not the ones that ran)."""
        self.outcome = None


def _drawn_in_software() -> bool:
    """Whether this interface is drawn by a software renderer, where every redraw costs CPU."""
    import gpu

    try:
        return gpu.platform.device_type_get() == "SOFTWARE"
    except SystemError:  # no drawing at all: background mode
        return False


def _push_undo_step() -> None:
    """One undo step holding an interactive run's learned custom properties and the restored scene, however the
    run ended (finished, Esc, Stop, a failure, the extension disabled): a later Ctrl+Z then undoes what came
    after the run, not the run's result with it."""
    try:
        if bpy.ops.ed.undo_push.poll():
            bpy.ops.ed.undo_push(message="SceneFit run")
    except RuntimeError as error:  # no context for undo (e.g. while Blender quits): nothing to keep it for
        print(f"SceneFit: no undo step for the run: {error}")


def _scene_name(scene: bpy.types.Scene) -> str:
    try:
        return scene.name
    except ReferenceError:
        return ""


CONTROLLER = RunController()


# ---- handlers -----------------------------------------------------------------------------------------------


@persistent
def _save_pre(*_args: Any) -> None:
    CONTROLLER.suspend()


@persistent
def _save_post(*_args: Any) -> None:
    CONTROLLER.resume()


@persistent
def _stop_run(*_args: Any) -> None:
    CONTROLLER.shutdown(push_undo=False)


@persistent
def _load_pre(*_args: Any) -> None:
    CONTROLLER.shutdown(push_undo=False)
    CONTROLLER.forget()
    pictures.forget()


_HANDLERS = (
    (bpy.app.handlers.save_pre, _save_pre),
    (bpy.app.handlers.save_post, _save_post),
    # A failed save resumes the run too (where this Blender has the handler).
    (compat.handler_list("save_post_fail"), _save_post),
    (bpy.app.handlers.load_pre, _load_pre),
    # Undo replaces data-blocks the run holds: stop (and restore) before it happens.
    (bpy.app.handlers.undo_pre, _stop_run),
    (bpy.app.handlers.redo_pre, _stop_run),
)


def register() -> None:
    for handlers, handler in _HANDLERS:
        if handlers is not None:
            handlers.append(handler)


def unregister() -> None:
    CONTROLLER.shutdown()
    pictures.unregister()
    for handlers, handler in _HANDLERS:
        if handlers is not None and handler in handlers:
            handlers.remove(handler)
