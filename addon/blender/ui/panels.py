"""View3D ▸ Sidebar ▸ SceneFit: presets, random properties, targets, settings, run; and the Supershape panel of
the Properties editor.

What the panels show is computed by small view-model functions (``*_text``, :func:`run_view`) that tests call
directly; ``draw()`` only lays them out.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import bpy

from ...engine.presets import recommended_steps
from ..data.properties import ID_TYPE_ITEMS, spec_label
from ..run import pictures as run_pictures
from ..run.controller import CONTROLLER
from ..scene import rna
from ..scene.supershape import FORMULA_PARAMETERS, parameter_name
from ..targets import check as target_check
from . import torch_setup
from .operators.apply_preset import SCENEFIT_OT_apply_preset
from .operators.check_targets import SCENEFIT_OT_check_targets
from .operators.generate_dataset import SCENEFIT_OT_generate_dataset
from .operators.optimize import SCENEFIT_OT_optimize, SCENEFIT_OT_stop
from .operators.results import SCENEFIT_OT_apply_mean, SCENEFIT_OT_open_results
from .operators.specs import (
    SCENEFIT_OT_spec_add,
    SCENEFIT_OT_spec_move,
    SCENEFIT_OT_spec_paste,
    SCENEFIT_OT_spec_remove,
)
from .operators.torch_install import SCENEFIT_OT_check_torch, SCENEFIT_OT_copy_torch_command, SCENEFIT_OT_install_torch

_ID_ICONS = {identifier: icon for identifier, _name, _description, icon, _number in ID_TYPE_ITEMS}
MAX_CHOICES_SHOWN = 3
# Two short lines: one line was cut at the sidebar's default width ("Right-click any fi…mize with SceneFit").
EMPTY_HINT = ("Right-click any field ▸", "Randomize with SceneFit")
DEFAULT_LABEL_CHARS = 36  # a label across the sidebar at its default width (291 px at UI scale 1, Blender 4.3)
PIXELS_PER_CHAR = 7.0  # the default UI font, measured on the screenshot of tests/test_real_blender.py
MAX_LINES = 4


# ---- view models ----------------------------------------------------------------------------------------------


def _number(value: float, unit: str) -> str:
    if unit == "ROTATION":
        return f"{math.degrees(value):.1f}°"
    return f"{value:.4g}"


def distribution_text(entry: dict[str, Any], unit: str = "NONE") -> str:
    """A distribution in one short line: a learned entry (``obj["scenefit"][label]``, kind under
    "distribution") or spec fields in the same form. Angles in degrees; log-normal parameters are of log x."""
    kind = entry.get("distribution", "")
    if kind == "truncnormal" and "mean" in entry:  # learned: its own mean and std, not its parent's μ and σ
        return (
            f"mean {_number(entry['mean'], unit)}  std {_number(entry['std'], unit)}  "
            f"[{_number(entry['low'], unit)}, {_number(entry['high'], unit)}]"
        )
    if kind in ("normal", "truncnormal"):
        text = f"μ {_number(entry['mu'], unit)}  σ {_number(entry['sigma'], unit)}"
        if kind == "truncnormal":
            text += f"  [{_number(entry['low'], unit)}, {_number(entry['high'], unit)}]"
        return text
    if kind == "lognormal":
        # The mean, not the median: it is what Apply Mean sets.
        mean = math.exp(entry["mu"] + entry["sigma"] ** 2 / 2)
        return f"log μ {entry['mu']:.3g}  σ {entry['sigma']:.3g}  (mean {mean:.4g})"
    if kind == "categorical":
        probs = entry.get("probs") or {}
        ranked = sorted(probs.items(), key=lambda item: -item[1])
        text = ", ".join(f"{choice} {p:.0%}" for choice, p in ranked[:MAX_CHOICES_SHOWN])
        return text + (f" +{len(ranked) - MAX_CHOICES_SHOWN}" if len(ranked) > MAX_CHOICES_SHOWN else "")
    if kind == "bernoulli":
        return f"p(on) {entry['p']:.2f}"
    return ""


def initial_entry(spec: Any) -> dict[str, Any]:
    """A spec's initial distribution in the form of a learned entry (for :func:`distribution_text`)."""
    if spec.distribution == "NORMAL":
        entry: dict[str, Any] = {"distribution": "normal", "mu": spec.mu, "sigma": spec.sigma}
        if spec.use_bounds:
            entry.update(distribution="truncnormal", low=spec.low, high=spec.high)
        return entry
    if spec.distribution == "LOGNORMAL":
        return {"distribution": "lognormal", "mu": spec.mu, "sigma": spec.sigma}
    if spec.distribution == "BERNOULLI":
        return {"distribution": "bernoulli", "p": spec.p}
    choices = [c.strip() for c in spec.choices.split(",") if c.strip()]
    try:
        probs = [float(p) for p in spec.probs.split(",") if p.strip()]
    except ValueError:
        probs = []
    if len(probs) != len(choices):
        probs = [1.0 / len(choices)] * len(choices) if choices else []
    return {"distribution": "categorical", "probs": dict(zip(choices, probs, strict=True))}


