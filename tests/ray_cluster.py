"""A real two-node Ray cluster on this machine, for the Ray tests (imported as ``tests.ray_cluster``).

``two_node_cluster()`` makes two network namespaces of its own (``sf-head-<pid>x<n>``, ``sf-work-<pid>x<n>``) joined
by a veth pair whose addresses (10.203.0.1/24, 10.203.0.2/24) exist only inside them, starts a Ray head node in the
first (one CPU) and a worker node in the second (two CPUs and two units of the custom resource ``scenefit_worker``:
room for two SceneFit render actors, pinned to the other host), and yields a ``RayCluster``. Its folder
``driver_only`` is this machine's everywhere but on the worker node, which sees an empty tmpfs there (a mount
namespace of its own): what a driver puts there exists on the driver's "machine" only. On every ending (a
normal exit, a failed test, KeyboardInterrupt, SIGTERM) it ends every process inside the two namespaces by its pid
and deletes them; after SIGKILL, where no code runs, the next cluster removes the namespaces whose pid no longer lives.
Needs root (``ip netns``) and Ray in the running Python's environment.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP = "10.203.0.1"
WORKER_IP = "10.203.0.2"
PORT = 6379
WORKER_RESOURCE = "scenefit_worker"
WORKER_SLOTS = 2  # the worker node's CPUs and scenefit_worker units: two render actors
# Ray's floor is 75 MB; both nodes share this machine's 24 GB with the rest of the suite.
OBJECT_STORE_BYTES = 100 * 1024 * 1024
_serial = itertools.count()


@dataclass
class RayCluster:
    address: str
    head: str  # namespace names
    worker: str
    temp: Path
    python: str = sys.executable
    seen_pids: set[int] = field(default_factory=set)

    @property
    def driver_only(self) -> Path:
        """A folder the head node and this process see, and the worker node sees empty."""
        return self.temp / "driver-only"

    def run(self, namespace: str, argv: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside one of the namespaces (the caller's own process is not in either)."""
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            env=_env(self.temp),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def pids(self) -> set[int]:
        """The processes now inside the cluster's namespaces; remembered for the after-teardown check."""
        found = _netns_pids(self.head) | _netns_pids(self.worker)
        self.seen_pids |= found
        return found


def _env(temp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        # The memory monitor would kill a bpy worker when the *machine* is busy with other tests.
        RAY_memory_monitor_refresh_ms="0",
        # Every process of the cluster (bpy actors too) keeps Blender's config and caches out of the machine's.
        BLENDER_USER_RESOURCES=str(temp / "blender"),
        XDG_CACHE_HOME=str(temp / "cache"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _ip(*args: str) -> None:
    completed = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({completed.returncode}): {completed.stderr.strip()}")


def _netns_pids(name: str) -> set[int]:
    listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    return {int(pid) for pid in listed.stdout.split()} if listed.returncode == 0 else set()


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (already ended, waiting for its parent to reap it) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _end_processes(names: list[str], grace_s: float = 3.0) -> None:
    """SIGTERM then SIGKILL every process inside the namespaces, by pid: only the cluster's own processes.

    ``ray stop`` is not used: it matches processes by name across the whole machine, other people's Ray included.
    The grace is short because a GCS server and raylets that get SIGTERM together wait on each other for tens of
    seconds, and nothing of a test cluster needs a graceful end.
    """
    deadline = time.monotonic() + grace_s
    sig = signal.SIGTERM
    while True:
        pids = {pid for name in names for pid in _netns_pids(name) if _alive(pid)}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.2)


def _remove(names: list[str], temp: Path | None = None) -> None:
    for name in names:
        _end_processes([name])
    for name in names:
        if name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
            _ip("netns", "del", name)
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)


def _ray_start(cluster: RayCluster, namespace: str, cpus: int, args: list[str], hide: Path | None = None) -> None:
    """``ray start`` in ``namespace``; with ``hide``, in a mount namespace of its own where that folder is an empty
    tmpfs (the node's processes inherit it)."""
    ray = str(Path(cluster.python).parent / "ray")
    command = [ray, "start", "--num-cpus", str(cpus), "--object-store-memory", str(OBJECT_STORE_BYTES), *args]
    if hide is not None:
        mounting = 'mount -t tmpfs -o size=1m sfhidden "$0" && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mounting, str(hide), *command]
    completed = cluster.run(
        namespace,
        command,
        timeout=180,
        cwd=str(cluster.temp),
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"ray start in {namespace} failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"
        )


def _sweep_stale() -> None:
    """Remove the namespaces a killed earlier run (SIGKILL: no teardown ran) left behind: those whose pid is gone."""
    for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        found = re.fullmatch(r"sf-(?:head|work)-(\d+)x\d+", name)
        if found and not _alive(int(found[1])):
            _remove([name])


def _interrupt_on_sigterm():
    """SIGTERM (a CI job cancelled, ``kill``) raises KeyboardInterrupt as Ctrl-C does, so the teardown runs; returns
    the handler it replaced, or None off the main thread, where Python cannot set one."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def two_node_cluster() -> Iterator[RayCluster]:
    _sweep_stale()
    tag = f"{os.getpid()}x{next(_serial)}"  # unique per cluster, and short: veth names are at most 15 characters
    head, worker = f"sf-head-{tag}", f"sf-work-{tag}"
    names = [head, worker]
    temp = Path(tempfile.mkdtemp(prefix=f"sfray{tag}-", dir="/tmp"))
    cluster = RayCluster(address=f"{HEAD_IP}:{PORT}", head=head, worker=worker, temp=temp)
    previous = _interrupt_on_sigterm()
    try:
        cluster.driver_only.mkdir()
        for name in names:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        # The peer is created inside its namespace, never in ours.
        _ip("-n", head, "link", "add", f"sfh{tag}", "type", "veth", "peer", "name", f"sfw{tag}", "netns", worker)
        for name, device, address in ((head, f"sfh{tag}", HEAD_IP), (worker, f"sfw{tag}", WORKER_IP)):
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", device)
            _ip("-n", name, "link", "set", device, "up")
        _ray_start(
            cluster,
            head,
            1,
            ["--head", "--node-ip-address", HEAD_IP, "--port", str(PORT), "--disable-usage-stats",
             "--include-dashboard=false", "--temp-dir", str(temp / "ray")],
        )  # fmt: skip
        _ray_start(
            cluster,
            worker,
            WORKER_SLOTS,
            ["--address", cluster.address, "--node-ip-address", WORKER_IP,
             "--resources", f'{{"{WORKER_RESOURCE}": {WORKER_SLOTS}}}'],
            hide=cluster.driver_only,
        )  # fmt: skip
        cluster.pids()
        yield cluster
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown short
        cluster.pids()
        _remove([worker, head], temp)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
