"""Scenes SceneFit did not build, targets SceneFit did not render (issue #12), imported as ``tests.independent_scenes``.

Each builder makes a scene with plain bpy code in the current (empty) file — no SceneFit preset, builder or addon
code — at render settings a user would have saved (engine, size, samples, view transform vary between scenes), and
returns a :class:`Case`: the specs to learn with their START distributions (SpecConfig dicts), the TRUE
distributions, the tolerances, and for every spec the plain bpy code a user script would use to set the property.

:func:`render_targets` renders a case's targets with a plain ``bpy.ops.render.render(write_still=True)`` loop at the
scene's own settings (or an override: scene 5's targets are rendered at twice the size and samples), values drawn
from the truth with numpy. :func:`run_scenefit` fits the case with SceneFit's defaults through a ``Session``;
:func:`scenefit_sensitivity` tells whether SceneFit's own renders change with each property.

Angles are in radians (the data paths' units). For a LogNormal the μ error is in log space; for a categorical the
"μ error" is the total-variation distance between the learned and the true probabilities.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

N_TARGETS = 64
TRAINING_SIZE = (64, 64)  # what the README tells a user to pick for training renders
SIGMA_TOLERANCE = 0.25  # σ within 25 % of the truth (DESIGN.md, "Numbers to beat")


@dataclass
class Case:
    """One independent scene. ``specs``: SpecConfig dicts (label, id_type, id_name, data_path, distribution) with the
    START distributions; ``truth``: label → the TRUE distribution dict; ``tolerance``: label → the largest μ error
    counted as recovered (TV for a categorical); ``setters``: label → plain bpy code setting the property to a
    value; ``engine``/``samples``: the scene's own engine and samples (Workbench: its anti-aliasing samples), which
    a user keeps for training; ``target_override``: render settings the targets differ by (scene 5)."""

    name: str
    title: str
    scene: Any
    specs: list[dict[str, Any]]
    truth: dict[str, dict[str, Any]]
    tolerance: dict[str, float]
    setters: dict[str, Callable[[Any], None]]
    engine: str
    samples: int
    target_override: dict[str, int] = field(default_factory=dict)
    sigma_tolerance: float = SIGMA_TOLERANCE

    @property
    def labels(self) -> list[str]:
        return [spec["label"] for spec in self.specs]

    def period(self, label: str) -> float | None:
        """A full turn (2π) for a rotation, whose μ counts modulo a turn; None otherwise."""
        path = next(spec["data_path"] for spec in self.specs if spec["label"] == label)
        return 2 * math.pi if path.startswith("rotation_euler") else None

    def start(self) -> dict[str, dict[str, Any]]:
        """The start distributions in the form of a history entry's values."""
        return {spec["label"]: readable(spec["distribution"]) for spec in self.specs}

    def settings(self) -> str:
        """The scene's own saved render settings, in words."""
        scene = self.scene
        r = scene.render
        if r.engine == "CYCLES":
            quality = f"{scene.cycles.samples} samples, denoising {'on' if scene.cycles.use_denoising else 'off'}"
        else:
            quality = f"AA {scene.display.render_aa}"
        return f"{r.engine} {r.resolution_x}×{r.resolution_y} {quality}, view {scene.view_settings.view_transform}"


# ---- errors ---------------------------------------------------------------------------------------------------


def readable(distribution: Mapping[str, Any]) -> dict[str, Any]:
    """A distribution dict as the optimizer's history reports it (categorical: probs, uniform when not given)."""
    if distribution["kind"] == "categorical":
        choices = list(distribution["choices"])
        return {"probs": list(distribution.get("probs") or [1 / len(choices)] * len(choices)), "choices": choices}
    if distribution["kind"] == "bernoulli":
        return {"p": distribution["p"]}
    return {k: distribution[k] for k in ("mu", "sigma", "low", "high") if k in distribution}


def parent(values: Mapping[str, Any], name: str) -> Any:
    """A learned distribution's μ or σ as the truth states it: a truncated normal reports its own mean and std and
    its parent's parameters as parent_mu/parent_sigma, which are what the truth gives."""
    return values.get(f"parent_{name}", values.get(name))


