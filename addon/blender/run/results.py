"""After a run: each random property's learned mean, the folder of the results (for the operators of
``ui/operators/results.py``).

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

from ...engine.errors import SceneFitError, SpecError
from ..data.properties import spec_label
from ..scene import rna
from .config import RunConfig
from .controller import CONTROLLER

_NOT_VALUES = ("path", "distribution")


def learned_entry(spec: Any) -> dict[str, Any] | None:
    """The learned distribution stored for ``spec`` (a ``SCENEFIT_Spec``), or None before any run."""
    return json.loads(spec.learned) if spec.learned else None


def mean_value(bound: rna.BoundProperty, entry: dict[str, Any]) -> rna.Value:
    """The scene value for "Apply mean": mean (Normal, truncated Normal, log-normal), most likely choice
    (Categorical), p > 0.5 (Bernoulli), as the engine defines them; categorical choices become scene values."""
    from ...engine.distributions import distribution_from_dict  # torch: only when a mean is applied
    from ...engine.errors import DistributionError

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


def folder_opener() -> str | None:
    """None when ``wm.path_open`` can open a folder on this system, else the name of the missing program (on
    Linux it runs xdg-open and only prints a traceback when that fails, which no user sees)."""
    if sys.platform.startswith(("win", "darwin")):
        return None
    return None if shutil.which("xdg-open") else "xdg-open"
