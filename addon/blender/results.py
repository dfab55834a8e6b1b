"""After a run: set each random property to the mean of its learned distribution, open the results folder.

The learned distributions are read from the custom properties a run writes on the owning data-blocks
(``obj["scenefit"]``, see writeback.py), so both work after reopening the .blend, not only right after a run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import bpy

from ..engine.errors import SceneFitError, SpecError
from . import rna
from .properties import spec_label
from .run import CONTROLLER
from .session import RunConfig

_NOT_VALUES = ("path", "distribution")


def learned_entry(spec: Any) -> dict[str, Any] | None:
    """The learned distribution stored for ``spec`` (a ``SCENEFIT_Spec``), or None before any run."""
    return json.loads(spec.learned) if spec.learned else None


def mean_value(bound: rna.BoundProperty, entry: dict[str, Any]) -> rna.Value:
    """The scene value for "Apply mean": mean (Normal, truncated Normal, log-normal), most likely choice
    (Categorical), p > 0.5 (Bernoulli), as the engine defines them; categorical choices become scene values."""
    from ..engine.distributions import distribution_from_dict  # torch: only when a mean is applied
    from ..engine.errors import DistributionError

    values = {key: value for key, value in entry.items() if key not in _NOT_VALUES}
    stored_choices = None
    if isinstance(values.get("probs"), dict):  # stored by choice: {"SUN": 0.7, "POINT": 0.3}
        stored_choices = list(values["probs"])
        values["probs"] = list(values["probs"].values())
    try:
        mean = distribution_from_dict({"kind": entry.get("distribution"), **values}).mean_value()
    except DistributionError as error:
        raise SpecError(f"{bound.culprit}: the stored learned distribution is unusable: {error}") from None
    if stored_choices is None:
        return mean
    choice = stored_choices[int(mean)]  # custom properties keep choices as text
    if bound.value_type == "enum":
        return choice
    return choice == "True" if bound.value_type == "bool" else float(choice)


def apply_means(scene: bpy.types.Scene) -> list[str]:
    """Set every random property that has a learned distribution to its mean; returns their labels.

    Everything is resolved and computed before anything is set (SpecError naming the spec, scene unchanged)."""
    planned = []
    for spec in scene.scenefit.specs:
        entry = learned_entry(spec)
        if entry is None:
            continue
        bound = rna.resolve(spec_label(spec), spec.id_type, spec.id_name, spec.data_path)
        planned.append((bound, bound.coerce(mean_value(bound, entry))))
    rna.assign(planned)
    return [bound.label for bound, _ in planned]


def results_folder(scene: bpy.types.Scene) -> Path | None:
    """The folder of the scene's last run in this session, else where its next run will write; None when the
    settings cannot say."""
    outcome = CONTROLLER.outcome
    if outcome is not None and outcome.scene_name == scene.name and outcome.output_dir is not None:
        return outcome.output_dir
    try:
        return Path(RunConfig.from_scene(scene).output_dir)
    except (SceneFitError, KeyError):
        return None


class SCENEFIT_OT_apply_mean(bpy.types.Operator):
    """Set each random property to the mean (or most likely value) of its learned distribution"""

    bl_idname = "scenefit.apply_mean"
    bl_label = "Apply Mean to Scene"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if CONTROLLER.running:
            cls.poll_message_set("Stop the run first")
            return False
        if context.scene is None or not any(spec.learned for spec in context.scene.scenefit.specs):
            cls.poll_message_set("Nothing learned yet: run Optimize first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            labels = apply_means(context.scene)
        except (SceneFitError, ModuleNotFoundError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Set {len(labels)} properties to their learned means: {', '.join(labels)}")
        return {"FINISHED"}


class SCENEFIT_OT_open_results(bpy.types.Operator):
    """Open the run's output folder (result.json, checkpoint) in the system file browser"""

    bl_idname = "scenefit.open_results"
    bl_label = "Open Results Folder"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        folder = results_folder(context.scene) if context.scene is not None else None
        if folder is None or not folder.is_dir():
            cls.poll_message_set("No results yet: run Optimize first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        folder = str(results_folder(context.scene))
        opener = folder_opener()
        if opener is not None:
            context.window_manager.clipboard = folder
            self.report({"WARNING"}, f"Cannot open folders here ({opener} is missing); path copied: {folder}")
            return {"CANCELLED"}
        return bpy.ops.wm.path_open(filepath=folder)


def folder_opener() -> str | None:
    """None when ``wm.path_open`` can open a folder on this system, else the name of the missing program (on
    Linux it runs xdg-open and only prints a traceback when that fails, which no user sees)."""
    if sys.platform.startswith(("win", "darwin")):
        return None
    return None if shutil.which("xdg-open") else "xdg-open"


_CLASSES = (SCENEFIT_OT_apply_mean, SCENEFIT_OT_open_results)
register, unregister = bpy.utils.register_classes_factory(_CLASSES)
