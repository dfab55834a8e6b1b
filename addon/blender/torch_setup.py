"""Getting torch for the panel: its status (cached: looking it up scans site-packages, too slow for every redraw)
and an Install button that runs pip in a subprocess, polled by a timer so the interface never waits on it."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field

import bpy

from ... import torch_vendor
from . import preferences

POLL_INTERVAL_S = 0.5


@dataclass
class InstallJob:
    """A pip install running in the background; ``lines`` keeps the tail of its output for the panel."""

    process: subprocess.Popen
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    returncode: int | None = None

    def __post_init__(self) -> None:
        # pip's output must be read as it comes, or a full pipe would stall pip.
        threading.Thread(target=self._drain, name="scenefit-torch-install", daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                self.lines.append(line.strip())

    def poll(self) -> bool:
        """True while pip runs."""
        if self.returncode is None:
            self.returncode = self.process.poll()
        return self.returncode is None


_status: torch_vendor.TorchStatus | None = None
_job: InstallJob | None = None


def status(refresh: bool = False) -> torch_vendor.TorchStatus:
    """Where torch would be imported from (cached until ``refresh``)."""
    global _status
    if _status is None or refresh:
        _status = preferences.torch_status()
    return _status


def job() -> InstallJob | None:
    return _job


def _poll_install() -> float | None:
    """bpy.app.timers callback: keep polling while pip runs, then refresh the status and redraw."""
    if _job is None:
        return None
    if _job.poll():
        _redraw_all()
        return POLL_INTERVAL_S
    status(refresh=True)
    _redraw_all()
    return None


def _redraw_all() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


class SCENEFIT_OT_install_torch(bpy.types.Operator):
    """Download and install torch (CPU build, pinned version) into SceneFit's user folder with pip, in the
    background; needs Allow Online Access"""

    bl_idname = "scenefit.install_torch"
    bl_label = "Install torch"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not bpy.app.online_access:
            cls.poll_message_set("Online access is off: Preferences ▸ System ▸ Network ▸ Allow Online Access")
            return False
        if _job is not None and _job.poll():
            cls.poll_message_set("torch is being installed")
            return False
        return not status().found

    def execute(self, context: bpy.types.Context) -> set[str]:
        global _job
        try:
            _job = InstallJob(torch_vendor.start_install(preferences.user_dir()))
        except OSError as error:
            self.report({"ERROR"}, f"Could not start pip: {error}")
            return {"CANCELLED"}
        if not bpy.app.timers.is_registered(_poll_install):
            bpy.app.timers.register(_poll_install, first_interval=POLL_INTERVAL_S)
        self.report({"INFO"}, f"Installing {torch_vendor.TORCH_REQUIREMENT} in the background")
        return {"FINISHED"}


class SCENEFIT_OT_copy_torch_command(bpy.types.Operator):
    """Copy the pip command that installs torch where SceneFit finds it (run it in a terminal, then restart
    Blender or press Check Again)"""

    bl_idname = "scenefit.copy_torch_command"
    bl_label = "Copy Install Command"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        command = torch_vendor.pip_install_command(torch_vendor.abi_site_dir(preferences.user_dir()))
        context.window_manager.clipboard = " ".join(f'"{part}"' if " " in part else part for part in command)
        self.report({"INFO"}, "Install command copied to the clipboard")
        return {"FINISHED"}


class SCENEFIT_OT_check_torch(bpy.types.Operator):
    """Look for torch again (after installing it or changing the site-packages folder in the preferences)"""

    bl_idname = "scenefit.check_torch"
    bl_label = "Check Again"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        found = status(refresh=True)
        self.report({"INFO"} if found.found else {"WARNING"}, found.message)
        return {"FINISHED"}


_CLASSES = (SCENEFIT_OT_install_torch, SCENEFIT_OT_copy_torch_command, SCENEFIT_OT_check_torch)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_CLASSES)


def register() -> None:
    _register_classes()


def unregister() -> None:
    global _status
    if bpy.app.timers.is_registered(_poll_install):
        bpy.app.timers.unregister(_poll_install)  # a registered timer can keep Blender from exiting
    _status = None
    _unregister_classes()