def short_text(entry: dict[str, Any], unit: str = "NONE") -> str:
    """A distribution in a dozen characters, for the list row (the full text is below the list)."""
    kind = entry.get("distribution", "")
    if kind in ("normal", "truncnormal"):
        return f"μ {_number(entry['mu'], unit)}"
    if kind == "lognormal":
        return f"mean {math.exp(entry['mu'] + entry['sigma'] ** 2 / 2):.3g}"
    if kind == "categorical":
        ranked = sorted((entry.get("probs") or {}).items(), key=lambda item: -item[1])
        return f"{ranked[0][0]} {ranked[0][1]:.0%}" if ranked else ""
    return distribution_text(entry, unit)


def spec_short(spec: Any) -> tuple[str, bool]:
    """(text, learned) as :func:`spec_summary`, in the short form of the list row."""
    if spec.learned:
        return short_text(json.loads(spec.learned), spec.unit), True
    if spec.distribution == "CATEGORICAL" and not spec.choices.strip():
        return "uniform", False
    return short_text(initial_entry(spec), spec.unit), False


def label_lines(layout: bpy.types.UILayout, text: str, icon: str = "NONE", chars: int = 0) -> None:
    """``text`` as labels of at most ``chars`` characters (default: what fits the sidebar), wrapped at spaces
    instead of cut with "…" in the middle as a single label is."""
    lines = textwrap.wrap(text, chars or label_chars(), break_on_hyphens=False) or [""]
    col = layout.column(align=True)
    for i, line in enumerate(lines[:MAX_LINES]):
        col.label(text=line, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


def label_chars(context: Any = None) -> int:
    """Characters of a full-width label in the current region (the sidebar's default width: ~36)."""
    context = context or bpy.context
    region = getattr(context, "region", None)
    width = getattr(region, "width", 0) or 0
    if width <= 0:
        return DEFAULT_LABEL_CHARS
    scale = context.preferences.view.ui_scale if context.preferences else 1.0
    return max(16, int(width / (PIXELS_PER_CHAR * scale)) - 5)


def spec_summary(spec: Any) -> tuple[str, bool]:
    """(text, learned): the learned distribution when a run has written one, else the initial one."""
    if spec.learned:
        return distribution_text(json.loads(spec.learned), spec.unit), True
    if spec.distribution == "CATEGORICAL" and not spec.choices.strip():
        return "all items, uniform", False
    return distribution_text(initial_entry(spec), spec.unit), False


@dataclass
class RunView:
    """Everything the Run panel shows."""

    running: bool
    factor: float = 0.0
    progress_text: str = ""
    stats: list[str] = field(default_factory=list)
    message: str = ""
    message_is_error: bool = False
    finished_scene: bool = False  # a run of this scene ended in this session


def run_view(context: bpy.types.Context) -> RunView:
    progress = context.window_manager.scenefit_progress
    running = CONTROLLER.running
    outcome = CONTROLLER.outcome
    view = RunView(running=running, message=progress.message)
    if running or progress.step:
        steps = max(progress.steps, 1)
        view.factor = min(progress.step / steps, 1.0)
        view.progress_text = f"Step {progress.step} / {progress.steps}"
        view.stats = [
            f"Renders {progress.renders}   {progress.images_per_s:.1f} images/s",
            f"Discriminator loss {progress.loss:.3f}",
            f"D(real) {progress.d_real:.2f}   D(sim) {progress.d_sim:.2f}",
        ]
    if outcome is not None and context.scene is not None and outcome.scene_name == context.scene.name:
        view.finished_scene = not running
        view.message = outcome.message
        view.message_is_error = outcome.status == "failed"
    return view


# ---- list -----------------------------------------------------------------------------------------------------


class SCENEFIT_UL_specs(bpy.types.UIList):
    """Random properties: learn toggle, label with the owner's type icon, and the current (learned, ✓, or initial)
    distribution; the selected one's owner, path, distribution and bounds are edited below the list."""

    bl_idname = "SCENEFIT_UL_specs"

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: Any,
        item: Any,
        icon: int,
        active_data: Any,
        active_property: str,
        index: int = 0,
        flt_flag: int = 0,
    ) -> None:
        row = layout.row(align=True)
        row.prop(item, "learn", text="", icon="LOCKED" if not item.learn else "UNLOCKED", emboss=False)
        split = row.split(factor=0.35, align=True)  # halves cut the distribution ("mean 3.…")
        split.label(text=spec_label(item), icon="ERROR" if item.problem else _ID_ICONS.get(item.id_type, "NONE"))
        text, learned = spec_short(item)
        split.label(text=text, icon="CHECKMARK" if learned else "NONE")


