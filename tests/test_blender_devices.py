"""Cycles render devices: each worker renders on the user's Cycles preferences (one used GPU each when the scene
renders on the GPU, told to the runtime by its visibility variable), and a GPU render without a usable GPU is an
error before anything renders — never a silent CPU render. This machine has no GPU: the GPU cases run on given
device lists (the pure assignment), and the workers' side is what they report back or the reason they give."""

from __future__ import annotations

import importlib
import math
import os
import re
import time

import pytest

from tests.blender_scenes import YAW_PATH, diff, scene_state
from tests.test_blender_batch import render_folders
from tests.test_blender_session import blender, scene, targets_dir, yaw_config  # noqa: F401  (fixtures)
from tests.test_blender_workers import alive, children, workers  # noqa: F401  (workers: a fixture)

H200 = "CUDA_NVIDIA H200_0000:{}:00"


@pytest.fixture
def devices(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.devices")


@pytest.fixture
def preferences(scenefit):
    """The Cycles preferences of this process, put back as they were afterwards."""
    import bpy

    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.refresh_devices()
    saved = prefs.compute_device_type, {entry.id: entry.use for entry in prefs.devices}
    yield prefs
    prefs.compute_device_type = saved[0]
    for entry in prefs.devices:
        entry.use = saved[1].get(entry.id, entry.use)


def test_each_worker_gets_one_used_gpu_round_robin_numbered_in_pci_order(devices):
    # Cycles lists display GPUs last, so the preferences' order is not the PCI order the variable counts in.
    used = [H200.format("3b"), H200.format("19")]
    visible = [*used, "CUDA_NVIDIA T400_0000:05:00"]  # seen, not ticked: it still takes number 0
    assigned = devices.assign("CUDA", used, visible, 3, environ={})
    order = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert assigned == [
        devices.WorkerDevices("CUDA", (used[0],), {"CUDA_VISIBLE_DEVICES": "2", **order}),
        devices.WorkerDevices("CUDA", (used[1],), {"CUDA_VISIBLE_DEVICES": "1", **order}),
        devices.WorkerDevices("CUDA", (used[0],), {"CUDA_VISIBLE_DEVICES": "2", **order}),
    ]


def test_optix_gpus_are_numbered_among_the_cuda_devices(devices):
    used = [H200.format("19") + "_OptiX"]
    visible = ["CUDA_Quadro K2200_0000:02:00", H200.format("19")]  # too old for OptiX, still a CUDA device
    (worker,) = devices.assign("OPTIX", used, visible, 1, environ={})
    assert worker.use == (used[0],) and worker.environment["CUDA_VISIBLE_DEVICES"] == "1"


def test_hip_has_its_own_variable(devices):
    used = ["HIP_AMD Radeon PRO W7900_0000:c3:00", "HIP_AMD Radeon PRO W7900_0000:83:00"]
    assigned = devices.assign("HIP", used, used, 2, environ={})
    assert [w.environment for w in assigned] == [{"HIP_VISIBLE_DEVICES": "1"}, {"HIP_VISIBLE_DEVICES": "0"}]


@pytest.mark.parametrize(
    ("compute_type", "used", "environ"),
    [
        ("CUDA", [H200.format("19"), H200.format("3b")], {"CUDA_VISIBLE_DEVICES": "GPU-5c57ee15"}),  # the user's
        ("ONEAPI", ["ONEAPI_Intel Arc A770_0000:03:00", "ONEAPI_Intel Arc A770_0000:04:00"], {}),  # no variable
        ("CUDA", ["CUDA_unknown id", "CUDA_another"], {}),  # no PCI location to count
    ],
)
def test_without_a_number_to_give_each_worker_still_ticks_one_gpu(devices, compute_type, used, environ):
    assigned = devices.assign(compute_type, used, used, 3, environ)
    assert [w.use for w in assigned] == [(used[0],), (used[1],), (used[0],)]
    assert all(w.environment == {} for w in assigned)


def test_workers_render_on_the_users_cycles_preferences(blender, scene, workers, preferences):  # noqa: F811  (fixtures)
    """The worker's own Blender starts with none (compute device None, CPU unticked): it reports the user's."""
    preferences.compute_device_type = "CUDA"  # compiled into this bpy; no CUDA device here, the CPU is ticked
    (cpu,) = [entry for entry in preferences.devices if entry.type == "CPU"]
    cpu.use = True
    spec = blender.config.SpecConfig("yaw", "OBJECT", "Cube", YAW_PATH, {"kind": "normal", "mu": 0.5, "sigma": 0.1})
    settings = blender.render.RenderSettings((16, 16), "CYCLES", 1)
    before_children = children()
    pool = workers.WorkerPool(2, scene, [spec], settings)
    try:
        pool.submit(0, {"yaw": 0.5})
        pool.submit(1, {"yaw": 1.5})
        images, deadline = {}, time.monotonic() + 120
        while (len(images) < 2 or len(pool.devices) < 2) and time.monotonic() < deadline:  # both ready, too
            images.update(pool.collect(timeout=1.0))
        reported = pool.devices
    finally:
        pool.close()
    assert reported == {i: {"compute_type": "CUDA", "use": [cpu.id], "environment": {}} for i in (0, 1)}
    assert sorted(images) == [0, 1] and images[0].shape == (16, 16, 3)
    assert children() <= before_children and render_folders(os.getpid()) == []


@pytest.mark.parametrize("compute_type", ["NONE", "CUDA"])
def test_a_gpu_scene_without_a_usable_gpu_fails_before_anything_renders(
    blender,  # noqa: F811
    scene,  # noqa: F811
    targets_dir,  # noqa: F811
    preferences,
    tmp_path,
    compute_type,
):
    import bpy

    preferences.compute_device_type = compute_type  # CUDA: compiled in, but no CUDA device on this machine
    scene.cycles.device = "GPU"  # each test starts from a new file (the scenefit fixture)
    before = scene_state(bpy, scene)
    config = yaw_config(blender, targets_dir, tmp_path / "out", steps=2, engine="CYCLES", workers=1)
    session = blender.session.Session(scene, config)
    shown = {"NONE": "None"}.get(compute_type, compute_type)
    message = (
        f"scene 'Scene' renders Cycles on the GPU but process {os.getpid()} has no GPU that Blender's preferences use "
        f"(compute device type {shown}): it would render on the CPU; tick a GPU in Preferences ▸ System ▸ Cycles "
        "Render Devices or set the scene's Device to CPU"
    )
    with pytest.raises(blender.errors.RenderError) as raised:
        session.start()
    assert str(raised.value) == message
    assert diff(before, scene_state(bpy, scene)) == [] and not (tmp_path / "out").exists()


def test_a_worker_that_cannot_see_its_gpu_says_so_and_the_run_renders_nothing_on_the_cpu(
    blender,  # noqa: F811
    scene,  # noqa: F811
    workers,  # noqa: F811
    devices,
    preferences,
    monkeypatch,
):
    """This process is told it has two used GPUs; each worker is given one and, having none, names it: the
    pool's error and its one problem carry each worker's CUDA_VISIBLE_DEVICES."""
    gpus = [H200.format("19"), H200.format("3b")]
    monkeypatch.setattr(devices, "_present", lambda: ("CUDA", gpus, gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    scene.cycles.device = "GPU"
    spec = blender.config.SpecConfig("yaw", "OBJECT", "Cube", YAW_PATH, {"kind": "normal", "mu": 0.5, "sigma": 0.1})
    before_children = children()
    pool = workers.WorkerPool(2, scene, [spec], blender.render.RenderSettings((16, 16), "CYCLES", 1))
    pids = list(pool.pids)
    try:
        pool.submit(0, {"yaw": math.radians(30)})
        with pytest.raises(blender.errors.RenderError) as raised:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert pool.collect(timeout=1.0) == []
        said = [*pool.problems, str(raised.value)]
    finally:
        pool.close()
    assert len(said) == 2
    for text in said:
        assert re.match(r"render worker [01] failed: it (ended|exited with code 1) — ", text)  # EOF or exit first
        assert "renders Cycles on the GPU but process" in text and "has no GPU that Blender's preferences use" in text
        assert "(compute device type CUDA, CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA_VISIBLE_DEVICES=" in text
    assert sorted(text.split("CUDA_VISIBLE_DEVICES=")[1][0] for text in said) == ["0", "1"]
    assert not any(alive(pid) for pid in pids) and children() <= before_children
    assert render_folders(os.getpid()) == []
