"""The Run panel's pictures, during and after a run: the latest renders under a few targets, and each parameter's
μ ± σ (or probabilities) over the steps, drawn by the engine's report code into PNG files in Blender's temporary
folder and shown as previews (``bpy.utils.previews`` + ``template_icon``).

:func:`refresh` is called by the run controller after each slice; it redraws at most every
:data:`REFRESH_SECONDS` (matplotlib costs ~0.1 s a plot on the main thread; the controller asks for less while render
workers need the cores) and only when there is something new,
and once more when the run ends. A picture that cannot be drawn (no matplotlib/Pillow) leaves :data:`problem`
set and never touches the run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews
import numpy as np

REFRESH_SECONDS = 3.0
SHOWN = 3  # targets and renders side by side, one row each
MAX_PLOTS = 4
GAP = 48  # grey between the pictures, near the sidebar's own

_previews: Any = None
_pictures: dict[str, Any] = {"scene": "", "renders": None, "plots": [], "drawn_at": 0.0, "key": None}
problem = ""
_folder: Path | None = None
_serial = 0


def _path(name: str) -> Path:
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="scenefit-pictures-", dir=bpy.app.tempdir or None))
    return _folder / name


def _load(name: str, path: Path) -> int:
    """A preview of ``path`` under a fresh key (a preview's image is read once: a new picture needs a new key)."""
    global _previews, _serial
    if _previews is None:
        _previews = bpy.utils.previews.new()
    _serial += 1
    key = f"{name}-{_serial}"
    preview = _previews.load(key, str(path), "IMAGE")
    stale = [k for k in _previews if k.startswith(f"{name}-") and k != key]
    for k in stale:
        del _previews[k]
    return preview.icon_id


def strip(targets: np.ndarray, renders: np.ndarray, count: int = SHOWN, pad: int = 2) -> np.ndarray:
    """``count`` targets in a row above ``count`` renders (uint8 RGB), gaps in the sidebar's grey: what the panel
    shows."""
    from ...engine.reports import to_uint8

    rows = []
    for images in (targets[:count], renders[:count]):
        tiles = to_uint8(images)[..., :3]
        height, width = tiles.shape[1:3]
        row = np.full((height, count * width + (count - 1) * pad, 3), GAP, np.uint8)
        for i, tile in enumerate(tiles):
            row[:, i * (width + pad) : i * (width + pad) + width] = tile
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    gap = np.full((pad * 2, width, 3), GAP, np.uint8)
    return np.concatenate([rows[0], gap, rows[1]], axis=0)


def refresh(session: Any, final: bool = False, every: float = REFRESH_SECONDS) -> None:
    """Redraw the pictures of ``session`` (a running or just-ended Session) when ``every`` seconds have passed."""
    global problem
    now = time.monotonic()
    if not final and now - _pictures["drawn_at"] < every:
        return
    try:
        optimizer, report = getattr(session, "optimizer", None), getattr(session, "report", None)
        history = list(getattr(optimizer, "history", ()))
        renders = getattr(report, "latest", None)
        key = (session.scene.name, len(history), id(renders))
        if key == _pictures["key"]:
            return
        _pictures["drawn_at"], _pictures["key"] = now, key
        _draw(session, history, report, renders)
        problem = ""
    except Exception as error:  # pictures are a view: never the reason a run fails
        problem = f"no pictures: {error}"


def _draw(session: Any, history: list, report: Any, renders: Any) -> None:
    from ...engine import reports

    scene_name = session.scene.name
    if _pictures["scene"] != scene_name:
        _pictures.update(renders=None, plots=[])
    _pictures["scene"] = scene_name
    if renders is not None and len(renders) and report.targets is not None and len(report.targets):
        picture = strip(np.asarray(report.targets), np.asarray(renders))
        _pictures["renders"] = _load("renders", reports.write_png(picture, _path("renders.png")))
    labels = list(dict.fromkeys(label for entry in history for label in entry.get("values") or {}))[:MAX_PLOTS]
    plots = []
    for i, label in enumerate(labels):
        figure = reports.parameter_figure(_only(history, label), _only_truth(session, label))
        figure.set_size_inches(3.2, 2.4)
        path = _path(f"plot{i}.png")
        figure.savefig(path, dpi=80)
        plots.append((label, _load(f"plot{i}", path)))
    if plots:
        _pictures["plots"] = plots


def _only(history: list, label: str) -> list:
    return [{**entry, "values": {label: entry.get("values", {}).get(label)}} for entry in history]


def _only_truth(session: Any, label: str) -> dict | None:
    truth = getattr(session, "truth", None) or {}
    return {label: truth[label]} if label in truth else None


def current(scene: bpy.types.Scene) -> tuple[int | None, list[tuple[str, int]]]:
    """(icon of the renders under targets, [(label, icon of its plot)]) for ``scene``'s latest run."""
    if scene is None or _pictures["scene"] != scene.name:
        return None, []
    return _pictures["renders"], list(_pictures["plots"])


def forget() -> None:
    _pictures.update(scene="", renders=None, plots=[], drawn_at=0.0, key=None)


def unregister() -> None:
    global _previews
    forget()
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
