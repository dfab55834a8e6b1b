"""Data SceneFit keeps in Blender: random-property specs and run settings on the Scene (saved with the .blend,
``scene.scenefit``) and live progress on the WindowManager (not saved, ``wm.scenefit_progress``)."""

from __future__ import annotations

import json

import bpy

from ...engine import vocabulary
from ...engine.errors import SpecError
from ..scene import rna

WRITEBACK_KEY = "scenefit"  # custom property on each owning ID holding the learned distributions, by label
MAX_LABEL = 63  # Blender's limit on custom property names; labels are keys of that custom property

_ID_ICONS = {
    "OBJECT": "OBJECT_DATA",
    "MESH": "MESH_DATA",
    "MATERIAL": "MATERIAL",
    "WORLD": "WORLD",
    "LIGHT": "LIGHT",
    "CAMERA": "CAMERA_DATA",
    "NODETREE": "NODETREE",
    "SCENE": "SCENE_DATA",
    "COLLECTION": "OUTLINER_COLLECTION",
    "CURVE": "CURVE_DATA",
    "TEXTURE": "TEXTURE",
    "SHAPE_KEY": "SHAPEKEY_DATA",
    "PARTICLE": "PARTICLES",
}
ID_TYPE_ITEMS = [
    (key, noun, f"The property lives on a {noun.lower()} (bpy.data.{collection})", _ID_ICONS[key], i)
    for i, (key, (collection, noun)) in enumerate(rna.ID_COLLECTIONS.items())
]
DISTRIBUTION_ITEMS = [
    ("NORMAL", "Normal", "Gaussian N(μ, σ) in the property's units; with bounds, truncated to [low, high]", 0),
    ("LOGNORMAL", "Log-normal", "Positive values whose logarithm is N(μ, σ): μ, σ are of log(x) (scales, counts)", 1),
    ("CATEGORICAL", "Categorical", "One of a list of choices with learned probabilities (enums, ints, shapes)", 2),
    ("BERNOULLI", "Bernoulli", "True with probability p (on/off properties)", 3),
]
OBJECTIVE_ITEMS = vocabulary.enum_items(vocabulary.OBJECTIVE_NAMES)
ESTIMATOR_ITEMS = vocabulary.enum_items(vocabulary.BASELINE_NAMES)
DEVICE_ITEMS = vocabulary.enum_items(vocabulary.DEVICE_NAMES)
ENGINE_ITEMS = vocabulary.enum_items(vocabulary.RENDER_ENGINE_NAMES)


def spec_label(spec: SCENEFIT_Spec) -> str:
    """The spec's label, or one made from its data-block and path when left empty."""
    return spec.label.strip() or f"{spec.id_name}.{spec.data_path.strip()}"[:MAX_LABEL]


def _resolve(spec: SCENEFIT_Spec) -> rna.BoundProperty:
    return rna.resolve(spec_label(spec), spec.id_type, spec.id_name, spec.data_path)


def _refresh_unit(spec: SCENEFIT_Spec, _context: bpy.types.Context) -> None:
    try:
        unit = _resolve(spec).unit
    except SpecError:
        unit = "NONE"
    if spec.unit != unit:
        spec.unit = unit


def _problem(spec: SCENEFIT_Spec) -> str:
    try:
        _resolve(spec)
    except SpecError as error:
        return str(error)
    return ""


def _learned(spec: SCENEFIT_Spec) -> str:
    try:
        owner = rna.find_id(spec_label(spec), spec.id_type, spec.id_name)
    except SpecError:
        return ""
    stored = owner.get(WRITEBACK_KEY)
    entry = stored.get(spec_label(spec)) if stored is not None and hasattr(stored, "get") else None
    return json.dumps(entry.to_dict(), sort_keys=True) if entry is not None else ""


def _angle_view(source: str, name: str, description: str) -> bpy.props.FloatProperty:
    """The same number as ``source``, shown as an angle (degrees in the UI, radians in Python): the panel draws
    it instead of ``source`` when the spec's unit is ROTATION."""

    def get(self: SCENEFIT_Spec) -> float:
        return getattr(self, source)

    def set_(self: SCENEFIT_Spec, value: float) -> None:
        setattr(self, source, value)

    return bpy.props.FloatProperty(name=name, description=description, subtype="ANGLE", get=get, set=set_)


