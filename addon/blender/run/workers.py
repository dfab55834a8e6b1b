"""Render back-ends of a run: samples in (``submit(sample_id, values)``), images out by sample id (``collect``).

:class:`InProcess` renders with the run's own :class:`sampler.Sampler` on the main thread, one sample per
``collect``. :class:`WorkerPool` hands samples to N headless Blender processes (:mod:`worker`): the same Python
with the bpy module, the running Blender's own binary (``bpy.app.binary_path -b``) in the UI. Each opens a
snapshot of the scene as it was when the run started (:func:`save_snapshot`: a temporary copy of the current,
unsaved state) and renders with ``cores // N`` render threads, on the user's Cycles devices — one GPU of them per
worker when the scene renders on the GPU, none at all being an error (:mod:`devices`). Images come back in any
order; the caller puts them in sample-id order, so what is learned never depends on N or on timing.
With a Ray address (batch ``--ray``) :func:`open_renderer` gives :class:`ray_workers.RayPool`, the same protocol
with actors on a cluster.

Faults follow :class:`pool.RenderPool`, which both pools share: a worker that dies, or does not answer within
:func:`pool.image_timeout` of starting a sample, is killed and started again, and its unfinished samples are sent
again (to whichever worker is free). A sample that was being rendered at two such deaths, or a worker that cannot
start (or is not ready within :data:`pool.START_TIMEOUT_S`) when no other worker is left, raises
:class:`RenderError` naming the reason (the end of the worker's log); a worker that cannot start while others
render is left out and said in :attr:`WorkerPool.problems`. :meth:`WorkerPool.close` ends every worker (its whole
process group) and removes the snapshot; it runs at interpreter exit too, so no worker outlives the run.
"""

from __future__ import annotations

import collections
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import bpy
import numpy as np

from ...engine.errors import RenderError, cut
from ..data.preferences import ADDON_PACKAGE
from ..scene import devices
from ..scene.clips import ClipSettings
from ..scene.render import RenderSettings, make_temp_folder, quiet_stdout
from . import worker as worker_module
from .pool import RenderPool, Sample, WorkerRecord
from .sampler import PropertySpec, Sampler

if TYPE_CHECKING:
    from .ray_workers import RayPool

REPO_VARIABLE = "SCENEFIT_WORKER_REPO"  # the folder of the extension's repository, for a worker that lacks it
# What a worker runs first. It makes the extension's repository known when the worker's Blender does not know it
# (batch mode registers the source folder for its own process only), enables the extension (its properties and
# update handlers belong to the scene) and hands over to worker.main.
BOOTSTRAP = f"""
import importlib, os, sys
import bpy, addon_utils
package = {ADDON_PACKAGE!r}
repo = package.split(".")[1]
if not any(known.module == repo for known in bpy.context.preferences.extensions.repos):
    bpy.context.preferences.extensions.repos.new(
        name=repo, module=repo, custom_directory=os.environ[{REPO_VARIABLE!r}], source="USER")
if addon_utils.enable(package, default_set=False) is None:
    sys.exit("cannot enable " + package)
importlib.import_module(package + ".addon.blender.run.worker").main()
"""
LOG_LINES = 6  # lines of a worker's log quoted as the reason it failed…
LOG_CHARACTERS = 400  # …at most this many of their last characters (the reason comes last)


def cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(workers: int, interactive: bool | None = None) -> int:
    """The number of render processes for the ``workers`` setting (1: render in this process). 0 means what fits
    the machine: one worker per two cores (each renders with two threads) — headless at least one, so on two cores
    the run renders in its own process; in the UI (``interactive``, default: not ``bpy.app.background``) at least
    two, so that the UI's process never renders: its main thread then stays free for the interface and the run does
    not wait for the interface's redraws (bench/README.md, "The interactive run")."""
    if workers > 0:
        return workers
    interactive = not bpy.app.background if interactive is None else interactive
    return max(2 if interactive else 1, cores() // 2)


def save_snapshot() -> Path:
    """Save the current state of the open file, unsaved changes included, to a temporary .blend for the workers;
    the user's file, its path and its unsaved state are untouched (``copy=True``; relative paths are remapped to
    the copy's folder)."""
    path = make_temp_folder() / "snapshot.blend"
    try:
        with quiet_stdout():  # "Info: Saved copy as …" would come between batch mode's lines
            bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, check_existing=False)
    except RuntimeError as error:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise RenderError(f"cannot save a snapshot of the scene for the render workers: {cut(str(error))}") from None
    return path


def worker_command(binary_path: str | None = None) -> list[str]:
    """How to start a worker: the running Blender's binary (``binary_path``, default ``bpy.app.binary_path``) in
    the UI, this Python with the bpy module (whose binary path is empty)."""
    binary_path = bpy.app.binary_path if binary_path is None else binary_path
    if binary_path:
        binary = Path(binary_path)
        if not binary.is_file():
            raise RenderError(f"no Blender binary for the render workers: {cut(str(binary))} does not exist")
        return [str(binary), "-b", "--python-exit-code", "1", "--python-expr", BOOTSTRAP]
    return [sys.executable, "-c", BOOTSTRAP]


