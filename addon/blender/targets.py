"""Load target images into the colour pipeline and size of training renders.

Renders arrive as 8-bit display-referred sRGB ("Standard" view) at the training size (see render.py). Targets
are brought to exactly that: files are read raw through bpy (colour space "Non-Color", so Blender converts
nothing), 8/16-bit formats are taken as sRGB-encoded with straight alpha, EXR/HDR as linear with premultiplied
alpha. Cropping to the training aspect ratio, area resizing and compositing over black happen in linear light
(as a render at that size would integrate them), then the result is encoded to sRGB and rounded to 8 bits,
the same lattice renders live on.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ..engine.errors import TargetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".hdr", ".tga", ".bmp", ".tif", ".tiff", ".webp")
_LINEAR_SUFFIXES = (".exr", ".hdr")
_JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass
class TargetReport:
    """What :func:`load_targets` did: files loaded, files skipped and why, images cropped or resized."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    resized: list[str] = field(default_factory=list)

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
    pixels = _read_raw(path)
    linear = path.suffix.lower() in _LINEAR_SUFFIXES
    if not np.isfinite(pixels).all():
        raise TargetError(f"target image {path} contains NaN or infinite pixel values")
    height, width = pixels.shape[:2]
    if (width, height) != tuple(size):
        report.resized.append(str(path))
    report.loaded.append(str(path))
    return to_display(pixels, linear, size, channels)


def _read_raw(path: Path) -> np.ndarray:
    """The file's stored values as (H, W, 4) float32, row 0 at the top; Blender converts no colours."""
    if path.suffix.lower() in _JPEG_SUFFIXES and b"\xff\xd9" not in path.read_bytes()[-1024:]:
        raise TargetError(f"target image {path} is truncated (no JPEG end marker)")
    try:
        image = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as error:
        raise TargetError(f"target image {path} cannot be read: {error}") from None
    try:
        image.colorspace_settings.name = "Non-Color"
        width, height = image.size
        depth = image.channels
        if width == 0 or height == 0 or not image.has_data:
            raise TargetError(f"target image {path} cannot be read (corrupt, truncated or not an image)")
        flat = np.empty(width * height * depth, dtype=np.float32)
        image.pixels.foreach_get(flat)
    finally:
        bpy.data.images.remove(image)
    pixels = flat.reshape(height, width, depth)[::-1]
    if depth == 4:
        return np.ascontiguousarray(pixels)
    rgb = np.repeat(pixels[..., :1], 3, axis=2) if depth < 3 else pixels[..., :3]
    alpha = pixels[..., 1:2] if depth == 2 else np.ones((height, width, 1), np.float32)
    return np.concatenate([rgb, alpha], axis=2)


def to_display(pixels: np.ndarray, linear: bool, size: tuple[int, int], channels: int) -> np.ndarray:
    """Raw RGBA (H, W, 4) → the training pipeline: (size[1], size[0], channels) sRGB on the 8-bit lattice.

    ``linear``: values are scene-linear with premultiplied alpha (EXR); otherwise sRGB-encoded, straight alpha.
    With ``channels == 3`` the image is composited over black.
    """
    values = pixels.astype(np.float64)
    alpha = np.clip(values[..., 3:4], 0.0, 1.0)
    premultiplied = np.clip(values[..., :3], 0.0, None) if linear else srgb_to_linear(values[..., :3]) * alpha
    layers = _crop_and_resize(np.concatenate([premultiplied, alpha], axis=2), size)
    rgb, alpha = layers[..., :3], layers[..., 3:4]
    if channels == 4:
        rgb = np.divide(rgb, alpha, out=np.zeros_like(rgb), where=alpha > 0)
    display = linear_to_srgb(rgb)
    if channels == 4:
        display = np.concatenate([display, alpha], axis=2)
    return (np.round(display * 255.0) / 255.0).astype(np.float32)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """The "Standard" view transform on the sRGB display: clip to [0, 1], then the sRGB encoding."""
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _crop_and_resize(layers: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect ratio of ``size`` (width, height), then area-average to it."""
    height, width = layers.shape[:2]
    out_w, out_h = size
    if (width, height) == (out_w, out_h):
        return layers
    if width * out_h > height * out_w:  # too wide
        keep = max(1, round(height * out_w / out_h))
        left = (width - keep) // 2
        layers = layers[:, left : left + keep]
    elif width * out_h < height * out_w:  # too tall
        keep = max(1, round(width * out_h / out_w))
        top = (height - keep) // 2
        layers = layers[top : top + keep]
    rows = _area_weights(layers.shape[0], out_h)
    cols = _area_weights(layers.shape[1], out_w)
    return np.einsum("ij,jkc,lk->ilc", rows, layers, cols, optimize=True)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: each output pixel averages the input pixels it covers, by covered length."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    starts = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], starts[None] + 1) - np.maximum(edges[:-1, None], starts[None])
    weights = np.clip(overlap, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def save_image(image: np.ndarray, path: str | Path) -> None:
    """Write a display-referred (H, W, 3|4) float image in [0, 1] as an 8-bit PNG, values kept exactly (no colour
    conversion), so that :func:`load_targets` reads it back unchanged."""
    height, width, channels = image.shape
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :channels] = np.round(np.clip(image, 0.0, 1.0) * 255) / 255
    block = bpy.data.images.new("scenefit-save", width, height, alpha=channels == 4)
    try:
        block.pixels.foreach_set(rgba[::-1].ravel())
        block.filepath_raw = str(path)
        block.file_format = "PNG"
        block.save()
    finally:
        bpy.data.images.remove(block)