def mu_error(truth: Mapping[str, Any], values: Mapping[str, Any], period: float | None = None) -> float:
    """|μ − μ*| (LogNormal: in log space, its μ), TV distance for a categorical, |p − p*| for a Bernoulli.
    ``period``: μ and μ + period render the same (a full turn of a rotation); the error is the nearest distance."""
    if truth["kind"] == "categorical":
        return 0.5 * sum(abs(float(p) - float(q)) for p, q in zip(values["probs"], truth["probs"], strict=True))
    if truth["kind"] == "bernoulli":
        return abs(float(values["p"]) - float(truth["p"]))
    difference = abs(float(parent(values, "mu")) - float(truth["mu"]))
    if period is not None:
        difference %= period
        difference = min(difference, period - difference)
    return difference


def sigma_ratio(truth: Mapping[str, Any], values: Mapping[str, Any]) -> float | None:
    """Learned σ ÷ true σ (None for a distribution without σ)."""
    if "sigma" not in truth or parent(values, "sigma") is None:
        return None
    return float(parent(values, "sigma")) / float(truth["sigma"])


def errors(case: Case, values: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    return {label: mu_error(case.truth[label], values[label], case.period(label)) for label in case.labels}


def inside(case: Case, values: Mapping[str, Mapping[str, Any]]) -> bool:
    """Every learned μ (probabilities) within its tolerance."""
    return all(error < case.tolerance[label] for label, error in errors(case, values).items())


def renders_to_stay(case: Case, history: Sequence[Mapping[str, Any]], budget: int) -> int:
    """Renders after which every μ stayed inside its tolerance to the end of the run (``budget`` if it ends
    outside, or never got a step)."""
    if not history or not inside(case, history[-1]["values"]):
        return budget
    stayed = int(history[-1]["renders"])
    for entry in reversed(history):
        if not inside(case, entry["values"]):
            break
        stayed = int(entry["renders"])
    return stayed


# ---- sampling the truth and setting values, plain numpy and bpy ---------------------------------------------------


def sample(distribution: Mapping[str, Any], rng: np.random.Generator, n: int) -> list[Any]:
    """n values from a distribution dict with numpy (no SceneFit code)."""
    kind = distribution["kind"]
    if kind == "normal":
        return [float(v) for v in rng.normal(distribution["mu"], distribution["sigma"], n)]
    if kind == "lognormal":
        return [float(v) for v in rng.lognormal(distribution["mu"], distribution["sigma"], n)]
    if kind == "truncnormal":
        out: list[float] = []
        while len(out) < n:  # rejection: the truths lie well inside their bounds
            v = rng.normal(distribution["mu"], distribution["sigma"])
            if distribution["low"] <= v <= distribution["high"]:
                out.append(float(v))
        return out
    if kind == "categorical":
        index = rng.choice(len(distribution["choices"]), size=n, p=distribution["probs"])
        return [distribution["choices"][int(i)] for i in index]
    if kind == "bernoulli":
        return [bool(v) for v in rng.random(n) < distribution["p"]]
    raise ValueError(f"unknown distribution kind {kind!r}")


def central(distribution: Mapping[str, Any]) -> Any:
    """A typical value: μ (LogNormal: its median), the most likely choice."""
    kind = distribution["kind"]
    if kind == "lognormal":
        return math.exp(distribution["mu"])
    if kind == "categorical":
        probs = distribution.get("probs") or [1.0] * len(distribution["choices"])
        return distribution["choices"][int(np.argmax(probs))]
    if kind == "bernoulli":
        return distribution["p"] >= 0.5
    return distribution["mu"]


def probe_values(case: Case, label: str) -> list[Any]:
    """Values a property is rendered at to see whether the image changes: the start's and the truth's centres
    (every choice for a categorical)."""
    truth = case.truth[label]
    if truth["kind"] == "categorical":
        return list(truth["choices"])
    start = next(s["distribution"] for s in case.specs if s["label"] == label)
    return [central(start), central(truth)]


# ---- rendering targets with a plain loop -----------------------------------------------------------------------------


def render_targets(
    bpy: Any,
    case: Case,
    folder: Path,
    count: int = N_TARGETS,
    seed: int = 1234,
    override: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Render ``count`` targets of ``case`` into ``folder`` as a user's script would: values drawn from the truth
    with numpy, set with plain bpy, ``bpy.ops.render.render(write_still=True)`` at the scene's own settings
    (``override``, default the case's ``target_override``: ``resolution_percentage``, ``samples``).

    Returns the labels written (also ``labels.json``) and the plain-path sensitivity of each property. Raises
    AssertionError when the targets do not differ, or when a property does not change the plain render.
    """
    scene = case.scene
    override = dict(case.target_override if override is None else override)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    values = {label: sample(case.truth[label], rng, count) for label in case.labels}
    with _target_settings(scene, override):
        sensitivity = plain_sensitivity(bpy, case, folder / ".probe")
        for i in range(count):
            for label in case.labels:
                case.setters[label](values[label][i])
            _render_still(bpy, scene, folder / f"target_{i:03d}.png")
    for label, spec in zip(case.labels, case.specs, strict=True):  # the user's own value back
        case.setters[label](central(spec["distribution"]))
    labels = {"seed": seed, "override": override, "values": values}
    (folder / "labels.json").write_text(json.dumps(labels, indent=1))
    images = np.stack([read_png(folder / f"target_{i:03d}.png") for i in range(count)])
    assert images.std(axis=0).max() > 0, f"{case.name}: all {count} targets are the same image"
    frozen = [label for label, change in sensitivity.items() if change == 0]
    assert not frozen, f"{case.name}: {frozen} do not change the plain render"
    return {**labels, "sensitivity": sensitivity}


def plain_sensitivity(bpy: Any, case: Case, folder: Path) -> dict[str, float]:
    """label → max |Δpixel| (0–1) between plain renders at the property's :func:`probe_values`, the others at their
    start centres."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {spec["label"]: central(spec["distribution"]) for spec in case.specs}
    result = {}
    for label in case.labels:
        images = []
        for k, value in enumerate(probe_values(case, label)):
            for other, v in base.items():
                case.setters[other](value if other == label else v)
            path = folder / f"{label}_{k}.png"
            _render_still(bpy, case.scene, path)
            images.append(read_png(path))
        result[label] = max(float(np.abs(image - images[0]).max()) for image in images[1:])
    for other, v in base.items():
        case.setters[other](v)
    return result


@contextlib.contextmanager
def _target_settings(scene: Any, override: Mapping[str, int]) -> Iterator[None]:
    r = scene.render
    saved = [(r, "filepath", r.filepath)]
    changes: list[tuple[Any, str, Any]] = []
    if "resolution_percentage" in override:
        changes.append((r, "resolution_percentage", override["resolution_percentage"]))
    if "samples" in override:
        if r.engine == "CYCLES":
            changes.append((scene.cycles, "samples", override["samples"]))
        else:
            changes.append((scene.display, "render_aa", str(override["samples"])))
    saved += [(owner, name, getattr(owner, name)) for owner, name, _ in changes]
    for owner, name, value in changes:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _render_still(bpy: Any, scene: Any, path: Path) -> None:
    scene.render.filepath = str(path)
    with _quiet():
        result = bpy.ops.render.render(write_still=True, scene=scene.name)
    assert result == {"FINISHED"} and path.is_file(), (result, path)


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) float in [0, 1], as stored (no colour conversion)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Blender's per-render status lines go to file descriptor 1 from C; keep them out of the output."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        yield
        return
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


# ---- running SceneFit with its defaults ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A finished SceneFit run: per-step history (``values`` = learned distributions, ``renders`` so far), renders,
    seconds, and per batch: the spread of its renders (mean over pixels of the std across the batch: 0 means every
    render of the batch was the same image) and (distinct images, distinct sampled values) — a renderer that follows
    the samples gives as many different images as different values."""

    history: list[dict[str, Any]]
    renders: int
    seconds: float
    status: str
    batch_spread: list[float]
    batch_distinct: list[tuple[int, int]]
    output_dir: Path

    def values(self, step: int = -1) -> dict[str, dict[str, Any]]:
        return self.history[step]["values"]

    @property
    def follow_ratio(self) -> float:
        """Distinct images ÷ distinct sampled values over the run's batches: 1 when every different sample gave a
        different render, about 1/batch when the renders were frozen (or the samples all lie where the property
        changes nothing in the picture, e.g. a ball sunk under the floor)."""
        return self.follow_ratio_of(None)

    def follow_ratio_of(self, batches: int | None) -> float:
        """:attr:`follow_ratio` over the first ``batches`` batches (None: all), where the samples still lie around
        the start, which every scene shows."""
        counts = self.batch_distinct[:batches]
        values = sum(v for _, v in counts)
        return sum(i for i, _ in counts) / values if values else 0.0


def run_config(
    session_module: Any,
    case: Case,
    targets: Path,
    output_dir: Path,
    steps: int,
    batch_size: int,
    seed: int,
    resolution: tuple[int, int] = TRAINING_SIZE,
) -> Any:
    """A RunConfig with SceneFit's defaults: only the specs, targets, output, steps, batch, seed and the render
    settings a user picks (the scene's own engine and samples, a training resolution). No optimizer options."""
    return session_module.RunConfig(
        specs=[dict(spec, distribution=dict(spec["distribution"])) for spec in case.specs],
        targets=str(targets),
        output_dir=str(output_dir),
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        resolution=tuple(resolution),
        engine=case.engine,
        samples=case.samples,
    )


def run_scenefit(
    session_module: Any,
    case: Case,
    targets: Path,
    output_dir: Path,
    steps: int = 100,
    batch_size: int = 16,
    seed: int = 0,
    resolution: tuple[int, int] = TRAINING_SIZE,
) -> Outcome:
    """Fit ``case`` from its targets with SceneFit's default optimizer through a Session, to the end."""
    config = run_config(session_module, case, targets, output_dir, steps, batch_size, seed, resolution)
    session = session_module.Session(case.scene, config, tick_seconds=0.5)
    spread: list[float] = []
    distinct: list[tuple[int, int]] = []
    applied: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    session.start()
    batch, apply = session.report.batch, session.sampler.apply

    def apply_spy(values: Mapping[str, Any]) -> None:  # the values of the sample about to be rendered
        applied.append(tuple(values[label] for label in case.labels))
        apply(values)

    def batch_spy(index: int, images: Sequence[np.ndarray], renders: int) -> Any:
        spread.append(float(np.stack(images).std(axis=0).mean()))
        rendered = {np.ascontiguousarray(image).tobytes() for image in images}
        distinct.append((len(rendered), len(set(applied[-len(images) :]))))
        return batch(index, images, renders)

    session.sampler.apply, session.report.batch = apply_spy, batch_spy
    while session.step():  # the bpy module has no event loop: timers never fire
        pass
    return Outcome(
        list(session.optimizer.history),
        session.renders,
        time.perf_counter() - started,
        session.status,
        spread,
        distinct,
        output_dir,
    )


def scenefit_sensitivity(session_module: Any, case: Case, targets: Path, output_dir: Path) -> dict[str, float]:
    """label → max |Δpixel| between renders made through SceneFit's own path (a started Session: its render
    override and value assignment) at the property's :func:`probe_values`, the others at their start centres.
    0 means SceneFit's renders do not change with that property (e.g. frozen by Cycles' persistent data)."""
    base = {spec["label"]: central(spec["distribution"]) for spec in case.specs}
    result = {}
    with _probe_session(session_module, case, targets, output_dir) as render:
        for label in case.labels:
            images = [render({**base, label: value}) for value in probe_values(case, label)]
            result[label] = max(float(np.abs(image - images[0]).max()) for image in images[1:])
    return result


def pipeline_gap(
    bpy: Any,
    session_module: Any,
    targets_module: Any,
    case: Case,
    targets: Path,
    folder: Path,
    resolution: tuple[int, int] = TRAINING_SIZE,
) -> dict[str, float]:
    """What the parameters cannot explain: mean and max |Δpixel| between a plain target at the truth's centres
    (the target loop's settings, loaded the way SceneFit loads targets, ``targets_module.load_targets``) and
    SceneFit's own training render of the same values. Includes render noise (Cycles) and the colour pipeline."""
    values = {label: central(case.truth[label]) for label in case.labels}
    folder.mkdir(parents=True, exist_ok=True)
    with _target_settings(case.scene, case.target_override):
        for label, value in values.items():
            case.setters[label](value)
        _render_still(bpy, case.scene, folder / "truth.png")
    for label, spec in zip(case.labels, case.specs, strict=True):
        case.setters[label](central(spec["distribution"]))
    target = targets_module.load_targets(folder / "truth.png", resolution)[0][0]
    with _probe_session(session_module, case, targets, folder / "run", resolution) as render:
        image = render(values)
    difference = np.abs(image.astype(np.float64) - target)
    return {"mean": float(difference.mean()), "max": float(difference.max())}


@contextlib.contextmanager
def _probe_session(
    session_module: Any, case: Case, targets: Path, output_dir: Path, resolution: tuple[int, int] = TRAINING_SIZE
) -> Iterator[Callable[[Mapping[str, Any]], np.ndarray]]:
    """A started Session (its sampler rendering); yields render(values) → SceneFit's training render of those scene
    values, through the run's own sampler. Stopped (and the scene restored) on exit."""
    config = run_config(session_module, case, targets, output_dir, 1, 2, 0, resolution)
    session = session_module.Session(case.scene, config)
    session.start()

    def render(values: Mapping[str, Any]) -> np.ndarray:
        return session.sampler.render(0, values)

    try:
        yield render
    finally:
        session.stop()


# ---- the scenes ----------------------------------------------------------------------------------------------


def _look_at(bpy: Any, scene: Any, location: Sequence[float], target: Sequence[float], lens: float = 50.0) -> Any:
    from mathutils import Vector

    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = location
    camera.rotation_euler = (Vector(target) - Vector(location)).to_track_quat("-Z", "Y").to_euler()
    camera.data.lens = lens
    scene.camera = camera
    return camera


def _sun(bpy: Any, scene: Any, strength: float, rotation: Sequence[float], name: str = "Sun") -> Any:
    sun = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
    sun.data.energy = strength
    sun.rotation_euler = rotation
    scene.collection.objects.link(sun)
    return sun


def _world(bpy: Any, scene: Any, colour: Sequence[float], strength: float = 1.0) -> None:
    world = bpy.data.worlds.new("World")
    world.color = colour[:3]  # Workbench
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*colour[:3], 1.0)
    background.inputs["Strength"].default_value = strength
    scene.world = world


def _material(bpy: Any, name: str, colour: Sequence[float], roughness: float = 0.5) -> Any:
    material = bpy.data.materials.new(name)
    material.diffuse_color = (*colour[:3], 1.0)  # Workbench's material colour
    material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*colour[:3], 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return material


def _mesh_object(bpy: Any, scene: Any, name: str, build: Callable[[Any], None], material: Any | None = None) -> Any:
    import bmesh

    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    build(bm)
    bm.to_mesh(mesh)
    bm.free()
    if material is not None:
        mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def _floor(bpy: Any, scene: Any, size: float = 20.0, colour: Sequence[float] = (0.5, 0.5, 0.5)) -> Any:
    import bmesh

    return _mesh_object(
        bpy,
        scene,
        "Floor",
        lambda bm: bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=size / 2),
        _material(bpy, "Floor", colour, 0.8),
    )


def _box(bm: Any, centre: Sequence[float], size: Sequence[float], material_index: int = 0) -> None:
    """An axis-aligned box into a bmesh, its faces with ``material_index``."""
    import bmesh
    from mathutils import Matrix

    matrix = Matrix.Translation(centre) @ Matrix.Diagonal((*size, 1.0))
    geometry = bmesh.ops.create_cube(bm, size=1.0, matrix=matrix)
    faces = {f for v in geometry["verts"] for f in v.link_faces}
    for face in faces:
        face.material_index = material_index


def _cycles(scene: Any, size: int, samples: int, view: str, denoise: bool = False) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = denoise
    _common(scene, size, view)


def _workbench(scene: Any, size: int, aa: str, view: str) -> None:
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.render_aa = aa
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    _common(scene, size, view)


def _common(scene: Any, size: int, view: str) -> None:
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = view
    scene.view_settings.look = "None"


def gn_radius(bpy: Any) -> Case:
    """1. A Geometry Nodes modifier's float input sets a cylinder's radius (Cycles 16 spp, 96 px, AgX)."""
    scene = bpy.context.scene
    tree = bpy.data.node_groups.new("Cylinder", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = tree.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value, radius.max_value = 0.45, 0.05, 2.0
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    cylinder = nodes.new("GeometryNodeMeshCylinder")
    cylinder.inputs["Vertices"].default_value = 32
    cylinder.inputs["Depth"].default_value = 1.6
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = _material(bpy, "Orange", (0.8, 0.25, 0.03), 0.4)
    transform = nodes.new("GeometryNodeTransform")
    transform.inputs["Translation"].default_value = (0.0, 0.0, 0.8)
    links.new(group_in.outputs["Radius"], cylinder.inputs["Radius"])
    links.new(cylinder.outputs["Mesh"], transform.inputs["Geometry"])
    links.new(transform.outputs["Geometry"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])

    holder = _mesh_object(bpy, scene, "Holder", lambda bm: None)
    modifier = holder.modifiers.new("GeometryNodes", "NODES")
    modifier.node_group = tree
    socket = radius.identifier  # e.g. "Socket_1": the modifier's ID property for the input
    modifier[socket] = 0.45
    _floor(bpy, scene)
    _look_at(bpy, scene, (0.0, -5.5, 2.2), (0.0, 0.0, 0.7), lens=45)
    _sun(bpy, scene, 3.0, (0.7, 0.1, 0.6))
    _world(bpy, scene, (0.3, 0.35, 0.45), 0.6)
    _cycles(scene, 96, 16, "AgX")

    def set_radius(value: float) -> None:
        modifier[socket] = float(value)
        holder.update_tag()  # a plain script's habit: make sure the modifier re-evaluates

    label = "radius"
    return Case(
        "gn_radius",
        "Geometry Nodes input: cylinder radius",
        scene,
        [_spec(label, "OBJECT", holder.name, f'modifiers["GeometryNodes"]["{socket}"]', _tn(0.45, 0.045, 0.05, 2.0))],
        {label: _tn(0.9, 0.06, 0.05, 2.0)},
        {label: 0.05},
        {label: set_radius},
        "CYCLES",
        16,
    )


def tilt(bpy: Any) -> Case:
    """2. An object's X rotation, an L of three colours; start N(10°, 10°), truth N(80°, 6°) (Workbench AA 8,
    128 px, Standard)."""
    scene = bpy.context.scene
    materials = [_material(bpy, n, c) for n, c in (("Red", (0.8, 0.05, 0.03)), ("Green", (0.05, 0.6, 0.1)))]
    materials.append(_material(bpy, "Blue", (0.04, 0.1, 0.8)))

    def build(bm: Any) -> None:
        _box(bm, (0.0, 0.0, 0.0), (0.6, 0.6, 0.6), 0)
        _box(bm, (0.0, 0.9, 0.0), (0.6, 1.2, 0.6), 1)  # arm along +Y
        _box(bm, (0.0, 0.0, 0.9), (0.6, 0.6, 1.2), 2)  # arm along +Z

    obj = _mesh_object(bpy, scene, "Ell", build)
    for material in materials:
        obj.data.materials.append(material)
    obj.location = (0.0, -0.3, 1.4)
    obj.rotation_euler[0] = math.radians(10)
    _look_at(bpy, scene, (6.0, -2.0, 2.2), (0.0, 0.0, 1.4), lens=55)
    _world(bpy, scene, (0.05, 0.05, 0.05))
    _workbench(scene, 128, "8", "Standard")

    def set_tilt(value: float) -> None:
        obj.rotation_euler[0] = value

    label = "tilt"
    return Case(
        "tilt",
        "Object rotation X, start 70° off",
        scene,
        [_spec(label, "OBJECT", obj.name, "rotation_euler[0]", _n(math.radians(10), math.radians(10)))],
        {label: _n(math.radians(80), math.radians(6))},
        {label: math.radians(5)},
        {label: set_tilt},
        "BLENDER_WORKBENCH",
        8,
    )


def light_and_colour(bpy: Any) -> Case:
    """3. A sun's strength and a Principled BSDF's base-colour red channel, two specs in one scene (Cycles 8 spp,
    64 px, Filmic)."""
    scene = bpy.context.scene
    import bmesh

    paint = _material(bpy, "Paint", (0.2, 0.3, 0.15), 0.5)
    ball = _mesh_object(
        bpy, scene, "Ball", lambda bm: bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=1.0), paint
    )
    for polygon in ball.data.polygons:
        polygon.use_smooth = True
    ball.location = (0.0, 0.0, 1.0)
    _floor(bpy, scene, colour=(0.6, 0.6, 0.6))
    sun = _sun(bpy, scene, 1.0, (0.6, 0.0, 0.8))
    _look_at(bpy, scene, (0.0, -6.0, 2.5), (0.0, 0.0, 0.9), lens=40)
    _world(bpy, scene, (0.05, 0.06, 0.08))
    _cycles(scene, 64, 8, "Filmic")
    bsdf = paint.node_tree.nodes["Principled BSDF"]

    def set_strength(value: float) -> None:
        sun.data.energy = value

    def set_red(value: float) -> None:
        bsdf.inputs["Base Color"].default_value[0] = value

    red_path = 'node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value[0]'
    return Case(
        "light_and_colour",
        "Sun strength + base-colour red",
        scene,
        [
            _spec("strength", "LIGHT", sun.data.name, "energy", _tn(1.0, 0.1, 0.0, 20.0)),
            _spec("red", "MATERIAL", paint.name, red_path, _tn(0.2, 0.05, 0.0, 1.0)),
        ],
        {"strength": _tn(3.0, 0.2, 0.0, 20.0), "red": _tn(0.75, 0.05, 0.0, 1.0)},
        {"strength": 0.2, "red": 0.05},
        {"strength": set_strength, "red": set_red},
        "CYCLES",
        8,
    )


def driven_choice(bpy: Any) -> Case:
    """4. An integer custom property ``scene["choice"]`` shows one of three objects through drivers on their
    hide_render (``choice != k``), learned as a categorical (Cycles 8 spp, 80 px, Khronos PBR Neutral)."""
    scene = bpy.context.scene
    import bmesh

    scene["choice"] = 0
    shapes = [
        ("Cube", (0.8, 0.1, 0.05), lambda bm: bmesh.ops.create_cube(bm, size=1.4)),
        ("Sphere", (0.1, 0.7, 0.1), lambda bm: bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=12, radius=0.8)),
        (
            "Cone",
            (0.1, 0.2, 0.9),
            lambda bm: bmesh.ops.create_cone(bm, cap_ends=True, segments=24, radius1=0.9, radius2=0.0, depth=1.8),
        ),
    ]
    for k, (name, colour, build) in enumerate(shapes):
        obj = _mesh_object(bpy, scene, name, build, _material(bpy, name, colour))
        obj.location = (0.0, 0.0, 0.9)
        fcurve = obj.driver_add("hide_render")
        driver = fcurve.driver
        driver.type = "SCRIPTED"
        variable = driver.variables.new()
        variable.name, variable.type = "choice", "SINGLE_PROP"
        variable.targets[0].id_type = "SCENE"
        variable.targets[0].id = scene
        variable.targets[0].data_path = '["choice"]'
        driver.expression = f"choice != {k}"  # a simple expression: no Python auto-run needed
    _floor(bpy, scene)
    _sun(bpy, scene, 3.0, (0.5, 0.2, 0.4))
    _look_at(bpy, scene, (3.0, -5.0, 3.0), (0.0, 0.0, 0.8), lens=45)
    _world(bpy, scene, (0.2, 0.2, 0.25))
    _cycles(scene, 80, 8, "Khronos PBR Neutral")

    def set_choice(value: int) -> None:
        scene["choice"] = int(value)
        scene.update_tag()  # drivers reading a custom property re-evaluate when its owner is tagged

    label = "choice"
    return Case(
        "driven_choice",
        "Int custom property → drivers → visibility",
        scene,
        [_spec(label, "SCENE", scene.name, '["choice"]', {"kind": "categorical", "choices": [0, 1, 2]})],
        {label: {"kind": "categorical", "choices": [0, 1, 2], "probs": [0.15, 0.25, 0.6]}},
        {label: 0.1},
        {label: set_choice},
        "CYCLES",
        8,
    )