class SCENEFIT_Spec(bpy.types.PropertyGroup):
    """One scene property made random: where it is, its distribution, and whether SceneFit learns it."""

    label: bpy.props.StringProperty(
        name="Label",
        description="Name of this parameter in results, reports and the custom property "
        "(empty: data-block name and path)",
        maxlen=MAX_LABEL,
    )
    id_type: bpy.props.EnumProperty(
        name="Data-block type",
        description="Type of the data-block that owns the property",
        items=ID_TYPE_ITEMS,
        default="OBJECT",
        update=_refresh_unit,
    )
    id_name: bpy.props.StringProperty(
        name="Data-block",
        description="Name of the data-block that owns the property (renaming it breaks the spec)",
        update=_refresh_unit,
    )
    data_path: bpy.props.StringProperty(
        name="Data path",
        description="Full RNA path of one number on the data-block, index included: rotation_euler[2], data.energy, "
        '["my_prop"], modifiers["GeometryNodes"]["Socket_2"], '
        'node_tree.nodes["Principled BSDF"].inputs[2].default_value, rigid_body.mass '
        "(right-click a field ▸ Copy Data Path)",
        update=_refresh_unit,
    )
    unit: bpy.props.StringProperty(
        name="Unit",
        description="Unit of the resolved property (ROTATION: values are radians, shown in degrees); "
        "updated when the data-block or path changes",
        default="NONE",
    )
    distribution: bpy.props.EnumProperty(
        name="Distribution",
        description="Family of the distribution values are sampled from",
        items=DISTRIBUTION_ITEMS,
        default="NORMAL",
    )
    mu: bpy.props.FloatProperty(
        name="μ",
        description="Initial mean (Normal: in property units, radians for angles; Log-normal: mean of log x)",
        default=0.0,
    )
    sigma: bpy.props.FloatProperty(
        name="σ",
        description="Initial standard deviation (Normal: property units; Log-normal: of log x); must be > 0",
        default=1.0,
        min=1e-6,
    )
    use_bounds: bpy.props.BoolProperty(
        name="Bounds",
        description="Normal only: truncate the distribution to [low, high] (values outside are never sampled)",
        default=False,
    )
    low: bpy.props.FloatProperty(name="Low", description="Lower bound (property units); must be below High")
    high: bpy.props.FloatProperty(
        name="High", description="Upper bound (property units); must be above Low", default=1.0
    )
    mu_angle: _angle_view("mu", "μ", "Initial mean angle")
    sigma_angle: _angle_view("sigma", "σ", "Initial standard deviation, as an angle; must be > 0")
    low_angle: _angle_view("low", "Low", "Lower bound angle; must be below High")
    high_angle: _angle_view("high", "High", "Upper bound angle; must be above Low")
    choices: bpy.props.StringProperty(
        name="Choices",
        description="Categorical: comma-separated values to choose from (numbers, or enum identifiers such as "
        "POINT, SUN); empty for an enum property: all of its items",
    )
    probs: bpy.props.StringProperty(
        name="Probabilities",
        description="Categorical: comma-separated initial probabilities, one per choice, summing to 1 (empty: uniform)",
    )
    p: bpy.props.FloatProperty(
        name="p", description="Bernoulli: initial probability of True", default=0.5, min=0.0, max=1.0
    )
    learn: bpy.props.BoolProperty(
        name="Learn",
        description="Learn this distribution from the targets; off: sample it with fixed parameters",
        default=True,
    )
    learned: bpy.props.StringProperty(
        name="Learned",
        description="The learned distribution as JSON, read from the data-block's 'scenefit' custom property",
        get=_learned,
    )
    problem: bpy.props.StringProperty(
        name="Problem",
        description="Why this spec cannot be used right now (empty when it resolves)",
        get=_problem,
    )


