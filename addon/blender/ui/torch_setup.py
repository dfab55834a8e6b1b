"""Getting torch for the panel: its status (cached: looking it up scans site-packages, too slow for every redraw)
and the install that runs pip in a subprocess, polled by a timer so the interface never waits on it (the buttons:
``ui/operators/torch_install.py``)."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field

import bpy

from .... import torch_vendor
from ...engine.errors import SceneFitError
from ..data import preferences

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


def installing() -> bool:
    return _job is not None and _job.poll()


def start_install() -> None:
    """Start pip in the background and poll it from a timer (SceneFitError when pip cannot start)."""
    global _job
    try:
        _job = InstallJob(torch_vendor.start_install(preferences.user_dir()))
    except OSError as error:
        raise SceneFitError(f"Could not start pip: {error}") from None
    if not bpy.app.timers.is_registered(_poll_install):
        bpy.app.timers.register(_poll_install, first_interval=POLL_INTERVAL_S)


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


def release() -> None:
    global _status
    if bpy.app.timers.is_registered(_poll_install):
        bpy.app.timers.unregister(_poll_install)  # a registered timer can keep Blender from exiting
    _status = None
