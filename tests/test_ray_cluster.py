"""Ray beyond one machine (issue #14): batch ``--ray ADDRESS|auto`` renders with actors on a real two-node cluster
(tests/ray_cluster.py: a head node and a worker node in network namespaces of their own) and learns what local
workers learn for the same seed; its images come from the worker node; an actor killed mid-run is replaced; a
cluster that cannot be used is one sentence with the scene file untouched; no actor or cluster process is left
after any ending. Also the underlying pieces: a bpy actor pinned to the worker node renders exactly what local bpy
renders from a .blend shipped through Ray, and the cluster's own teardown. Marker ``ray``: ``bash tools/test.sh -m
ray``. The cluster tests need root (``ip netns``) and Ray (requirements-ray.txt, which tools/setup.sh installs);
without them they are skipped with the reason.
"""

from __future__ import annotations

import importlib
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

from tests.ray_cluster import (
    HEAD_IP,
    WORKER_IP,
    WORKER_SLOTS,
    RayCluster,
    _alive,
    _env,
    _netns_pids,
    _sweep_stale,
    two_node_cluster,
)
from tests.test_blender_batch import SCRIPT, TIMEOUT_S, batch_env, files, run_batch  # noqa: F401  (files: a fixture)

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


def test_ray_is_an_optional_pinned_extra(scenefit, tmp_path):
    """One pin, in requirements-ray.txt and the Ray back-end; only the back-end's two modules import ray, inside
    functions; enabling the extension and importing every module of it loads no ray."""
    pins = [line for line in (ROOT / "requirements-ray.txt").read_text().splitlines() if line.startswith("ray")]
    assert pins == [_module(scenefit, "run.ray_workers").REQUIREMENT] == ["ray==2.60.0"]
    shipped = [ROOT / "__init__.py", ROOT / "scenefit_batch.py", *sorted((ROOT / "addon").rglob("*.py"))]
    importing = {p.name: re.findall(r"^(\s*)(?:import ray|from ray)\b", p.read_text(), re.M) for p in shipped}
    importing = {name: indents for name, indents in importing.items() if indents}
    assert sorted(importing) == ["ray_actor.py", "ray_workers.py"]
    assert all(indent for indents in importing.values() for indent in indents)  # never at module level
    code = (
        "import importlib, os, pkgutil, sys\n"
        "sys.argv = ['x']; sys.path.insert(0, '.')\n"
        "import bpy, scenefit_batch\n"
        "package = scenefit_batch.extension().__name__\n"
        "addon = importlib.import_module(package + '.addon')\n"
        "names = [m.name for m in pkgutil.walk_packages(addon.__path__, package + '.addon.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), 'ray' in sys.modules, flush=True)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    count, loaded = completed.stdout.split()
    assert int(count) > 30 and loaded == "False"


def _module(scenefit, name: str):
    import importlib

    return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")


def test_message_when_ray_is_not_installed(scenefit, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    errors = importlib.import_module(f"{scenefit.__name__}.addon.engine.errors")
    with pytest.raises(errors.ClusterError) as raised:
        _module(scenefit, "run.ray_workers").connect("10.1.2.3:6379")
    message = str(raised.value)
    assert "--ray 10.1.2.3:6379" in message and "not installed" in message
    assert "pip install -r requirements-ray.txt (ray==2.60.0)" in message


@needs_ray
def test_message_when_nothing_listens(scenefit):
    errors = importlib.import_module(f"{scenefit.__name__}.addon.engine.errors")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    started = time.monotonic()
    with pytest.raises(errors.ClusterError) as raised:
        _module(scenefit, "run.ray_workers").connect(f"127.0.0.1:{port}")
    assert str(raised.value) == f"the Ray cluster at 127.0.0.1:{port} is unreachable: connection refused"
    assert time.monotonic() - started < 30  # not ray.init's minute of retries


@needs_ray
def test_message_for_a_malformed_address(scenefit):
    errors = importlib.import_module(f"{scenefit.__name__}.addon.engine.errors")
    with pytest.raises(errors.ClusterError, match="'head-node' is not HOST:PORT or 'auto'"):
        _module(scenefit, "run.ray_workers").connect("head-node")


def test_slots_follow_the_scenefit_worker_resource(scenefit):
    slots = _module(scenefit, "run.ray_workers").slots
    head = {"Alive": True, "Resources": {"CPU": 4.0}}
    worker = {"Alive": True, "Resources": {"CPU": 3.0, "scenefit_worker": 8.0}}
    dead = {"Alive": False, "Resources": {"CPU": 64.0, "scenefit_worker": 64.0}}
    assert slots([head, worker, dead]) == (3, True)  # pinned: at most one per CPU of the marked node
    assert slots([head, {"Alive": True, "Resources": {"CPU": 2.0}}]) == (6, False)
    assert slots([dead]) == (0, False)


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
    check = [cluster.python, "tools/ray_check.py"]
    refused = cluster.run(cluster.head, [*check, f"{HEAD_IP}:6390"], cwd=str(ROOT))
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"the Ray cluster at {HEAD_IP}:6390 is unreachable: connection refused"
    # No host has this address: ARP gets no answer, so the kernel reports no route, or the probe times out.
    silent = cluster.run(cluster.head, [*check, "10.203.0.9:6379"], cwd=str(ROOT))
    assert silent.returncode == 2
    assert re.fullmatch(
        r"the Ray cluster at 10\.203\.0\.9:6379 is unreachable: (no route to host|no answer within 5 s)",
        silent.stderr.strip(),
    ), silent.stderr
    for address in (cluster.address, "auto"):  # auto: Ray's process scan finds the head's GCS server
        joined = cluster.run(cluster.worker, [*check, address], cwd=str(ROOT))
        assert joined.returncode == 0, joined.stderr[-4000:]
        assert f"'scenefit_worker': {WORKER_SLOTS:.1f}" in joined.stdout and f"'node:{WORKER_IP}': 1.0" in joined.stdout
        assert f"render actors: room for {WORKER_SLOTS} (on the nodes with scenefit_worker)" in joined.stdout


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


# ---- batch --ray: the run's render workers as Ray actors ---------------------------------------------------------

RAY_STEPS = 30  # enough steps (≈ 3 s here) that an actor is killed while the run renders


def _bpy_processes(namespace: str) -> list[int]:
    """The live processes inside ``namespace`` that loaded the bpy module: render actors, or a batch run."""
    found = []
    for pid in _netns_pids(namespace):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        if "/bpy/__init__.so" in maps and _alive(pid):
            found.append(pid)
    return found


def _assert_no_actor_left(cluster: RayCluster) -> None:
    """No bpy process is left on either node (Ray ends a killed actor's process within moments)."""
    deadline = time.monotonic() + 20
    while (_bpy_processes(cluster.head) or _bpy_processes(cluster.worker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _bpy_processes(cluster.head) == [] and _bpy_processes(cluster.worker) == []


def _ray_batch_args(files, output: Path, *extra: str) -> list[str]:  # noqa: F811  (the fixture)
    """The Python and arguments of a batch run of ``files``."""
    return [
        sys.executable, str(SCRIPT), str(files["blend"]),
        *("--config", str(files["config"]), "--targets", str(files["targets"]), "--output", str(output)),
        *("--steps", str(RAY_STEPS), "--seed", "5"), *extra,
    ]  # fmt: skip


@pytest.fixture
def local_run(files):  # noqa: F811  (the fixture)
    """result.json of the same run with two local workers."""
    output = files["tmp"] / "local"
    done = run_batch(
        files["tmp"],
        files["blend"],
        *("--config", files["config"], "--targets", files["targets"], "--output", output),
        *("--steps", str(RAY_STEPS), "--seed", "5", "--workers", "2"),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((output / "result.json").read_text())


def _learned(result: dict) -> tuple[list, dict]:
    return [entry["values"] for entry in result["history"]], result["parameters"]


@needs_cluster
def test_batch_ray_learns_what_local_workers_learn_rendered_on_the_worker_node(cluster, files, local_run):  # noqa: F811
    blend = files["blend"].read_bytes()
    output = files["tmp"] / "ray"
    done = cluster.run(cluster.head, _ray_batch_args(files, output, "--ray", cluster.address), cwd=str(files["tmp"]))
    cluster.pids()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    # The settings block names the actors' node: both render actors ran on the worker node, none on the head.
    assert f"workers      {WORKER_SLOTS} Ray actors of {cluster.address} on {WORKER_IP} ×{WORKER_SLOTS}," in done.stdout
    result = json.loads((output / "result.json").read_text())
    assert result["config"]["ray"] == cluster.address and result["config"]["workers"] == 0
    assert result["renders"] == local_run["renders"] == RAY_STEPS * 8
    assert _learned(result) == _learned(local_run)
    assert files["blend"].read_bytes() == blend
    _assert_no_actor_left(cluster)


@needs_cluster
def test_an_actor_killed_mid_run_is_replaced_and_the_run_learns_the_same(cluster, files, local_run):  # noqa: F811
    output = files["tmp"] / "ray-killed"
    run = subprocess.Popen(
        ["ip", "netns", "exec", cluster.head, *_ray_batch_args(files, output, "--ray", cluster.address)],
        env=cluster_env(cluster), cwd=str(files["tmp"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in run.stdout:
            if line.startswith("step 2/"):
                break
        actors = _bpy_processes(cluster.worker)
        assert len(actors) == WORKER_SLOTS
        os.kill(actors[0], signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr[-4000:]
    assert re.search(rf"warning: Ray actor \d on {WORKER_IP} failed: .*; started again", stderr), stderr[-4000:]
    result = json.loads((output / "result.json").read_text())
    assert _learned(result) == _learned(local_run)
    _assert_no_actor_left(cluster)


def cluster_env(cluster: RayCluster) -> dict[str, str]:
    return _env(cluster.temp)


@needs_cluster
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_ray_run_stopped_by_a_signal_keeps_its_checkpoint_and_leaves_no_actor(cluster, files, signum):  # noqa: F811
    output = files["tmp"] / "ray-stopped"
    args = _ray_batch_args(files, output, "--ray", cluster.address, "--steps", "1000")
    run = subprocess.Popen(
        ["ip", "netns", "exec", cluster.head, *args],
        env=cluster_env(cluster), cwd=str(files["tmp"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in run.stdout:
            if line.startswith("step 1/"):
                break
        assert len(_bpy_processes(cluster.worker)) == WORKER_SLOTS
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 128 + signum, stderr[-4000:]
    assert "the scene was restored and what was learned so far was written" in stderr
    assert json.loads((output / "result.json").read_text())["status"] == "stopped"
    assert (output / "checkpoint.pt").is_file()
    _assert_no_actor_left(cluster)


@needs_cluster
def test_a_cluster_that_cannot_be_used_is_one_sentence_and_changes_nothing(cluster, files):  # noqa: F811
    blend = files["blend"].read_bytes()
    output = files["tmp"] / "unreachable"
    done = cluster.run(cluster.head, _ray_batch_args(files, output, "--ray", f"{HEAD_IP}:6390"), cwd=str(files["tmp"]))
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"scenefit: error: the Ray cluster at {HEAD_IP}:6390 is unreachable: connection refused"
    )
    too_many = cluster.run(
        cluster.head, _ray_batch_args(files, output, "--ray", cluster.address, "--workers", "3"), cwd=str(files["tmp"])
    )
    assert too_many.returncode == 1
    assert too_many.stderr.strip().endswith(
        f"the Ray cluster at {cluster.address} has room for {WORKER_SLOTS} render actor(s) "
        "(one per unit of scenefit_worker and CPU), not for 3"
    ), too_many.stderr[-4000:]
    assert files["blend"].read_bytes() == blend and not output.exists()
    _assert_no_actor_left(cluster)


def test_batch_ray_without_ray_installed_is_one_sentence(files):  # noqa: F811  (the fixture)
    """Ray hidden from the batch's Python: the sentence with the extra to install, exit 1, nothing written."""
    blend = files["blend"].read_bytes()
    output = files["tmp"] / "no-ray"
    code = (
        "import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    python, *args = _ray_batch_args(files, output, "--ray", "auto")
    done = subprocess.run(
        [python, "-c", code, *args], cwd=files["tmp"], env=batch_env(files["tmp"]), capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-4000:]
    assert done.stderr.strip() == (
        f"scenefit: error: Ray is needed for --ray auto but is not installed in {sys.executable}: "
        "pip install -r requirements-ray.txt (ray==2.60.0); the extension itself never needs it"
    )
    assert files["blend"].read_bytes() == blend and not output.exists()


@needs_cluster
def test_a_data_set_rendered_by_ray_actors_is_the_local_one(cluster, files):  # noqa: F811  (the fixture)
    """--generate through the same actors: image n holds sample n's values, pixel for pixel the in-process ones."""
    local, remote = files["tmp"] / "set-local", files["tmp"] / "set-ray"
    made = run_batch(files["tmp"], files["blend"], "--config", files["config"], "--output", local, "--generate", "6")
    assert made.returncode == 0, made.stderr[-4000:]
    args = [sys.executable, str(SCRIPT), str(files["blend"]), "--config", str(files["config"]), "--output", str(remote)]
    done = cluster.run(cluster.head, [*args, "--generate", "6", "--ray", cluster.address], cwd=str(files["tmp"]))
    assert done.returncode == 0, done.stderr[-4000:]
    assert (remote / "labels.csv").read_text() == (local / "labels.csv").read_text()
    names = sorted(p.name for p in (local / "images").iterdir())
    assert len(names) == 6 and sorted(p.name for p in (remote / "images").iterdir()) == names
    for name in names:
        assert np.array_equal(_pixels(remote / "images" / name), _pixels(local / "images" / name)), name
    _assert_no_actor_left(cluster)


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def _textured(files, folder: Path, source: str) -> Path:  # noqa: F811  (the fixture)
    """``files``' scene with its grey faces showing a striped image texture from ``folder`` (one PNG file, or two
    frames of an image sequence: ``source``), Workbench drawing textures; the .blend, beside ``files``' own."""
    import bpy
    from PIL import Image

    folder.mkdir(parents=True)
    stripes = np.full((16, 16, 3), (230, 200, 20), np.uint8)
    stripes[:, ::4] = (20, 40, 230)
    for frame in (1, 2):
        Image.fromarray(stripes).save(folder / f"stripes_{frame:04d}.png")
    bpy.ops.wm.open_mainfile(filepath=str(files["blend"]))
    image = bpy.data.images.load(str(folder / "stripes_0001.png"))
    image.source = source
    bpy.data.meshes["Cube"].uv_layers.new()
    nodes = bpy.data.materials["Grey"].node_tree.nodes
    nodes.active = texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    bpy.context.scene.display.shading.color_type = "TEXTURE"
    blend = files["tmp"] / f"textured-{source.lower()}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    return blend


def _generate(cluster: RayCluster, files, blend: Path, output: Path, *ray: str) -> subprocess.CompletedProcess:  # noqa: F811
    args = [sys.executable, str(SCRIPT), str(blend), "--config", str(files["config"]), "--output", str(output)]
    return cluster.run(cluster.head, [*args, "--generate", "4", *ray], cwd=str(files["tmp"]))


@needs_cluster
def test_the_scenes_external_files_travel_to_the_actors(cluster, files):  # noqa: F811  (the fixture)
    """An image texture that exists on the driver's machine only (cluster.driver_only) is sent with the snapshot:
    the actors on the worker node render what local rendering does, pixel for pixel, texture included."""
    blend = _textured(files, cluster.driver_only / "textures", "FILE")
    local, remote, plain = files["tmp"] / "tex-local", files["tmp"] / "tex-ray", files["tmp"] / "tex-none"
    runs = ((local, blend, ()), (remote, blend, ("--ray", cluster.address)), (plain, files["blend"], ()))
    for output, scene, ray in runs:
        done = _generate(cluster, files, scene, output, *ray)
        assert done.returncode == 0, done.stderr[-4000:]
    names = sorted(p.name for p in (local / "images").iterdir())
    assert len(names) == 4 and sorted(p.name for p in (remote / "images").iterdir()) == names
    for name in names:
        assert np.array_equal(_pixels(remote / "images" / name), _pixels(local / "images" / name)), name
        assert np.abs(_pixels(local / "images" / name) - _pixels(plain / "images" / name)).mean() > 0.01  # textured
    _assert_no_actor_left(cluster)


@needs_cluster
def test_external_files_that_cannot_travel_are_named_when_a_node_lacks_them(cluster, files):  # noqa: F811
    """An image sequence (many files under one pattern: not sent) on the driver's machine only: the actors cannot
    start and the run ends with one sentence naming the file, exit 1, the .blend as it was and no image written."""
    blend = _textured(files, cluster.driver_only / "sequence", "SEQUENCE")
    saved, output = blend.read_bytes(), files["tmp"] / "seq-ray"
    done = _generate(cluster, files, blend, output, "--ray", cluster.address)
    assert done.returncode == 1, done.stderr[-4000:]
    frame = cluster.driver_only / "sequence" / "stripes_0001.png"
    assert f"this machine lacks 1 file(s) the scene reads: {frame}; pack them into the .blend" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert blend.read_bytes() == saved and not list(output.rglob("*.png"))
    _assert_no_actor_left(cluster)


def test_an_external_file_that_cannot_be_read_is_one_sentence(scenefit, tmp_path):
    errors = importlib.import_module(f"{scenefit.__name__}.addon.engine.errors")
    gone = tmp_path / "gone.png"  # listed a moment ago, removed since
    with pytest.raises(errors.RenderError) as raised:
        _module(scenefit, "run.ray_workers")._read_external(str(gone))
    expected = f"cannot read {gone}, which the scene reads, for the Ray actors: No such file or directory"
    assert str(raised.value) == expected
