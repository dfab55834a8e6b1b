"""Cycles render devices: the user's GPU choice holds in this process and in every render worker.

What renders where is Blender's Preferences ▸ System ▸ Cycles Render Devices (the Cycles add-on's preferences:
``compute_device_type`` and the ``use`` tick of each device) together with the scene's Device (CPU or GPU). A scene
that renders Cycles on the GPU while no GPU the preferences use is there would render on the CPU without a word;
:func:`check_gpu` makes that an error before anything renders, here and in each worker.

Workers start with Blender's default preferences, so the pool carries the user's to each of them
(:func:`for_workers`, :func:`apply`). When the scene renders on the GPU each worker gets one of the used GPUs,
round-robin (:func:`assign`, a pure function), and sees only that one where the runtime has a variable for it
(:data:`VISIBILITY`): Cycles names a device by its PCI location, so the worker's number for it is its rank in PCI
order among the devices of the runtime (``CUDA_DEVICE_ORDER=PCI_BUS_ID`` for CUDA). A variable the user already set
is left as it is (its numbers are the user's); the worker's ``use`` ticks still pick its one GPU. oneAPI and Metal
have no such variable here: their workers get their GPU through the ``use`` ticks alone. A worker that cannot see the
GPU it was given fails :func:`check_gpu` at start-up, named, instead of rendering on the CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bpy

from ...engine.errors import RenderError

# compute_device_type → the variable that limits which devices a process sees, and the runtime whose devices it
# numbers (OptiX devices are CUDA devices).
VISIBILITY = {"CUDA": ("CUDA_VISIBLE_DEVICES", "CUDA"), "OPTIX": ("CUDA_VISIBLE_DEVICES", "CUDA")}
VISIBILITY["HIP"] = ("HIP_VISIBLE_DEVICES", "HIP")
# Set with the variable: CUDA's own default order (fastest first) is not the PCI order the numbers are counted in.
ORDER = {"CUDA_VISIBLE_DEVICES": ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")}
# Cycles' device ids end in the PCI location, "<domain>:<bus>:<device>" in hex (OptiX ones then "_OptiX").
_PCI = re.compile(r"_([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2})(?:_OptiX)?$", re.IGNORECASE)


@dataclass(frozen=True)
class WorkerDevices:
    """What one worker renders on: the compute device type, the ids of the devices it ticks as used, and the
    variables added to its environment."""

    compute_type: str
    use: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"compute_type": self.compute_type, "use": list(self.use), "environment": dict(self.environment)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerDevices:
        return cls(data["compute_type"], tuple(data["use"]), dict(data["environment"]))


def assign(
    compute_type: str, gpus: Sequence[str], visible: Sequence[str], count: int, environ: Mapping[str, str]
) -> list[WorkerDevices]:
    """One GPU for each of ``count`` workers, round-robin over ``gpus`` (the ids of the used GPUs, at least one).
    ``visible``: the ids of every device of the runtime this process sees, which the visibility variable numbers;
    ``environ``: this process's environment (a visibility variable already there is inherited unchanged)."""
    variable, _ = VISIBILITY.get(compute_type, (None, None))
    order = sorted(location for device in visible if (location := pci_location(device)) is not None)
    assigned = []
    for index in range(count):
        gpu = gpus[index % len(gpus)]
        environment: dict[str, str] = {}
        location = pci_location(gpu)
        if variable is not None and variable not in environ and location in order:
            environment[variable] = str(order.index(location))
            if variable in ORDER:
                name, value = ORDER[variable]
                environment[name] = value
        assigned.append(WorkerDevices(compute_type, (gpu,), environment))
    return assigned


def pci_location(device_id: str) -> str | None:
    """The PCI location in a Cycles device id ("CUDA_NVIDIA H200_0000:19:00" → "0000:19:00"), lower case."""
    found = _PCI.search(device_id)
    return found.group(1).lower() if found else None


def renders_on_gpu(scene: bpy.types.Scene, engine: str) -> bool:
    return engine == "CYCLES" and getattr(getattr(scene, "cycles", None), "device", "CPU") == "GPU"


def check_gpu(scene: bpy.types.Scene, engine: str) -> None:
    """Raise :class:`RenderError` when ``scene`` renders Cycles on the GPU (with ``engine``) but no GPU that the
    preferences use is present in this process: Cycles would silently render on the CPU."""
    if not renders_on_gpu(scene, engine):
        return
    compute_type, used, _ = _present()
    if used:
        return
    shown = {"NONE": "None"}.get(compute_type, compute_type)
    seen = [f"{name}={os.environ[name]}" for name in _variables() if name in os.environ]
    raise RenderError(
        f"scene {scene.name!r} renders Cycles on the GPU but process {os.getpid()} has no GPU that Blender's "
        f"preferences use (compute device type {shown}{''.join(f', {s}' for s in seen)}): it would render on the CPU; "
        "tick a GPU in Preferences ▸ System ▸ Cycles Render Devices or set the scene's Device to CPU"
    )


def for_workers(scene: bpy.types.Scene, engine: str, count: int) -> list[WorkerDevices]:
    """What each of ``count`` workers renders on: one used GPU each when ``scene`` renders on the GPU (raises as
    :func:`check_gpu` when there is none), else the user's own choice for every worker."""
    check_gpu(scene, engine)
    compute_type, used, visible = _present()
    if renders_on_gpu(scene, engine):
        return assign(compute_type, used, visible, count, os.environ)
    prefs = cycles_preferences()
    ticked = tuple(entry.id for entry in prefs.devices if entry.use) if prefs is not None else ()
    return [WorkerDevices(compute_type, ticked) for _ in range(count)]


def apply(devices: WorkerDevices) -> dict[str, Any]:
    """Make ``devices`` this process's Cycles preferences (a worker's: it never saves them); returns what they are
    now, read back: ``{"compute_type", "use" (ids), "environment" (the visibility variables set)}``."""
    prefs = cycles_preferences()
    if prefs is None:
        raise RenderError("the Cycles add-on is disabled in the render worker's Blender")
    try:
        prefs.compute_device_type = devices.compute_type
    except TypeError:
        raise RenderError(f"this Blender's Cycles cannot render with {devices.compute_type}") from None
    prefs.refresh_devices()  # fills prefs.devices with what this process sees
    for entry in prefs.devices:
        entry.use = entry.id in devices.use
    return {
        "compute_type": prefs.compute_device_type,
        "use": [entry.id for entry in prefs.devices if entry.use],
        "environment": {name: os.environ[name] for name in _variables() if name in os.environ},
    }


def cycles_preferences() -> Any:
    addon = bpy.context.preferences.addons.get("cycles")
    return addon.preferences if addon is not None else None


def _present() -> tuple[str, list[str], list[str]]:
    """(compute device type, ids of the used GPUs present, ids of every device of its runtime present)."""
    prefs = cycles_preferences()
    compute_type = prefs.compute_device_type if prefs is not None else "NONE"
    if compute_type == "NONE":
        return compute_type, [], []
    used = [entry.id for entry in prefs.get_devices_for_type(compute_type) if entry.use and entry.type == compute_type]
    runtime = VISIBILITY.get(compute_type, (None, compute_type))[1]
    visible = [entry.id for entry in prefs.get_devices_for_type(runtime) if entry.type == runtime]
    return compute_type, used, visible


def _variables() -> list[str]:
    names = {variable for variable, _ in VISIBILITY.values()}
    return sorted(names | {order for order, _ in ORDER.values()})