# ---- panels ---------------------------------------------------------------------------------------------------


class _SceneFitPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SceneFit"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None


class SCENEFIT_PT_main(_SceneFitPanel, bpy.types.Panel):
    """SceneFit: learn distributions of scene properties from target images"""

    bl_idname = "SCENEFIT_PT_main"
    bl_label = "SceneFit"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        draw_torch_status(layout)
        row = layout.row(align=True)
        row.enabled = not CONTROLLER.running
        row.operator_menu_enum(SCENEFIT_OT_apply_preset.bl_idname, "preset", text="Apply Preset", icon="PRESET")


def draw_torch_status(layout: bpy.types.UILayout) -> None:
    """Nothing when torch is found; otherwise what is wrong and what to do (everything else keeps working)."""
    status = torch_setup.status()
    if status.found:
        return
    box = layout.box()
    box.label(text="torch is missing: Optimize needs it", icon="ERROR")
    col = box.column(align=True)
    job = torch_setup.job()
    if job is not None and job.poll():
        col.label(text="Installing torch…", icon="SORTTIME")
        for line in list(job.lines)[-2:]:
            col.label(text=line[:60])
        return
    if job is not None and job.returncode:
        col.label(text=f"pip failed (exit {job.returncode}): {job.lines[-1] if job.lines else ''}"[:80], icon="CANCEL")
    if bpy.app.online_access:
        col.label(text="Install it into SceneFit's user folder (about 200 MB):")
        col.operator(SCENEFIT_OT_install_torch.bl_idname, icon="IMPORT")
    else:
        col.label(text="Online access is off (Preferences ▸ System ▸ Network).")
        col.label(text="Run the install command in a terminal,")
        col.label(text="or set a torch folder in SceneFit's preferences.")
    row = col.row(align=True)
    row.operator(SCENEFIT_OT_copy_torch_command.bl_idname, icon="COPYDOWN")
    row.operator(SCENEFIT_OT_check_torch.bl_idname, icon="FILE_REFRESH")


class SCENEFIT_PT_parameters(_SceneFitPanel, bpy.types.Panel):
    """Random properties and their distributions"""

    bl_idname = "SCENEFIT_PT_parameters"
    bl_label = "Parameters"
    bl_parent_id = "SCENEFIT_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.scenefit
        row = layout.row()
        row.template_list("SCENEFIT_UL_specs", "", settings, "specs", settings, "active_spec_index", rows=4)
        side = row.column(align=True)
        side.operator(SCENEFIT_OT_spec_add.bl_idname, icon="ADD", text="")
        side.operator(SCENEFIT_OT_spec_remove.bl_idname, icon="REMOVE", text="")
        side.separator()
        side.operator(SCENEFIT_OT_spec_paste.bl_idname, icon="PASTEDOWN", text="")
        side.separator()
        side.operator(SCENEFIT_OT_spec_move.bl_idname, icon="TRIA_UP", text="").direction = "UP"
        side.operator(SCENEFIT_OT_spec_move.bl_idname, icon="TRIA_DOWN", text="").direction = "DOWN"
        if not len(settings.specs):
            col = layout.column(align=True)
            col.label(text=EMPTY_HINT[0], icon="INFO")
            col.label(text=EMPTY_HINT[1], icon="BLANK1")
            return
        index = min(settings.active_spec_index, len(settings.specs) - 1)
        draw_spec(layout, settings.specs[index], editable=not CONTROLLER.running)