def worker_setup(
    snapshot: str,
    scene: bpy.types.Scene,
    specs: Sequence[PropertySpec],
    settings: RenderSettings,
    clip: ClipSettings | None,
    threads: int,
) -> dict[str, Any]:
    """What a worker needs to render (plain data, :func:`worker.open_sampler` reads it): the snapshot's path, the
    scene's name, the specs, the render settings, the clip and its render threads. A worker on another machine is
    given the external files too (:mod:`ray_workers`; a local worker reads them where the file does): ``external``,
    their copies there by the paths here, ``origin``, the snapshot's folder here, and ``present``, every external
    path that exists here (:mod:`..scene.external`)."""
    return {
        "snapshot": snapshot,
        "external": {},
        "origin": "",
        "present": [],
        "scene": scene.name,
        "specs": [
            {name: getattr(spec, name) for name in ("label", "id_type", "id_name", "data_path")} for spec in specs
        ],
        "settings": asdict(settings),
        "clip": clip.to_dict() if clip is not None else None,
        "threads": threads,
    }


def open_renderer(
    sampler: Sampler, specs: Sequence[PropertySpec], workers: int, ray: str = ""
) -> InProcess | WorkerPool | RayPool:
    """Where ``sampler``'s samples go for the ``workers`` setting: with a Ray address (``ray``), that many actors on
    the cluster (:class:`ray_workers.RayPool`; 0: what it has room for); else a pool of :func:`worker_count`
    processes over a snapshot of its scene (which stays as it is), or, for one, ``sampler`` itself, entered here
    (the caller restores it)."""
    if ray:
        from .ray_workers import RayPool  # it imports this module; Ray itself only once it connects

        return RayPool(ray, workers, sampler.scene, specs, sampler.settings, sampler.clip)
    count = worker_count(workers)
    if count > 1:
        return WorkerPool(count, sampler.scene, specs, sampler.settings, sampler.clip)
    return InProcess(sampler.__enter__())


def renders_elsewhere(workers: int, ray: str | None) -> bool:
    """Whether :func:`open_renderer` gives a pool of workers (this process then renders nothing)."""
    return bool(ray) or worker_count(workers) > 1


