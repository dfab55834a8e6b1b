"""What the Targets panel shows: how many target images load (and which are skipped, why) and thumbnails of a
few of them. Loading happens in the Check operator or when a run starts, never while drawing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bpy
import bpy.utils.previews

from ...engine.errors import TargetError
from .images import load_targets

PREVIEW_COUNT = 4


@dataclass(frozen=True)
class TargetCheck:
    """The outcome of loading a scene's targets at a training size."""

    source: str  # absolute folder or pattern
    size: tuple[int, int]
    loaded: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    error: str  # why nothing could be loaded ("" when images loaded)
    clips: bool = False  # entries are clips (frame folders or videos), not images

    def summary(self) -> str:
        if self.error:
            return self.error
        return f"{len(self.loaded)} {'clips' if self.clips else 'images'} loaded, {len(self.skipped)} skipped"


_checks: dict[str, TargetCheck] = {}  # by scene name
_previews: Any = None


def _key(scene: bpy.types.Scene) -> tuple[str, tuple[int, int]]:
    settings = scene.scenefit
    source = bpy.path.abspath(settings.targets) if settings.targets else ""
    return source, (settings.resolution_x, settings.resolution_y)


def remember(scene: bpy.types.Scene, report: Any, size: tuple[int, int]) -> TargetCheck:
    """Keep a loader report (a TargetReport from the Check button or a run, or a run's clip report whose loaded
    entries are (path, frames)) for the panel."""
    clips = any(not isinstance(entry, str) for entry in report.loaded)
    loaded = tuple(entry if isinstance(entry, str) else entry[0] for entry in report.loaded)
    check = TargetCheck(report.source, size, loaded, tuple(report.skipped), "", clips)
    _checks[scene.name] = check
    return check


def check(scene: bpy.types.Scene) -> TargetCheck:
    """Load the scene's targets at the training size (as a run would) and remember the outcome."""
    source, size = _key(scene)
    try:
        _images, report = load_targets(source, size, 3)
    except TargetError as error:
        result = TargetCheck(source, size, (), (), str(error))
        _checks[scene.name] = result
        return result
    return remember(scene, report, size)


def current(scene: bpy.types.Scene) -> TargetCheck | None:
    """The remembered outcome for the scene's current target source and size, if any."""
    found = _checks.get(scene.name)
    return found if found is not None and (found.source, found.size) == _key(scene) else None


def preview_icons(result: TargetCheck, count: int = PREVIEW_COUNT) -> list[int]:
    """Icon ids of thumbnails of the first ``count`` loaded target images (generated in the background by Blender);
    none for clips."""
    global _previews
    if result.clips:
        return []
    if _previews is None:
        _previews = bpy.utils.previews.new()
    icons = []
    for path in result.loaded[:count]:
        preview = _previews.get(path) or _previews.load(path, path, "IMAGE")
        icons.append(preview.icon_id)
    return icons


def release() -> None:
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    _checks.clear()
