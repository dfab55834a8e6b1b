"""Render workers as Ray actors, for batch ``--ray ADDRESS|auto``: :class:`RayPool` keeps :class:`workers.WorkerPool`'s
protocol (``submit(sample_id, values)``, ``collect(timeout)``, ``close()``; images by sample id, in any order) across
the nodes of a Ray cluster, so the same seed learns the same values as local workers.

Ray is an optional extra (requirements-ray.txt, :data:`REQUIREMENT`): it is imported here and by :mod:`ray_actor`
only, inside functions, never when the extension is imported or registered. :func:`connect` joins the cluster at
``HOST:PORT`` or ``auto`` (resolved as Ray resolves it) or raises :class:`ClusterError` whose one sentence names the
address and the reason: Ray not installed (with the extra to install), no cluster found for ``auto``, nothing
listening, no answer, or Ray's own refusal. A plain TCP connection is tried first: ``ray.init`` retries an address
that does not answer for a minute. The driver must run on a node of the cluster (``ray start`` there).

:class:`RayPool` starts N :class:`ray_actor.SceneFitActor` actors (bpy-module Ray worker processes), each with one
CPU and one render thread, on the nodes that offer the ``scenefit_worker`` resource (one unit per actor) when any
node does, else on any node; N = 0 means as many as the cluster has room for (:func:`actors`), more is refused.
What the actors need travels through Ray's object store, not a shared file system: the extension's files (what
its built zip holds, :func:`package`), the snapshot of the scene as .blend bytes (:func:`workers.save_snapshot`,
deleted here once read), the files outside the .blend that its data-blocks read (image textures, sounds, fonts,
volumes, movie clips, caches: :func:`..scene.external.sendable`; the actor points the snapshot at its copies) and
the setup. What cannot be sent that way (an image sequence, a UDIM set, a linked library) must be packed or at the
same path on every node: an actor on a node that lacks it cannot start, and says which files. The pool waits until
every actor is ready, so that the run's settings can name their nodes (:attr:`RayPool.summary`).

Faults are a local pool's, the policy of :class:`pool.RenderPool` that both share: an actor that dies (its process
killed, its node lost) or renders nothing for :func:`pool.image_timeout` is killed, started again (said in
:attr:`RayPool.problems`), and its unfinished samples are sent again to whichever actor is free. A sample that was
being rendered at two such deaths, an actor that fails on a sample, or an actor that cannot start when no other is
left raises :class:`RenderError` with Ray's reason; an actor that cannot start while others render is left out and
said in :attr:`RayPool.problems`. :meth:`RayPool.close` kills every actor (also at interpreter exit); a driver
killed outright takes its actors with it (Ray ends the actors of a dead owner).
"""

from __future__ import annotations

import collections
import fnmatch
import io
import os
import re
import shutil
import signal
import socket
import sys
import threading
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...engine.errors import ClusterError, RenderError, cut
from ..data.preferences import ADDON_PACKAGE
from ..scene import devices, external
from ..scene.clips import ClipSettings
from ..scene.render import RenderSettings
from .pool import POLL_S, RenderPool, Sample, WorkerRecord
from .sampler import PropertySpec
from .workers import save_snapshot, worker_setup