class InProcess:
    """The render back-end without workers: ``sampler`` (entered by the caller) renders one submitted sample per
    :meth:`collect`, in the order submitted."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._queue: collections.deque[Sample] = collections.deque()
        self.problems: list[str] = []

    def submit(self, sample_id: int, values: Mapping[str, Any]) -> None:
        self._queue.append((sample_id, values))

    def collect(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        """The next submitted sample's image (nothing when none is left); ``timeout`` is the pool's: one render
        takes the time it takes."""
        if not self._queue:
            return []
        sample_id, values = self._queue.popleft()
        return [(sample_id, self.sampler.render(sample_id, values))]

    @property
    def summary(self) -> str:
        return "1 (renders in this process)"

    def close(self) -> None:
        self._queue.clear()


@dataclass(kw_only=True)
class _Process(WorkerRecord):
    process: subprocess.Popen
    log: IO[bytes]
    connection: Connection | None = None  # once it connected back
    devices: dict[str, Any] = field(default_factory=dict)  # its Cycles devices as it applied them (devices.apply)


class WorkerPool(RenderPool):
    """``count`` render processes over a snapshot (:func:`save_snapshot`, taken here) of ``scene``, rendering the
    samples of ``specs`` with ``settings`` (and ``clip``: a whole clip per sample, per worker). A failure to start
    leaves nothing behind: no process, no snapshot.

    >>> pool = WorkerPool(2, scene, specs, settings)
    >>> pool.submit(0, {"yaw": 0.5}); pool.submit(1, {"yaw": 0.7})
    >>> images = dict(pool.collect(timeout=1.0))  # what arrived within a second, by sample id
    >>> pool.close()
    """

    NOUN = "render worker"
    SHORT_NOUN = "worker"
    SAYS_RESTARTS = False  # a worker started again on this machine changes nothing the run reports

    def __init__(
        self,
        count: int,
        scene: bpy.types.Scene,
        specs: Sequence[PropertySpec],
        settings: RenderSettings,
        clip: ClipSettings | None = None,
    ) -> None:
        self.count = count
        self.threads = max(1, cores() // count)  # render threads per worker: workers × threads ≤ cores
        self._command = worker_command()  # before anything is made: no binary, no snapshot
        self._devices = devices.for_workers(scene, settings.engine, count)  # a GPU render without a GPU: neither
        self.snapshot = save_snapshot()
        self._setup = worker_setup(str(self.snapshot), scene, specs, settings, clip, self.threads)
        self._token = secrets.token_hex(16)
        self._server: socket.socket | None = None
        super().__init__()
        try:
            self._server = socket.create_server(("127.0.0.1", 0))
            self._server.setblocking(False)
            for index in range(count):
                self._start_worker(index)
        except BaseException:
            self.close()
            raise

    @property
    def summary(self) -> str:
        """The workers, for the run's settings."""
        return f"{self.count} processes, {self.threads} render thread(s) each"

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        return [w.process.pid for w in self._workers.values() if w.process.poll() is None]

    @property
    def devices(self) -> dict[int, dict[str, Any]]:
        """Worker index → the Cycles devices it renders on, as it reported them once ready (:func:`devices.apply`)."""
        return {w.index: w.devices for w in self._workers.values() if w.ready}

    def close(self) -> None:
        """End every worker (its whole process group) and remove the snapshot; safe to call twice."""
        super().close()
        if self._server is not None:
            self._server.close()
        # Every worker has ended: nothing writes into the folder any more.
        shutil.rmtree(self.snapshot.parent, ignore_errors=True)

    # ---- the pool's hooks -----------------------------------------------------------------------------------

    def _start(self, index: int) -> _Process:
        folder = self.snapshot.parent
        log = open(folder / f"worker-{index}.log", "wb")  # noqa: SIM115  (kept open by the worker; closed in _end)
        host, port = self._server.getsockname()[:2]
        environment = {
            **os.environ,
            worker_module.ADDRESS_VARIABLE: f"{host}:{port}",
            worker_module.TOKEN_VARIABLE: f"{self._token}:{index}",
            worker_module.PARENT_VARIABLE: str(os.getpid()),
            # Not resolved: batch mode's repository may hold the extension as a link to its source folder.
            REPO_VARIABLE: str(Path(sys.modules[ADDON_PACKAGE].__file__).parents[1]),  # the folder holding it
            **self._devices[index].environment,  # its one GPU, where the runtime can be told
        }
        isolation: dict[str, Any] = (
            {"start_new_session": True}  # its own process group: Ctrl-C reaches the run only, close() ends it all
            if os.name == "posix"
            else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        )
        try:
            process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                **isolation,
            )
        except OSError as error:
            log.close()
            raise RenderError(f"cannot start a render worker ({cut(self._command[0])}): {error.strerror}") from None
        return _Process(index=index, process=process, log=log)

    def _send(self, worker: _Process, sample: Sample) -> None:
        worker.connection.send(sample)  # answered in order: no ticket

    def _poll(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        connections = [w.connection for w in self._workers.values() if w.connection is not None]
        arrived: list[tuple[int, np.ndarray]] = []
        for ready in wait([*connections, self._server], timeout=timeout):
            if ready is self._server:
                self._accept()
            elif (owner := self._owner(ready)) is not None:  # None: ended by an earlier message of this wait
                arrived.extend(self._receive(owner))
        return arrived

    def _expects_answers(self) -> bool:
        return True  # a worker may connect at any time: collect waits out its timeout

    def _exit_reason(self, worker: _Process) -> str | None:
        # Once connected, its end shows as the connection ending (_receive).
        if worker.process.poll() is not None and worker.connection is None:
            return f"it exited with code {worker.process.returncode}"
        return None

    def _failure(self, worker: _Process, how: str) -> str:
        return f"{self.NOUN} {worker.index} failed: {how}{self._log_tail(worker)}"

    def _let_stop(self, wait_s: float) -> None:
        for worker in self._workers.values():
            if worker.connection is not None:
                try:
                    worker.connection.send(None)
                except OSError:
                    pass  # it is gone already
        ending = time.monotonic() + wait_s
        for worker in self._workers.values():
            try:
                worker.process.wait(timeout=max(0.0, ending - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def _end(self, worker: _Process) -> None:
        """Kill ``worker`` and everything it started (its process group), then close its pipes."""
        if worker.connection is not None:
            worker.connection.close()
            worker.connection = None
        process = worker.process
        if os.name == "posix":
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its group, even when the leader has exited
            except (ProcessLookupError, PermissionError):
                pass
        elif process.poll() is None:
            process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # unkillable (stuck in the kernel): nothing more can be done from here
        worker.log.close()

    # ---- its connections ------------------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self._server.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        connection = Connection(sock.detach())
        # Raw bytes first: nothing from a peer is unpickled before it proved it was started by this pool.
        try:
            hello = connection.recv_bytes(256) if connection.poll(5.0) else b""
        except (EOFError, OSError):  # gone, or not one of ours (a longer message)
            hello = b""
        token, _, index = hello.decode(errors="replace").partition(":")
        worker = self._workers.get(int(index)) if index.isdigit() else None
        if worker is None or worker.connection is not None or not hmac.compare_digest(token, self._token):
            connection.close()
            return
        worker.connection = connection
        connection.send({**self._setup, "devices": self._devices[worker.index].to_dict()})

    def _owner(self, connection: Any) -> _Process | None:
        return next((w for w in self._workers.values() if w.connection is connection), None)

    def _receive(self, worker: _Process) -> list[tuple[int, np.ndarray]]:
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            self._died(worker, "it ended")
            return []
        if message[0] == "ready":
            _, worker.pid, worker.devices = message
            return []
        return [self._answered(worker, message)]

    def _log_tail(self, worker: _Process) -> str:
        try:
            lines = Path(worker.log.name).read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        if not lines:
            return ""
        tail = " | ".join(lines[-LOG_LINES:])
        return f" — {tail if len(tail) <= LOG_CHARACTERS else '…' + tail[1 - LOG_CHARACTERS :]}"