def hires_targets(bpy: Any) -> Case:
    """5. A ball's height over a floor (start: resting on it, truth: floating), Cycles 8 spp 64 px Standard; the
    targets are rendered at twice the size and twice the samples (128 px, 16 spp)."""
    scene = bpy.context.scene
    import bmesh

    ball = _mesh_object(
        bpy,
        scene,
        "Ball",
        lambda bm: bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=0.5),
        _material(bpy, "Yellow", (0.8, 0.6, 0.05), 0.3),
    )
    for polygon in ball.data.polygons:
        polygon.use_smooth = True
    ball.location = (0.0, 0.0, 0.5)
    _floor(bpy, scene, colour=(0.4, 0.45, 0.5))
    _sun(bpy, scene, 4.0, (0.35, 0.3, 0.5))
    _look_at(bpy, scene, (0.0, -6.0, 1.2), (0.0, 0.0, 0.7), lens=55)
    _world(bpy, scene, (0.15, 0.15, 0.2))
    _cycles(scene, 64, 8, "Standard")

    def set_height(value: float) -> None:
        ball.location[2] = value

    label = "height"
    return Case(
        "hires_targets",
        "Ball height; targets at 2× size and samples",
        scene,
        [_spec(label, "OBJECT", ball.name, "location[2]", _n(0.5, 0.05))],  # resting on the floor
        {label: _n(1.1, 0.08)},
        {label: 0.05},
        {label: set_height},
        "CYCLES",
        8,
        target_override={"resolution_percentage": 200, "samples": 16},
    )