def draw_spec(layout: bpy.types.UILayout, spec: Any, editable: bool) -> None:
    """The active random property: where it lives, its distribution, its learned values."""
    col = layout.column()
    col.enabled = editable
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(spec, "label")
    col.prop(spec, "id_type")
    collection = rna.ID_COLLECTIONS.get(spec.id_type, ("objects",))[0]
    col.prop_search(spec, "id_name", bpy.data, collection)
    col.prop(spec, "data_path")
    if spec.problem:
        box = col.box()
        box.alert = True
        box.label(text=spec.problem[:120], icon="ERROR")
    col.separator()
    col.prop(spec, "distribution")
    angle = spec.unit == "ROTATION"
    if spec.distribution in ("NORMAL", "LOGNORMAL"):
        use_angle = angle and spec.distribution == "NORMAL"
        col.prop(spec, "mu_angle" if use_angle else "mu")
        col.prop(spec, "sigma_angle" if use_angle else "sigma")
    if spec.distribution == "NORMAL":
        col.prop(spec, "use_bounds")
        sub = col.column(align=True)
        sub.active = spec.use_bounds
        sub.prop(spec, "low_angle" if angle else "low")
        sub.prop(spec, "high_angle" if angle else "high")
    elif spec.distribution == "CATEGORICAL":
        col.prop(spec, "choices")
        col.prop(spec, "probs")
    elif spec.distribution == "BERNOULLI":
        col.prop(spec, "p")
    col.prop(spec, "learn")
    if spec.learned:
        box = layout.box()
        label_lines(box, "Learned: " + distribution_text(json.loads(spec.learned), spec.unit), "CHECKMARK")


class SCENEFIT_PT_targets(_SceneFitPanel, bpy.types.Panel):
    """Target images the renders should become indistinguishable from"""

    bl_idname = "SCENEFIT_PT_targets"
    bl_label = "Targets"
    bl_parent_id = "SCENEFIT_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        row = layout.row(align=True)  # Check beside the folder: beside the summary, that was cut
        row.prop(scene.scenefit, "targets", text="")
        row.operator(SCENEFIT_OT_check_targets.bl_idname, text="Check", icon="FILE_REFRESH")
        result = target_check.current(scene)
        if result is None:
            waiting = "Checked when a run starts" if scene.scenefit.use_clips else "Not checked yet"
            layout.label(text=waiting, icon="QUESTION")
        else:
            label_lines(layout, result.summary(), "ERROR" if result.error else "IMAGE_DATA")
        if result is None or result.error:
            return
        for path, reason in result.skipped[:3]:
            label_lines(layout, f"{bpy.path.basename(path)}: {reason}", "DOT")
        icons = target_check.preview_icons(result)
        if icons:
            grid = layout.grid_flow(columns=len(icons), even_columns=True, align=True)
            for icon_id in icons:
                grid.template_icon(icon_value=icon_id, scale=3.0)