class SCENEFIT_Settings(bpy.types.PropertyGroup):
    """SceneFit's run settings, saved with the scene."""

    specs: bpy.props.CollectionProperty(type=SCENEFIT_Spec, name="Random properties")
    active_spec_index: bpy.props.IntProperty(name="Active random property", default=0, min=0)
    targets: bpy.props.StringProperty(
        name="Targets",
        description="Folder of target images (PNG, JPG, EXR…) or a glob pattern such as //targets/*.png",
        subtype="DIR_PATH",
    )
    objective: bpy.props.EnumProperty(
        name="Objective",
        description="How renders are compared with targets",
        items=OBJECTIVE_ITEMS,
        default="energy",  # OptimizerConfig.default()'s objective
    )
    estimator: bpy.props.EnumProperty(
        name="Baseline",
        description="Variance reduction of the score-function gradient (no gradient flows through Blender)",
        items=ESTIMATOR_ITEMS,
        default="per-property",  # OptimizerConfig.default()'s baseline (a test keeps the two in step)
    )
    device: bpy.props.EnumProperty(
        name="Device",
        description="Where the objective trains; the distribution parameters always stay on the CPU",
        items=DEVICE_ITEMS,
        default="auto",  # OptimizerConfig's device
    )
    workers: bpy.props.IntProperty(
        name="Workers",
        description="Render processes (headless Blenders, each on a snapshot of the scene): 1 renders in this "
        "Blender (the interface waits for each render); 0: what fits the machine, one per two cores and at least "
        "two here, so this Blender renders nothing and stays responsive",
        default=0,  # RunConfig's workers
        min=0,
        max=256,  # session.MAX_WORKERS
    )
    batch_size: bpy.props.IntProperty(
        name="Batch size",
        description="Renders per optimization step",
        default=16,  # OptimizerConfig.default()'s batch size (a test keeps the two in step)
        min=2,
        max=1024,
    )
    steps: bpy.props.IntProperty(
        name="Steps",
        description="Optimization steps (each renders one batch). With the energy distance 100 are recommended for "
        "one learned property and 50 more for each further one (the panel says when there are fewer)",
        default=100,
        min=1,
    )
    resolution_x: bpy.props.IntProperty(
        name="Width",
        description="Training image width in pixels (targets are resized to it)",
        default=64,
        min=16,
        max=512,
    )
    resolution_y: bpy.props.IntProperty(
        name="Height",
        description="Training image height in pixels (targets are resized to it)",
        default=64,
        min=16,
        max=512,
    )
    render_engine: bpy.props.EnumProperty(
        name="Engine", description="Render engine for training renders", items=ENGINE_ITEMS, default="CYCLES"
    )
    samples: bpy.props.IntProperty(
        name="Samples",
        description="Cycles samples, Workbench anti-aliasing samples (1 = off) or EEVEE samples per render",
        default=8,
        min=1,
        max=4096,
    )
    seed: bpy.props.IntProperty(
        name="Seed", description="Seed of sampling and network initialization (same seed, same run)", min=0
    )
    output_dir: bpy.props.StringProperty(
        name="Output",
        description="Folder for result.json and the checkpoint (empty: the add-on preferences' default folder)",
        subtype="DIR_PATH",
    )
    resume: bpy.props.StringProperty(
        name="Resume from",
        description="A checkpoint file of an earlier run to continue from (empty: start fresh)",
        subtype="FILE_PATH",
    )
    checkpoint_seconds: bpy.props.FloatProperty(
        name="Checkpoint Seconds",
        description="Write the checkpoint at least this often, so that a crash or a killed Blender loses at most "
        "this much training (the run continues from it with Resume from)",
        default=30.0,  # RunConfig's default
        min=0.1,
        max=86400.0,
    )
    checkpoint_steps: bpy.props.IntProperty(
        name="Checkpoint Steps",
        description="Also write the checkpoint every this many steps (0: by time only)",
        default=0,
        min=0,
    )
    use_clips: bpy.props.BoolProperty(
        name="Clips",
        description="Each sample is a clip: the frame range below is simulated from its start (rigid bodies, cloth, "
        "animation) and rendered every Stride frames; targets are clips (sub-folders of frames or videos)",
        default=False,
    )
    clip_frame_start: bpy.props.IntProperty(
        name="Clip Start", description="First frame of each clip (inside the scene's frame range)", default=1
    )
    clip_frame_end: bpy.props.IntProperty(
        name="Clip End", description="Last frame a clip may use (inside the scene's frame range)", default=57
    )
    clip_stride: bpy.props.IntProperty(
        name="Stride",
        description="Render every Stride-th frame from Clip Start: T = frames per clip. Every frame in between is "
        "still simulated",
        default=8,
        min=1,
    )


class SCENEFIT_Progress(bpy.types.PropertyGroup):
    """Live state of the current run, for the panel (kept on the WindowManager: never saved)."""

    running: bpy.props.BoolProperty(name="Running", description="A run is in progress")
    step: bpy.props.IntProperty(name="Step", description="Optimization steps done")
    steps: bpy.props.IntProperty(name="Steps", description="Optimization steps planned")
    renders: bpy.props.IntProperty(name="Renders", description="Images rendered so far")
    images_per_s: bpy.props.FloatProperty(name="Images/s", description="Rendering throughput of the run")
    d_real: bpy.props.FloatProperty(name="D(real)", description="Mean discriminator output on targets")
    d_sim: bpy.props.FloatProperty(name="D(sim)", description="Mean discriminator output on renders")
    loss: bpy.props.FloatProperty(name="Loss", description="Latest discriminator/critic loss")
    message: bpy.props.StringProperty(name="Message", description="What the run is doing, or why it ended")


_CLASSES = (SCENEFIT_Spec, SCENEFIT_Settings, SCENEFIT_Progress)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.Scene.scenefit = bpy.props.PointerProperty(type=SCENEFIT_Settings, name="SceneFit")
    bpy.types.WindowManager.scenefit_progress = bpy.props.PointerProperty(
        type=SCENEFIT_Progress, name="SceneFit progress"
    )


def unregister() -> None:
    del bpy.types.WindowManager.scenefit_progress
    del bpy.types.Scene.scenefit
    _unregister_classes()