def metasim_yaw(bpy: Any) -> Case:
    """6. Meta-Sim's yaw (Kar et al. 2019): a car-like object's yaw from N(0°, 10°) to targets ~ N(90°, 5°)
    (Workbench AA 5, 96 px, AgX)."""
    scene = bpy.context.scene
    colours = (("Body", (0.05, 0.15, 0.7)), ("Cabin", (0.8, 0.8, 0.8)), ("Nose", (0.85, 0.05, 0.03)))
    materials = [_material(bpy, n, c) for n, c in colours]

    def build(bm: Any) -> None:
        _box(bm, (0.0, 0.0, 0.35), (2.4, 1.1, 0.5), 0)  # body along +X
        _box(bm, (-0.35, 0.0, 0.85), (1.1, 0.95, 0.5), 1)  # cabin toward the back
        _box(bm, (1.25, 0.0, 0.3), (0.15, 1.0, 0.3), 2)  # red nose at the front (+X)

    car = _mesh_object(bpy, scene, "Car", build)
    for material in materials:
        car.data.materials.append(material)
    _floor(bpy, scene, colour=(0.35, 0.35, 0.35))
    _look_at(bpy, scene, (1.5, -7.0, 4.0), (0.0, 0.0, 0.4), lens=70)
    _world(bpy, scene, (0.2, 0.22, 0.25))
    _workbench(scene, 96, "5", "AgX")

    def set_yaw(value: float) -> None:
        car.rotation_euler[2] = value

    label = "yaw"
    return Case(
        "metasim_yaw",
        "Meta-Sim yaw 0° → 90°",
        scene,
        [_spec(label, "OBJECT", car.name, "rotation_euler[2]", _n(0.0, math.radians(10)))],
        {label: _n(math.radians(90), math.radians(5))},
        {label: math.radians(5)},
        {label: set_yaw},
        "BLENDER_WORKBENCH",
        5,
    )


def _spec(label: str, id_type: str, id_name: str, path: str, distribution: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "id_type": id_type, "id_name": id_name, "data_path": path, "distribution": distribution}


def _n(mu: float, sigma: float) -> dict[str, Any]:
    return {"kind": "normal", "mu": mu, "sigma": sigma}


def _tn(mu: float, sigma: float, low: float, high: float) -> dict[str, Any]:
    return {"kind": "truncnormal", "mu": mu, "sigma": sigma, "low": low, "high": high}


SCENES: dict[str, Callable[[Any], Case]] = {
    "gn_radius": gn_radius,
    "tilt": tilt,
    "light_and_colour": light_and_colour,
    "driven_choice": driven_choice,
    "hires_targets": hires_targets,
    "metasim_yaw": metasim_yaw,
}


def build(bpy: Any, name: str) -> Case:
    """An empty file, then the named scene in it."""
    bpy.ops.wm.read_homefile(use_empty=True)
    return SCENES[name](bpy)