class SCENEFIT_PT_settings(_SceneFitPanel, bpy.types.Panel):
    """How renders are made and compared, and how long to learn"""

    bl_idname = "SCENEFIT_PT_settings"
    bl_label = "Settings"
    bl_parent_id = "SCENEFIT_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.enabled = not CONTROLLER.running
        settings = context.scene.scenefit
        col = layout.column()
        col.prop(settings, "objective")
        col.prop(settings, "estimator")
        col.prop(settings, "device")
        col.prop(settings, "batch_size")
        col.prop(settings, "steps")
        # Measured with the energy distance's defaults; presets of the other objectives bring their own steps.
        learned = sum(spec.learn for spec in settings.specs)
        if settings.objective == "energy" and learned > 1 and settings.steps < recommended_steps(learned):
            col.label(text=f"Recommended: {recommended_steps(learned)} steps", icon="INFO")
        col.prop(settings, "seed")
        col.separator()
        sub = col.column(align=True)
        sub.prop(settings, "resolution_x", text="Resolution X")
        sub.prop(settings, "resolution_y", text="Y")
        col.prop(settings, "render_engine")
        col.prop(settings, "samples")
        col.prop(settings, "workers")
        col.separator()
        col.prop(settings, "use_clips")
        sub = col.column(align=True)
        sub.active = settings.use_clips
        sub.prop(settings, "clip_frame_start")
        sub.prop(settings, "clip_frame_end")
        sub.prop(settings, "clip_stride")
        col.separator()
        col.prop(settings, "output_dir")
        col.prop(settings, "resume")
        col.prop(settings, "checkpoint_seconds")
        col.prop(settings, "checkpoint_steps")


class SCENEFIT_PT_run(_SceneFitPanel, bpy.types.Panel):
    """Optimize, watch it learn, stop; then apply the result"""

    bl_idname = "SCENEFIT_PT_run"
    bl_label = "Run"
    bl_parent_id = "SCENEFIT_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        view = run_view(context)
        row = layout.row(align=True)
        row.scale_y = 1.5
        if view.running:
            row.operator(SCENEFIT_OT_stop.bl_idname, icon="CANCEL")
        else:
            row.operator(SCENEFIT_OT_optimize.bl_idname, icon="PLAY")
        if view.progress_text:
            layout.progress(factor=view.factor, type="BAR", text=view.progress_text)
            col = layout.column(align=True)
            for line in view.stats:
                col.label(text=line)
        if view.message:
            box = layout.box()
            box.alert = view.message_is_error
            label_lines(box, view.message, "ERROR" if view.message_is_error else "INFO", label_chars(context) - 3)
        if view.running or view.finished_scene:
            col = layout.column(align=True)
            for spec in context.scene.scenefit.specs:
                text, learned = spec_summary(spec)
                label_lines(col, f"{spec_label(spec)}: {text}", "CHECKMARK" if learned else "DOT")
            draw_pictures(layout, context.scene)
        if not view.running:  # one button a line: side by side their labels were cut ("Apply Mean to …")
            col = layout.column(align=True)
            col.operator(SCENEFIT_OT_apply_mean.bl_idname, icon="CHECKMARK")
            col.operator(SCENEFIT_OT_open_results.bl_idname, icon="FILE_FOLDER")
            col.operator(SCENEFIT_OT_generate_dataset.bl_idname, icon="RENDERLAYERS")


def draw_pictures(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    """The latest renders under a few targets, and each parameter's μ ± σ over the steps (run_pictures.py)."""
    renders, plots = run_pictures.current(scene)
    if renders is not None:
        col = layout.column(align=True)
        col.label(text="Targets (top), latest renders", icon="IMAGE_DATA")
        col.template_icon(icon_value=renders, scale=9.0)
    if plots:
        grid = layout.grid_flow(columns=2, even_columns=True, align=True)
        for _label, icon in plots:
            grid.template_icon(icon_value=icon, scale=6.0)
    if run_pictures.problem:
        label_lines(layout, run_pictures.problem, "ERROR")


class SCENEFIT_PT_supershape(bpy.types.Panel):
    bl_label = "Supershape"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "data"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.object is not None and context.object.supershape.is_supershape

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        props = context.object.supershape
        layout.prop(props, "resolution")
        row = layout.row()
        for formula, title in ((1, "Longitude"), (2, "Latitude")):
            column = row.column(align=True)
            column.use_property_split = False
            column.label(text=title)
            for parameter in FORMULA_PARAMETERS:
                column.prop(props, parameter_name(parameter, formula))


_CLASSES = (
    SCENEFIT_UL_specs,
    SCENEFIT_PT_main,
    SCENEFIT_PT_parameters,
    SCENEFIT_PT_targets,
    SCENEFIT_PT_settings,
    SCENEFIT_PT_run,
    SCENEFIT_PT_supershape,
)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(_CLASSES)


def register() -> None:
    _register_classes()


def unregister() -> None:
    _unregister_classes()
    target_check.release()  # the thumbnails the Targets panel showed
