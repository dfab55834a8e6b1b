"""Ray beyond one machine (issue #14), the part that does not depend on the worker protocol: a real two-node
cluster (tests/ray_cluster.py: a head node and a worker node in network namespaces of their own), a bpy actor
pinned to the worker node that renders from a .blend shipped through Ray exactly as a local bpy process does,
clean teardown on every ending, and the sentence ``--ray`` will print when Ray is missing or unreachable
(tools/ray_check.py). Marker ``ray``: ``bash tools/test.sh -m ray``. The cluster tests need root (``ip netns``) and
Ray (requirements-ray.txt, which tools/setup.sh installs); without them they are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray_check

from tests.ray_cluster import HEAD_IP, WORKER_IP, RayCluster, _alive, _netns_pids, _sweep_stale, two_node_cluster

ROOT = Path(__file__).resolve().parent.parent
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is an optional extra: pip install -r requirements-ray.txt")


def needs_cluster(test):
    """Marks a test that starts a two-node cluster (~12 s up, ~5 s down on 2 cores)."""
    test = pytest.mark.skipif(os.geteuid() != 0, reason="the two-node cluster needs root for `ip netns`")(test)
    return needs_ray(pytest.mark.slow(test))


pytestmark = pytest.mark.ray


def _namespaces() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of every live process on the machine that names ``text`` (the cluster's temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _assert_gone(cluster: RayCluster) -> None:
    assert cluster.seen_pids, "the cluster's processes were never seen"
    assert [pid for pid in cluster.seen_pids if _alive(pid)] == []
    assert cluster.head not in _namespaces() and cluster.worker not in _namespaces()
    assert _processes_mentioning(str(cluster.temp)) == []
    assert not cluster.temp.exists()


def test_ray_is_an_optional_pinned_extra():
    """One pin, in requirements-ray.txt and tools/ray_check.py; nothing the extension ships imports ray."""
    pins = [line for line in (ROOT / "requirements-ray.txt").read_text().splitlines() if line.startswith("ray")]
    assert pins == [ray_check.REQUIREMENT] == ["ray==2.60.0"]
    shipped = [ROOT / "__init__.py", ROOT / "scenefit_batch.py", *sorted((ROOT / "addon").rglob("*.py"))]
    importing = [str(p) for p in shipped if re.search(r"^\s*(import ray|from ray)\b", p.read_text(), re.M)]
    assert importing == []


def test_message_when_ray_is_not_installed():
    code = (
        "import sys; sys.modules['ray'] = None; sys.path.insert(0, 'tools'); import ray_check\n"
        "try:\n    ray_check.connect('10.1.2.3:6379')\nexcept ray_check.RayUnavailable as e:\n    print(e)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    message = completed.stdout.strip()
    assert "--ray 10.1.2.3:6379" in message and "not installed" in message
    assert "pip install -r requirements-ray.txt (ray==2.60.0)" in message


@needs_ray
def test_message_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "tools/ray_check.py", f"127.0.0.1:{port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"The Ray cluster at 127.0.0.1:{port} is unreachable: connection refused."
    assert time.monotonic() - started < 30  # not ray.init's minute of retries


@needs_ray
def test_message_for_a_malformed_address():
    with pytest.raises(ray_check.RayUnavailable, match="'head-node' is not HOST:PORT or 'auto'"):
        ray_check.connect("head-node")


@pytest.fixture(scope="module")
def cluster():
    with two_node_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def local_renders(tmp_path_factory):
    """The .blend and the images a plain bpy subprocess renders from it, for the yaws the actor renders."""
    folder = tmp_path_factory.mktemp("ray_local")
    blend, out = folder / "cube.blend", folder / "local.npz"
    completed = subprocess.run(
        [sys.executable, "tests/ray_render.py", str(blend), str(out), "0", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    return blend, np.load(out)["images"]


def _driver(cluster: RayCluster, blend: Path, out: Path, *yaws: str) -> subprocess.CompletedProcess:
    return cluster.run(cluster.head, [cluster.python, str(ROOT / "tests" / "ray_driver.py"), cluster.address,
                                      str(blend), str(out), *yaws], cwd=str(ROOT))  # fmt: skip


@needs_cluster
def test_actor_on_the_worker_node_renders_what_local_bpy_renders(cluster, local_renders, tmp_path):
    blend, local = local_renders
    out = tmp_path / "ray.npz"
    completed = _driver(cluster, blend, out, "0", "40")
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    cluster.pids()
    result = np.load(out)
    assert list(result["nodes"]) == [WORKER_IP, WORKER_IP]
    images = result["images"]
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    assert np.abs(images[0] - images[1]).mean() > 0.005  # the value from the driver reached the render
    assert np.array_equal(images, local)


@needs_cluster
def test_addresses_inside_the_cluster_network(cluster):
    refused = cluster.run(cluster.head, [cluster.python, "tools/ray_check.py", f"{HEAD_IP}:6390"], cwd=str(ROOT))
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"The Ray cluster at {HEAD_IP}:6390 is unreachable: connection refused."
    # No host has this address: ARP gets no answer, so the kernel reports no route, or the probe times out.
    silent = cluster.run(cluster.head, [cluster.python, "tools/ray_check.py", "10.203.0.9:6379"], cwd=str(ROOT))
    assert silent.returncode == 2
    assert re.fullmatch(
        r"The Ray cluster at 10\.203\.0\.9:6379 is unreachable: (no route to host|no answer within 5 s)\.",
        silent.stderr.strip(),
    ), silent.stderr
    for address in (cluster.address, "auto"):  # auto: Ray's process scan finds the head's GCS server
        joined = cluster.run(cluster.worker, [cluster.python, "tools/ray_check.py", address], cwd=str(ROOT))
        assert joined.returncode == 0, joined.stderr[-4000:]
        assert "'scenefit_worker': 1.0" in joined.stdout and f"'node:{WORKER_IP}': 1.0" in joined.stdout


HOLDING_DRIVER = """
import os, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
@ray.remote(num_cpus=1, resources={"scenefit_worker": 1})
class Worker:
    def pid(self):
        import bpy  # a bpy-module process, as the batch workers will be
        return os.getpid(), bpy.app.version_string
