"""Target clips given as video files, decoded with Blender's own FFmpeg (no other codec library)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...engine.errors import TargetError
from ..scene.render import quiet_stdout, read_tga, temp_root

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv")


class VideoClip:
    """A video file, decoded with Blender's FFmpeg: a temporary scene whose sequencer shows the movie is rendered
    at the movie's own size (sRGB in, "Standard" view out: the pixels pass unchanged), one frame at a time.

    Blender renders any scene at the active scene's frame (and a context override around the render would crash
    once a training thread runs Python), so the movie strip is moved instead: to show movie frame i it starts
    i frames before that frame.
    """

    @staticmethod
    def accepts(path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES

    def __init__(self, path: Path, fps: float) -> None:  # ``fps``: the video has its own
        self.path = path
        with self._decoder() as (strip, _):
            self.length, self.fps = strip.frame_final_duration, float(strip.fps)

    def read(self, indices: list[int]) -> list[tuple[np.ndarray, bool]]:
        frames = []
        shown = bpy.context.scene.frame_current
        with self._decoder() as (strip, image):
            for index in indices:
                strip.frame_start = shown - index
                with quiet_stdout():
                    bpy.ops.render.render(write_still=True, scene=strip.id_data.name)
                pixels = read_tga(image)
                frames.append((np.concatenate([pixels, np.ones_like(pixels[..., :1])], axis=2), False))
        return frames

    @contextlib.contextmanager
    def _decoder(self) -> Iterator[tuple[Any, Path]]:
        """A temporary scene showing the movie; yields its strip and the file each render is written to."""
        scene = bpy.data.scenes.new("scenefit-decode")
        folder = Path(tempfile.mkdtemp(prefix="scenefit-decode-", dir=temp_root()))
        try:
            editor = scene.sequence_editor_create()
            strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # renamed in Blender 4.4
            try:
                strip = strips.new_movie("clip", str(self.path), 1, 1)
            except RuntimeError as error:
                raise TargetError(f"video {self.path} cannot be decoded by Blender: {error}") from None
            element = strip.elements[0] if len(strip.elements) else None
            width, height = (element.orig_width, element.orig_height) if element is not None else (0, 0)
            if strip.frame_final_duration < 1 or width < 1 or height < 1:
                raise TargetError(
                    f"video {self.path} cannot be decoded by Blender's FFmpeg (no frames or no size: corrupt, or a "
                    "codec it lacks); convert it to H.264 MP4 or export its frames to a sub-folder"
                )
            render = scene.render
            render.engine = "BLENDER_WORKBENCH"
            render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
            render.use_sequencer, render.use_compositing, render.dither_intensity = True, False, 0.0
            render.image_settings.file_format = "TARGA_RAW"
            render.image_settings.color_mode = "RGB"
            render.filepath = str(folder / "frame.tga")
            scene.view_settings.view_transform = "Standard"
            scene.view_settings.look = "None"
            yield strip, folder / "frame.tga"
        finally:
            bpy.data.scenes.remove(scene)
            shutil.rmtree(folder, ignore_errors=True)
