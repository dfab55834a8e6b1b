"""Where a run's result goes: custom properties on the owning data-blocks, and result.json in the output folder.

``obj["scenefit"]`` maps each learned parameter's label to its path and distribution, e.g.
``{"yaw": {"path": "rotation_euler[2]", "distribution": "normal", "mu": 1.04, "sigma": 0.09}}`` — readable in
Object ▸ Custom Properties. The values are the engine's ``values()``: a truncated normal gives its own "mean" and
"std" (always within its bounds) and its parent normal's "parent_mu" and "parent_sigma". Categorical
probabilities are stored by choice (``{"probs": {"SUN": 0.7, …}}``) because custom properties cannot hold lists
of text.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from ..data.properties import WRITEBACK_KEY
from ..scene.rna import BoundProperty, Value

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class Parameter:
    """A learned parameter as the Blender layer sees it: where it lives, its engine kind, and for categoricals
    the scene values its indices stand for."""

    bound: BoundProperty
    kind: str
    choices: Sequence[Value] | None = None

    def readable(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Engine values() with categorical indices replaced by the scene values they stand for."""
        readable = dict(values)
        if self.choices is not None and "choices" in readable:
            readable["choices"] = [self.choices[int(i)] for i in readable["choices"]]
        return readable


def write_custom_properties(parameters: Mapping[str, Parameter], values: Mapping[str, Mapping[str, Any]]) -> None:
    """Store each parameter's current distribution under its label in ``owner["scenefit"]``; other labels already
    there (earlier runs, other specs) are kept."""
    by_owner: dict[int, tuple[bpy.types.ID, dict[str, Any]]] = {}
    for label, parameter in parameters.items():
        owner = parameter.bound.owner
        entry = {"path": parameter.bound.data_path, "distribution": parameter.kind}
        for key, value in parameter.readable(values[label]).items():
            if key == "choices":
                continue
            if key == "probs" and parameter.choices is not None:
                value = {str(c): p for c, p in zip(parameter.choices, value, strict=True)}
            entry[key] = value
        by_owner.setdefault(owner.as_pointer(), (owner, {}))[1][label] = entry
    for owner, entries in by_owner.values():
        stored = owner.get(WRITEBACK_KEY)
        merged = stored.to_dict() if hasattr(stored, "to_dict") else {}
        merged.update(entries)
        owner[WRITEBACK_KEY] = merged


def result_document(
    parameters: Mapping[str, Parameter],
    values: Mapping[str, Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    renders: int,
    seconds: float,
    status: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The content of result.json: ``parameters`` (label → distribution and values), per-step ``history``,
    ``renders``, ``seconds``, ``status`` ("running", "finished", "stopped", "failed") and ``extra`` fields."""
    return {
        "status": status,
        "parameters": {
            label: {
                "distribution": p.kind,
                "id": f"{type(p.bound.owner).__name__}:{_name(p.bound.owner)}",
                "path": p.bound.data_path,
                **p.readable(values[label]),
            }
            for label, p in parameters.items()
        },
        "renders": renders,
        "seconds": round(seconds, 3),
        "history": [_readable_step(step, parameters) for step in history],
        **extra,
    }


def write_result(folder: Path, document: Mapping[str, Any]) -> Path:
    """Write result.json atomically (a reader never sees half a file); NaN/inf become null."""
    path = folder / RESULT_FILE
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(_json_safe(document), indent=1))
        os.replace(temporary, path)
    except BaseException:  # a full disk, a deleted folder: no half-written file stays behind
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    return path


def _readable_step(step: Mapping[str, Any], parameters: Mapping[str, Parameter]) -> dict[str, Any]:
    readable = dict(step)
    values = step.get("values", {})
    readable["values"] = {
        label: parameters[label].readable(v) if label in parameters else v for label, v in values.items()
    }
    return readable


def _name(owner: bpy.types.ID) -> str:
    try:
        return owner.name
    except ReferenceError:
        return "<deleted>"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
