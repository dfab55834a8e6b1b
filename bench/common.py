"""Shared pieces of the benchmarks: the supershape protocol, the convergence criterion, the machine, Blender start-up.

Importing this module never imports bpy or torch; :func:`blender` starts the bpy module (isolated from the
machine's Blender configuration) and enables SceneFit from this source tree, as ``scenefit_batch.py`` does.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "presets" / "supershape_density.json"

# The supershape protocol (blendtorch densityopt): LogNormal m1/m2, start μ = (1.2, 3.0) σ = 0.4, truth μ* = 2.25
# σ* = 0.1 for both, 64 targets; converged once max|μ − μ*| < 0.1 holds for the rest of the run.
TRUTH_MU = {"m1": 2.25, "m2": 2.25}
TRUTH_SIGMA = 0.1
START = {"m1": (1.2, 0.4), "m2": (3.0, 0.4)}
N_TARGETS = 64
TOLERANCE = 0.1

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def mu_error(values: Mapping[str, Mapping[str, Any]]) -> float:
    """max |μ − μ*| over the protocol's parameters."""
    return max(abs(float(values[label]["mu"]) - mu) for label, mu in TRUTH_MU.items())


def renders_to_converge(history: Sequence[Mapping[str, Any]], budget: int) -> int:
    """Renders told when the run entered the band max|μ − μ*| < TOLERANCE for the last time and stayed in it to
    the end; ``budget`` if the run ends outside the band (or has no steps). Each history entry holds the values
    after its step and the renders told so far."""
    if not history or mu_error(history[-1]["values"]) >= TOLERANCE:
        return budget
    converged = int(history[-1]["renders"])
    for entry in reversed(history):
        if mu_error(entry["values"]) >= TOLERANCE:
            break
        converged = int(entry["renders"])
    return converged


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def machine() -> str:
    """nproc, CPU model, RAM and the 1-minute load average (other processes share these cores)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "? GiB"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({model}), {ram} RAM, load {load:.2f} at start"


def blender() -> ModuleType:
    """Import the bpy module with a throw-away Blender user folder and enable SceneFit from this source tree.

    Returns the extension's top-level module (``ext.addon.blender.run.session`` etc.).
    """
    if "bpy" not in sys.modules:
        isolated = Path(tempfile.mkdtemp(prefix="scenefit-bench-"))
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(isolated / "blender"))
        os.environ.setdefault("XDG_CACHE_HOME", str(isolated / "cache"))
    import bpy  # noqa: F401  (must come before scenefit_batch imports addon_utils)

    import scenefit_batch

    return scenefit_batch.extension()


def module(ext: ModuleType, name: str) -> ModuleType:
    """A module of the enabled extension, e.g. ``module(ext, "addon.blender.run.session")``."""
    return importlib.import_module(f"{ext.__name__}.{name}")


def load_preset(ext: ModuleType, path: Path = PRESET) -> Any:
    return module(ext, "addon.engine.presets").load_preset(path)


def build_supershape_scene(ext: ModuleType, scene_name: str = "SceneFit bench") -> tuple[Any, Any]:
    """A new scene with the demo preset's supershape scene and settings; returns (scene, preset)."""
    import bpy

    preset = load_preset(ext)
    scene = bpy.data.scenes.new(scene_name)
    module(ext, "addon.blender.scene.presets").apply_preset(preset, scene)
    return scene, preset


def render_targets(ext: ModuleType, scene: Any, preset: Any, folder: Path, config: Any, count: int = N_TARGETS) -> Path:
    """The protocol's targets (64 unless a smoke test asks for fewer) rendered from the preset's truth into
    ``folder`` (PNG) with the render settings of ``config``."""
    truth = preset.truth()
    assert truth is not None and {label: d["mu"] for label, d in truth.items()} == TRUTH_MU, truth
    counts = {**preset.targets, "count": count}
    module(ext, "addon.blender.run.batch").render_truth_targets(scene, config, truth, counts, folder)
    return folder


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A GitHub-markdown table (what bench/README.md holds), aligned for the terminal too."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
