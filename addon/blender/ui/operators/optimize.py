"""Optimize and Stop: start the scene's run as a click does (modal, ticked by a timer; a plain loop in scripts
and batch), end it with Esc or the Stop button. The run itself is :data:`run.controller.CONTROLLER`'s."""

from __future__ import annotations

from typing import Any

import bpy

from ...run.controller import CONTROLLER
from .base import SceneFitOperator, redraw_view3d


class SCENEFIT_OT_optimize(SceneFitOperator, bpy.types.Operator):
    """Learn the distributions of the random properties from the target images (Esc or Stop ends the run and
    restores the scene)"""

    bl_idname = "scenefit.optimize"
    bl_label = "Optimize"
    # No UNDO: samples are never undo steps. One step is pushed when an interactive run ends.
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if CONTROLLER.running:
            cls.poll_message_set("A SceneFit run is already in progress")
            return False
        if context.scene is None or not len(context.scene.scenefit.specs):
            cls.poll_message_set("Add a random property first (right-click a field ▸ Randomize with SceneFit)")
            return False
        return True

    def run(self, context: bpy.types.Context) -> set[str]:
        CONTROLLER.start(context.scene)
        CONTROLLER.run_to_end()
        return self._report_outcome()

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:  # no event loop would ever deliver a timer tick
            return self.execute(context)
        try:
            CONTROLLER.start(context.scene)
        except Exception as error:
            return self.fail(error)
        CONTROLLER.add_timer(context.window_manager, context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            return self._end(context, CONTROLLER.stop)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not CONTROLLER.running:  # stopped by the Stop button, undo or a failure elsewhere
            return self._end(context, None)
        threaded = CONTROLLER.threaded  # workers render their snapshots: only the progress changes
        try:
            going = CONTROLLER.tick()
        except Exception as error:
            CONTROLLER.remove_timer()
            redraw_view3d(context)
            return self.fail(error)
        if not going:
            return self._end(context, None)
        if not threaded:
            redraw_view3d(context)
        else:
            if CONTROLLER.status_due():
                _show_status(context, status_line(context.window_manager.scenefit_progress))
            if CONTROLLER.sidebar_due():
                redraw_view3d(context, sidebar_only=True)
        return {"PASS_THROUGH"}

    def cancel(self, context: bpy.types.Context) -> None:
        CONTROLLER.shutdown()

    def _end(self, context: bpy.types.Context, action: Any) -> set[str]:
        _show_status(context, None)
        try:
            if action is not None:
                action()
        except Exception as error:
            self.fail(error)
        finally:
            CONTROLLER.remove_timer()
        redraw_view3d(context)
        return self._report_outcome()

    def _report_outcome(self) -> set[str]:
        outcome = CONTROLLER.outcome
        if outcome is None:
            return {"CANCELLED"}
        if outcome.status == "failed":
            self.report({"ERROR"}, outcome.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"SceneFit: {outcome.message.lower()}; results in {outcome.output_dir}")
        return {"FINISHED"}


class SCENEFIT_OT_stop(SceneFitOperator, bpy.types.Operator):
    """Stop the SceneFit run now: keep what was learned so far and restore the scene"""

    bl_idname = "scenefit.stop"
    bl_label = "Stop"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return CONTROLLER.running

    def run(self, context: bpy.types.Context) -> set[str]:
        CONTROLLER.stop()
        redraw_view3d(context)
        return {"FINISHED"}


def status_line(progress: Any) -> str:
    """The status bar's line during a run with workers (the sidebar is redrawn only every few seconds)."""
    return (
        f"SceneFit: step {progress.step}/{progress.steps} · {progress.renders} renders · "
        f"{progress.images_per_s:.1f} images/s — Esc stops the run"
    )


def _show_status(context: bpy.types.Context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)