REQUIREMENT = "ray==2.60.0"  # the pin of requirements-ray.txt (a test keeps the two the same)
WORKER_RESOURCE = "scenefit_worker"  # a node's units of it: the render actors it takes
ACTOR_CPUS = 1  # each actor's CPUs in Ray's accounting, and its render threads
CONNECT_TIMEOUT_S = 5.0  # the plain TCP probe before ray.init
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the names in its messages


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` or ``auto``) unless this process has joined one already;
    :class:`ClusterError` says why it cannot. The stop signals' handlers are kept (``ray.init`` sets its own)."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"Ray is needed for --ray {address} but is not installed in {sys.executable}: "
            f"pip install -r requirements-ray.txt ({REQUIREMENT}); the extension itself never needs it"
        ) from None
    if ray.is_initialized():
        return
    target = _resolve_auto() if address == "auto" else address
    label = f"auto ({target})" if address == "auto" else address
    _probe(target, timeout_s, label)
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        ray.init(address=target, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"Ray could not join the cluster at {label}: {_first_line(error)}") from None
    finally:
        if handler is not None:  # ray.init's SIGTERM handler exits at once: a run stops at its next render instead
            signal.signal(signal.SIGTERM, handler)


def _probe(address: str, timeout_s: float, label: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except TimeoutError:
        raise ClusterError(f"the Ray cluster at {label} is unreachable: no answer within {timeout_s:g} s") from None
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise ClusterError(f"the Ray cluster at {label} is unreachable: {reason}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return cut(text.splitlines()[0]) if text else type(error).__name__


def _resolve_auto() -> str:
    """The HOST:PORT ``ray.init(address="auto")`` would pick: RAY_ADDRESS, the last ``ray start`` of this machine,
    else the one GCS server process running on it (in any network namespace: the address may not be reachable)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die  # pinned by REQUIREMENT

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as error:
        raise ClusterError(f"--ray auto found no Ray cluster to join: {_first_line(error)}") from None


def slots(nodes: Sequence[Mapping[str, Any]]) -> tuple[int, bool]:
    """How many render actors the live ``nodes`` (``ray.nodes()``) have room for, and whether they are pinned to the
    nodes with the ``scenefit_worker`` resource: one per unit of it (at most one per CPU) when any node has it,
    else one per CPU."""
    resources = [node["Resources"] for node in nodes if node.get("Alive")]
    pinned = any(WORKER_RESOURCE in r for r in resources)
    per_node = (
        min(r.get("CPU", 0) // ACTOR_CPUS, r.get(WORKER_RESOURCE, 0)) if pinned else r.get("CPU", 0) // ACTOR_CPUS
        for r in resources
    )
    return int(sum(per_node)), pinned


def actors(address: str, count: int) -> tuple[int, bool]:
    """Join the cluster at ``address`` (:func:`connect`) and return how many render actors ``count`` means there
    (0: as many as it has room for) and whether they are pinned (:func:`slots`); :class:`ClusterError` when it has
    no room for them."""
    connect(address)
    import ray

    room, pinned = slots(ray.nodes())
    if room == 0 or count > room:
        where = f"one per unit of {WORKER_RESOURCE} and CPU" if pinned else "one per CPU"
        raise ClusterError(
            f"the Ray cluster at {address} has room for {room} render actor(s) ({where})"
            + (f", not for {count}" if count else "")
        )
    return count or room, pinned


def package(root: Path | None = None) -> bytes:
    """The extension's files as a zip, as its built zip holds them: ``root`` (default: the folder of the extension's
    package, not resolved: it may be a link) less the manifest's ``paths_exclude_pattern`` (gitignore-like: ``/``
    first anchors at ``root``, ``/`` last matches folders)."""
    root = Path(sys.modules[ADDON_PACKAGE].__file__).parent if root is None else root
    patterns = tomllib.loads((root / "blender_manifest.toml").read_text())["build"]["paths_exclude_pattern"]

    def excluded(relative: str, is_folder: bool) -> bool:
        for pattern in patterns:
            if pattern.endswith("/") and not is_folder:
                continue
            body = pattern.strip("/")
            if fnmatch.fnmatchcase(relative if pattern.startswith("/") else relative.rsplit("/", 1)[-1], body):
                return True
        return False

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, folders, files in os.walk(root):
            here = Path(folder).relative_to(root).as_posix()
            prefix = "" if here == "." else here + "/"
            folders[:] = sorted(f for f in folders if not excluded(prefix + f, True))
            for name in sorted(files):
                if not excluded(prefix + name, False):
                    archive.write(Path(folder) / name, prefix + name)
    return buffer.getvalue()


@dataclass(kw_only=True)
class _Actor(WorkerRecord):
    handle: Any
    starting: Any  # the ready() call's reference until it answers, then None
    node: str = ""


class RayPool(RenderPool):
    """``count`` render actors (0: as many as it has room for, :func:`actors`) on the Ray cluster at ``address``
    over a snapshot of ``scene``, rendering the samples of ``specs`` with ``settings`` (and ``clip``). Returns once
    every actor is ready or has failed; a failure leaves no actor behind.

    >>> pool = RayPool("auto", 0, scene, specs, settings)
    >>> pool.submit(0, {"yaw": 0.5})
    >>> images = dict(pool.collect(timeout=1.0))
    >>> pool.close()
    """

    NOUN = "Ray actor"
    SHORT_NOUN = "actor"
    SAYS_RESTARTS = True  # an actor started again may mean a node was lost: the run says so

    def __init__(
        self,
        address: str,
        count: int,
        scene: bpy.types.Scene,
        specs: Sequence[PropertySpec],
        settings: RenderSettings,
        clip: ClipSettings | None = None,
    ) -> None:
        self.count, pinned = actors(address, count)
        import ray
        import ray.cloudpickle

        from . import ray_actor

        self.address = address
        self.threads = ACTOR_CPUS
        self._ray = ray
        ray.cloudpickle.register_pickle_by_value(ray_actor)  # the nodes do not have the extension
        resources = {WORKER_RESOURCE: 1} if pinned else {}
        self._class = ray.remote(ray_actor.SceneFitActor).options(
            num_cpus=ACTOR_CPUS, resources=resources, max_restarts=0
        )
        snapshot = save_snapshot()
        try:
            blend = snapshot.read_bytes()
        finally:
            shutil.rmtree(snapshot.parent, ignore_errors=True)
        files = {path: _read_external(path) for path in external.sendable()}
        setup = worker_setup("", scene, specs, settings, clip, ACTOR_CPUS)  # the actor names its own snapshot
        setup.update(origin=str(snapshot.parent), present=external.present())
        # The user's Cycles devices as this machine sees them (one GPU per actor is not assigned across nodes).
        setup["devices"] = devices.for_workers(scene, settings.engine, 1)[0].to_dict()
        self._arguments = (ray.put(package()), ADDON_PACKAGE.rsplit(".", 1)[-1], ray.put(blend), ray.put(files), setup)
        super().__init__()
        try:
            for index in range(self.count):
                self._start_worker(index)
            while any(not actor.ready for actor in self._workers.values()):
                self._step(POLL_S)
        except BaseException:
            self.close()
            raise

    @property
    def summary(self) -> str:
        """The actors and their nodes, for the run's settings."""
        nodes = collections.Counter(actor.node for actor in self._workers.values())
        on = ", ".join(f"{node} ×{n}" for node, n in sorted(nodes.items()))
        return f"{len(self._workers)} Ray actors of {self.address} on {on}, {self.threads} render thread(s) each"

    # ---- the pool's hooks -----------------------------------------------------------------------------------

    def _start(self, index: int) -> _Actor:
        handle = self._class.remote(*self._arguments)
        return _Actor(index=index, handle=handle, starting=handle.ready.remote())

    def _send(self, worker: _Actor, sample: Sample) -> Any:
        return worker.handle.render.remote(*sample)  # the reference its answer comes as

    def _poll(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        references = self._references()
        if not references:
            return []
        ray = self._ray
        done, _ = ray.wait(references, num_returns=1, timeout=timeout)
        if done:
            done, _ = ray.wait(references, num_returns=len(references), timeout=0)
        arrived = []
        for reference in done:
            actor = next((a for a in self._workers.values() if reference in self._owned(a)), None)
            if actor is None:  # its actor failed on an earlier answer of this poll
                continue
            try:
                answer = ray.get(reference)
            except ray.exceptions.RayActorError as error:
                self._died(actor, _reason(error))
                continue
            except ray.exceptions.RayError as error:
                raise RenderError(f"Ray actor {actor.index} on {actor.node} failed: {_reason(error)}") from None
            if actor.starting is not None:
                actor.pid, actor.node = answer
                actor.starting = None
                continue
            arrived.append(self._answered(actor, answer, reference))
        return arrived

    def _expects_answers(self) -> bool:
        return bool(self._references())

    def _exit_reason(self, worker: _Actor) -> None:
        return None  # an actor's end shows as its calls failing (_poll)

    def _failure(self, worker: _Actor, how: str) -> str:
        return f"{self.NOUN} {worker.index}" + (f" on {worker.node}" if worker.node else "") + f" failed: {how}"

    def _let_stop(self, wait_s: float) -> None:
        ray = self._ray
        stopping = [actor.handle.stop.remote() for actor in self._workers.values() if actor.ready]
        if stopping:
            try:
                ray.wait(stopping, num_returns=len(stopping), timeout=wait_s)
            except ray.exceptions.RayError:
                pass  # an actor that is gone needs no stopping

    def _end(self, worker: _Actor) -> None:
        try:
            self._ray.kill(worker.handle, no_restart=True)
        except (self._ray.exceptions.RayError, ValueError):
            pass  # already gone

    # ---- its references -------------------------------------------------------------------------------------

    def _references(self) -> list[Any]:
        return [reference for actor in self._workers.values() for reference in self._owned(actor)]

    @staticmethod
    def _owned(actor: _Actor) -> list[Any]:
        return [actor.starting] if actor.starting is not None else [ticket for _, ticket in actor.sent]


def _read_external(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise RenderError(f"cannot read {path}, which the scene reads, for the Ray actors: {error.strerror}") from None


def _reason(error: BaseException) -> str:
    """Ray's explanation of a failed call, shortened: the last line of the traceback it carries (the exception),
    else its first line."""
    lines = [line.strip() for line in ANSI.sub("", str(error)).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return cut(lines[-1] if any(line.startswith("File ") for line in lines) else lines[0]).rstrip(".")
