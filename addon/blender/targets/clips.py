"""Load target clips: a folder whose entries are clips — sub-folders of frames or video files — brought to the
run's T frames of (H, W, C) in the training renders' colour pipeline.

* A sub-folder of images is one clip, its frames in file-name order (natural order: ``f2`` before ``f10``).
* A video file (``.mp4``, ``.mov``, ``.mkv``, ``.avi``, ``.webm``…) is decoded with Blender's own FFmpeg through a
  temporary Video Sequencer scene, one frame at a time; no other codec library is used.

Time: a clip with exactly T frames is taken as the run's T frames (one per rendered frame — what
:func:`save_clip` and the data-set generator write). Any other clip is a recording that starts at the run's
first frame, at its own frame rate (a video's, or the scene's for a folder of frames): the frames nearest to the
run's frame times are picked, so it must last at least as long as the run's frame range. Space: every frame is
cropped and resized like a still target (:func:`engine.images.to_display`).

Bad input raises :class:`TargetError` naming the clip: a folder mixing still images and clips, clips of different
lengths, frames of different sizes within a clip, a clip too short, a video Blender cannot decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ...engine.errors import TargetError
from ...engine.images import to_display
from ..scene.clips import ClipSettings
from .frames import FrameFolder, natural_order
from .images import IMAGE_SUFFIXES, save_image
from .videos import VIDEO_SUFFIXES, VideoClip

# One reader per clip format, the first that accepts an entry reads it (a new format is one module and one entry).
CLIP_READERS = (FrameFolder, VideoClip)


@dataclass
class ClipTargetReport:
    """What :func:`load_clip_targets` did: clips loaded (and how many frames each had), entries skipped and why."""

    source: str
    loaded: list[tuple[str, int]] = field(default_factory=list)  # (path, frames in the clip)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resampled: list[str] = field(default_factory=list)  # clips whose frames were picked by time

    def summary(self) -> str:
        text = f"{len(self.loaded)} target clips loaded from {self.source}"
        if self.resampled:
            text += f", {len(self.resampled)} resampled in time to the run's frames"
        if self.skipped:
            reasons = "; ".join(f"{Path(p).name}: {why}" for p, why in self.skipped[:3])
            text += f", {len(self.skipped)} skipped ({reasons})"
        return text


def load_clip_targets(
    source: str | Path, clip: ClipSettings, fps: float, size: tuple[int, int] = (64, 64), channels: int = 3
) -> tuple[np.ndarray, ClipTargetReport]:
    """Load every clip in the folder ``source`` as (N, T, H, W, C) float32 in [0, 1], with T = ``clip.length``,
    (W, H) = ``size``; ``fps`` is the scene's frame rate (frames per second of the run's frame numbers)."""
    if channels not in (3, 4):
        raise TargetError(f"target channels must be 3 (RGB) or 4 (RGBA), got {channels}")
    report = ClipTargetReport(str(source))
    entries = _clip_entries(str(source), report)
    sources = [next(reader for reader in CLIP_READERS if reader.accepts(entry))(entry, fps) for entry in entries]
    lengths = {clip_source.length for clip_source in sources}
    if len(lengths) > 1:
        listed = ", ".join(f"{c.path.name}: {c.length}" for c in sources[:6])
        raise TargetError(
            f"target clips in {source} have different lengths ({listed} frames): give every clip the same number "
            f"of frames ({clip.length} to use them as the run's frames as they are)"
        )
    clips = []
    for clip_source in sources:
        picked = _pick_frames(clip_source, clip, fps)
        frames = clip_source.read(picked)
        sizes = {frame.shape[:2]: index for (frame, _), index in zip(frames, picked, strict=True)}
        if len(sizes) > 1:
            shown = ", ".join(f"frame {i + 1}: {w}×{h}" for (h, w), i in sizes.items())
            raise TargetError(
                f"target clip {clip_source.path} has frames of different sizes ({shown}); a clip's frames must match"
            )
        clips.append(np.stack([to_display(pixels, linear, size, channels) for pixels, linear in frames]))
        report.loaded.append((str(clip_source.path), clip_source.length))
        if picked != list(range(clip_source.length)):
            report.resampled.append(str(clip_source.path))
    return np.stack(clips).astype(np.float32), report


def save_clip(clip: np.ndarray, folder: str | Path) -> list[Path]:
    """Write a clip (T, H, W, C) as ``folder/0001.png`` … (8-bit, values kept exactly): a clip target as
    :func:`load_clip_targets` reads it back unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index + 1:04d}.png" for index in range(len(clip))]
    for frame, path in zip(clip, paths, strict=True):
        save_image(frame, path)
    return paths


def _clip_entries(source: str, report: ClipTargetReport) -> list[Path]:
    if not source.strip():
        raise TargetError("no target clips given: set a folder holding one sub-folder of frames or one video per clip")
    folder = Path(bpy.path.abspath(source)).expanduser()
    if not folder.is_dir():
        raise TargetError(f"target clip folder {source} does not exist (clips are sub-folders of frames or videos)")
    clips, stills = [], []
    for entry in sorted(folder.iterdir(), key=natural_order):
        if entry.name.startswith("."):
            report.skipped.append((str(entry), "hidden"))
        elif any(reader.accepts(entry) for reader in CLIP_READERS):
            clips.append(entry)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            stills.append(entry)
        else:
            report.skipped.append((str(entry), f"neither a clip nor an image ({entry.suffix or 'no suffix'})"))
    if stills and clips:
        raise TargetError(
            f"target folder {source} mixes still images ({', '.join(p.name for p in stills[:3])}) and clips "
            f"({', '.join(p.name for p in clips[:3])}): with clips on, every target must be a clip — a sub-folder "
            "of frames or a video"
        )
    if not clips:
        found = f"only still images ({stills[0].name}…)" if stills else "nothing usable"
        raise TargetError(
            f"no target clips in {source}: found {found}. Put each clip's frames in its own sub-folder, or give "
            f"videos ({', '.join(VIDEO_SUFFIXES[:4])}…)"
        )
    return clips


def _pick_frames(source: FrameFolder | VideoClip, clip: ClipSettings, fps: float) -> list[int]:
    """Indices of the clip's frames standing for the run's frames (see the module's docstring)."""
    if source.length == clip.length:
        return list(range(clip.length))
    picked = [round((frame - clip.frame_start) / fps * source.fps) for frame in clip.frames]
    if picked[-1] >= source.length:
        raise TargetError(
            f"target clip {source.path} has {source.length} frames; the run needs {clip.length} (one per rendered "
            f"frame) or a recording of at least {picked[-1] + 1} frames at {source.fps:g} fps covering frames "
            f"{clip.frame_start}–{clip.frames[-1]}"
        )
    return picked
