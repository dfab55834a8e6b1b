"""One render worker: a headless Blender process that renders the samples a :class:`workers.WorkerPool` sends it.

Started by the pool (``python -c`` with the bpy module, ``blender -b --python-expr`` in the UI) with
:data:`workers.BOOTSTRAP`, which enables this extension and calls :func:`main`. The worker connects back to the
pool's local socket, proves it was started by the pool (the token from its environment, sent as raw bytes before
anything is unpickled), receives its setup — the snapshot .blend, the scene, the specs, the render settings, the
clip, its render threads and its Cycles devices — opens the snapshot, makes those devices its own
(:func:`devices.apply`), enters a :class:`sampler.Sampler` (which fails, named, when a GPU render has no GPU here)
and answers ``("ready", pid, devices as applied)``. Then, one message per sample: ``(sample_id, values)`` in,
``("image", sample_id, image)`` or ``("error", sample_id, message)`` out, in order. ``None``, or the pool's end of
the socket closing, ends the worker; so does the pool's process dying (Linux: the kernel ends the worker at once;
elsewhere it ends at its next message). A worker that cannot render as asked (a :class:`SceneFitError` at start-up)
prints that one sentence and exits 1: the pool quotes it as the reason.

The worker never saves its file: the scene it changes is its own copy.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import traceback
from multiprocessing.connection import Connection
from types import SimpleNamespace

import bpy

from ...engine.errors import RenderError, SceneFitError
from ..scene import devices, external
from ..scene.clips import ClipSettings
from ..scene.render import RenderSettings
from .sampler import Sampler, bind

# Set by the pool in each worker's environment.
ADDRESS_VARIABLE = "SCENEFIT_WORKER_ADDRESS"  # host:port of the pool's socket
TOKEN_VARIABLE = "SCENEFIT_WORKER_TOKEN"  # the pool's secret, then ":" and this worker's index
PARENT_VARIABLE = "SCENEFIT_WORKER_PARENT"  # the pool's process id
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main() -> None:
    """Serve the pool until it says stop; exits the process (the bpy module's own shutdown can hang)."""
    code = 0
    try:
        _die_with_parent()
        host, port = os.environ[ADDRESS_VARIABLE].rsplit(":", 1)
        connection = Connection(socket.create_connection((host, int(port))).detach())
        connection.send_bytes(os.environ[TOKEN_VARIABLE].encode())
        serve(connection)
    except (EOFError, ConnectionError):
        pass  # the pool went away: nothing is left to answer
    except SceneFitError as error:  # it cannot render as asked (no usable GPU…): the sentence is the reason
        print(error, file=sys.stderr)
        code = 1
    except BaseException:  # any failure to start: the pool shows the tail of this log as the reason
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(connection: Connection) -> None:
    sampler, applied = open_sampler(connection.recv())
    with sampler:
        connection.send(("ready", os.getpid(), applied))
        while (message := connection.recv()) is not None:
            sample_id, values = message
            try:
                image = sampler.render(sample_id, values)
            except SceneFitError as error:  # this sample cannot be rendered: the run decides what that means
                connection.send(("error", sample_id, str(error)))
            else:
                connection.send(("image", sample_id, image))


def open_sampler(setup: dict) -> tuple[Sampler, dict]:
    """Open ``setup``'s snapshot, make its devices this process's Cycles devices, and return the (not yet entered)
    :class:`Sampler` of its scene, specs, render settings and clip, rendering with its threads, and the devices as
    applied; a Ray actor (:mod:`ray_actor`) renders through this too."""
    bpy.ops.wm.open_mainfile(filepath=setup["snapshot"], load_ui=False)
    if setup["origin"]:  # a snapshot saved on another machine: its external files are where this one put them
        external.redirect(setup["external"], setup["origin"])
    lost = external.missing(setup["present"])
    if lost:
        shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        raise RenderError(
            f"this machine lacks {len(lost)} file(s) the scene reads: {shown}; pack them into the .blend "
            "(File ▸ External Data ▸ Pack Resources) or put them at the same paths on every node"
        )
    scene = bpy.data.scenes[setup["scene"]]
    # Workers × threads ≤ cores: Cycles would otherwise start one thread per core in every worker.
    scene.render.threads_mode = "FIXED"
    scene.render.threads = setup["threads"]
    # The user's Cycles devices, or its one GPU of them: before the sampler checks that a GPU render has a GPU.
    applied = devices.apply(devices.WorkerDevices.from_dict(setup["devices"]))
    specs = [SimpleNamespace(**spec) for spec in setup["specs"]]
    clip = ClipSettings.from_dict(setup["clip"]) if setup["clip"] is not None else None
    settings = RenderSettings(**setup["settings"])
    return Sampler(scene, bind(specs), settings, clip), applied


def _die_with_parent() -> None:
    """Linux: have the kernel end this process when the pool's process ends, however it ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # no prctl: the worker still ends at its next message
    if os.getppid() != int(os.environ.get(PARENT_VARIABLE, os.getppid())):
        os._exit(0)  # the pool died before the request took effect
