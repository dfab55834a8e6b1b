"""Target clips given as a sub-folder of images, one per frame in natural file-name order (``f2`` before ``f10``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...engine.errors import TargetError
from .images import IMAGE_SUFFIXES, LINEAR_SUFFIXES, read_raw


def natural_order(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class FrameFolder:
    """A clip given as a sub-folder of images, one per frame in file-name order, at the scene's frame rate."""

    @staticmethod
    def accepts(path: Path) -> bool:
        return path.is_dir()

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.frames = [p for p in sorted(path.iterdir(), key=natural_order) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.frames:
            raise TargetError(f"target clip {path} holds no frames ({', '.join(IMAGE_SUFFIXES[:4])}…)")
        self.length = len(self.frames)

    def read(self, indices: list[int]) -> list[tuple[np.ndarray, bool]]:
        """Raw RGBA pixels of the frames ``indices`` and whether each is linear (EXR/HDR) or sRGB."""
        return [(read_raw(self.frames[i]), self.frames[i].suffix.lower() in LINEAR_SUFFIXES) for i in indices]