print(*ray.get(Worker.remote().pid.remote()), sep="|", flush=True)
time.sleep(600)
"""


@needs_cluster
def test_actor_ends_when_its_driver_is_killed(cluster):
    """A driver killed outright (SIGKILL: no code of its runs) leaves no actor process behind on the worker node."""
    driver = subprocess.Popen(
        ["ip", "netns", "exec", cluster.head, cluster.python, "-c", HOLDING_DRIVER, cluster.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()[-4000:]
        pid, version = line.strip().split("|")
        assert int(pid) in _netns_pids(cluster.worker) and version.startswith("4.")
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 30
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid))  # measured: gone 0.2 s after the driver


@needs_cluster
def test_teardown_leaves_no_process():
    with two_node_cluster() as running:
        assert {running.head, running.worker} <= set(_namespaces())
        assert running.pids()
        assert _processes_mentioning(str(running.temp))  # the check below can see the cluster's processes
    _assert_gone(running)


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from tests.ray_cluster import two_node_cluster
with two_node_cluster() as c:
    print(json.dumps({{"pids": sorted(c.pids()), "temp": str(c.temp), "head": c.head, "worker": c.worker}}), flush=True)
    time.sleep(600)
"""


@needs_cluster
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_no_process(signum):
    """A run interrupted (Ctrl-C, or SIGTERM as a cancelled CI job gets) while the cluster is up still ends every
    process of it and deletes the namespaces."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()[-4000:]
        state = json.loads(line)
        child.send_signal(signum)
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in child.stderr.read()
    gone = RayCluster(address="", head=state["head"], worker=state["worker"], temp=Path(state["temp"]))
    gone.seen_pids = set(state["pids"])
    _assert_gone(gone)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for `ip netns`")
def test_namespaces_of_a_killed_run_are_swept():
    """A run killed with SIGKILL runs no teardown; the next cluster removes what it left (its pid no longer lives)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"sf-work-{dead.pid}x0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "600"])
    try:
        deadline = time.monotonic() + 10
        while sleeper.pid not in _netns_pids(stale) and time.monotonic() < deadline:
            time.sleep(0.05)
        _sweep_stale()
        assert stale not in _namespaces()
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        if stale in _namespaces():
            subprocess.run(["ip", "netns", "del", stale], check=False)
