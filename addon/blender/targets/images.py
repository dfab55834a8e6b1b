"""Load target images through the image pipeline that training renders go through too (``engine.images``).

Files are read raw through bpy, in scratch data (``bpy.data.temp_data``: the open file gains and loses no image),
with no colour conversion (float buffers as "Non-Color"); 8/16-bit formats are
taken as display-referred (already through a view transform, as a render saved by Blender or a photo is) with
straight alpha, EXR/HDR as linear with premultiplied alpha (shown with the "Standard" sRGB transform). Each
image is then cropped to the training aspect ratio, area-resized and rounded to 8 bits by
:func:`engine.images.to_display` — the same call that brings a training render from the size Blender rendered
it at to the training size. The report keeps each file's own size, from which a run picks its render size.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ...engine.errors import TargetError
from ...engine.images import to_display

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".hdr", ".tga", ".bmp", ".tif", ".tiff", ".webp")
LINEAR_SUFFIXES = (".exr", ".hdr")
_JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass
class TargetReport:
    """What :func:`load_targets` did: files loaded, files skipped and why, images cropped or resized."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resized: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each loaded file

    @property
    def native_size(self) -> tuple[int, int] | None:
        """The (width, height) every loaded file has, or None when their sizes differ."""
        return self.sizes[0] if self.sizes and len(set(self.sizes)) == 1 else None

    def summary(self) -> str:
        text = f"{len(self.loaded)} target images loaded from {self.source}"
        if self.resized:
            text += f", {len(self.resized)} cropped/resized to the training size"
        if self.skipped:
            reasons = "; ".join(f"{Path(p).name}: {why}" for p, why in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            text += f", {len(self.skipped)} skipped ({reasons}{more})"
        return text


def load_targets(
    source: str | Path, size: tuple[int, int] = (64, 64), channels: int = 3
) -> tuple[np.ndarray, TargetReport]:
    """Load a folder, a glob pattern or one image file as (N, H, W, C) float32 in [0, 1] with (W, H) = size.

    Raises :class:`TargetError` naming the path when the source is missing or empty, or when a file with an
    image suffix cannot be read (corrupt, truncated). Files of other types are skipped and reported.
    """
    if channels not in (3, 4):
        raise TargetError(f"target channels must be 3 (RGB) or 4 (RGBA), got {channels}")
    report = TargetReport(str(source))
    images = [_load_one(path, size, channels, report) for path in _candidates(str(source), report)]
    return np.stack(images).astype(np.float32), report


def _candidates(source: str, report: TargetReport) -> list[Path]:
    if not source.strip():
        raise TargetError("no target images given: set a folder or a glob pattern such as /data/targets/*.png")
    path = Path(bpy.path.abspath(source)).expanduser()
    if any(c in source for c in "*?["):
        entries = sorted(Path(p) for p in glob.glob(str(path)))
        if not entries:
            raise TargetError(f"no files match the target pattern {source}")
    elif path.is_dir():
        entries = sorted(path.iterdir())
    elif path.is_file():
        entries = [path]
    else:
        raise TargetError(f"target folder {source} does not exist")
    candidates = []
    for entry in entries:
        if entry.name.startswith("."):
            report.skipped.append((str(entry), "hidden file"))
        elif entry.is_dir():
            report.skipped.append((str(entry), "folder (folders are not searched)"))
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            report.skipped.append((str(entry), f"not an image type ({entry.suffix or 'no suffix'})"))
        else:
            candidates.append(entry)
    if not candidates:
        raise TargetError(
            f"no target images in {source} (looked for {', '.join(IMAGE_SUFFIXES)}; {len(report.skipped)} other "
            "files skipped)"
        )
    return candidates


def _load_one(path: Path, size: tuple[int, int], channels: int, report: TargetReport) -> np.ndarray:
    pixels = read_raw(path)
    linear = path.suffix.lower() in LINEAR_SUFFIXES
    if not np.isfinite(pixels).all():
        raise TargetError(f"target image {path} contains NaN or infinite pixel values")
    height, width = pixels.shape[:2]
    if (width, height) != tuple(size):
        report.resized.append(str(path))
    report.loaded.append(str(path))
    report.sizes.append((width, height))
    return to_display(pixels, linear, size, channels)


def read_raw(path: Path) -> np.ndarray:
    """The file's stored values as (H, W, 4) float32, row 0 at the top; Blender converts no colours."""
    if path.suffix.lower() in _JPEG_SUFFIXES and b"\xff\xd9" not in path.read_bytes()[-1024:]:
        raise TargetError(f"target image {path} is truncated (no JPEG end marker)")
    # Into scratch data, never the open file's: an image added to or removed from it rebuilds the depsgraph, which
    # restarts the 3D Viewport's progressive anti-aliasing — 8 redraws, ~5 CPU s in software GL taken from the
    # render workers at a run's start (bench/README.md, "The interactive run").
    with bpy.data.temp_data() as blend_data:
        try:
            image = blend_data.images.load(str(path), check_existing=False)
        except RuntimeError as error:
            raise TargetError(f"target image {path} cannot be read: {error}") from None
        width, height = image.size
        depth = image.channels
        if width == 0 or height == 0 or not image.has_data:
            raise TargetError(f"target image {path} cannot be read (corrupt, truncated or not an image)")
        # A byte buffer holds the file's values whatever the colour space; a float one (EXR, HDR, 16-bit) was
        # converted to scene linear unless it is Non-Color. Setting the colour space reloads the image and, even
        # in scratch data, restarts the viewport's anti-aliasing: only where it changes the values.
        if image.is_float:
            image.colorspace_settings.name = "Non-Color"
        flat = np.empty(width * height * depth, dtype=np.float32)
        image.pixels.foreach_get(flat)
    pixels = flat.reshape(height, width, depth)[::-1]
    if depth == 4:
        return np.ascontiguousarray(pixels)
    rgb = np.repeat(pixels[..., :1], 3, axis=2) if depth < 3 else pixels[..., :3]
    alpha = pixels[..., 1:2] if depth == 2 else np.ones((height, width, 1), np.float32)
    return np.concatenate([rgb, alpha], axis=2)


def save_image(image: np.ndarray, path: str | Path) -> None:
    """Write a display-referred (H, W, 3|4) float image in [0, 1] as an 8-bit PNG, values kept exactly (no colour
    conversion), so that :func:`load_targets` reads it back unchanged."""
    height, width, channels = image.shape
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :channels] = np.round(np.clip(image, 0.0, 1.0) * 255) / 255
    with bpy.data.temp_data() as blend_data:  # see read_raw
        block = blend_data.images.new("scenefit-save", width, height, alpha=channels == 4)
        block.pixels.foreach_set(rgba[::-1].ravel())
        block.filepath_raw = str(path)
        block.file_format = "PNG"
        block.save()
