"""The one image pipeline of renders and targets: display-referred 8-bit pixels at the training size.

Renders (read back from the file Blender writes) and target files both end here, so that they differ only by
what the scene's parameters change. Cropping to the training aspect ratio and area resizing happen in linear
light (as a render at that size would integrate them), then values are encoded back and rounded to 8 bits, the
lattice Blender's 8-bit output lives on. :func:`render_size` picks the size a training render is made at so that
it passes the same resize as the targets: a render at the training size has a sharper pixel filter and other
noise than a target rendered larger and shrunk, and a discriminator sees that difference first.

No bpy and no torch here (numpy only).
"""

from __future__ import annotations

import numpy as np

# A render is made at most this many times the training size per side: beyond 2× the area filter's result hardly
# changes while the render cost grows with the pixel count.
MAX_RENDER_SCALE = 2.0


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


def render_size(native: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) to render at for images that are ``native`` (the targets' own size) and trained at
    ``size``: ``native`` scaled down until its crop to the training aspect ratio is at most
    :data:`MAX_RENDER_SCALE` × ``size``, never below ``size`` itself. Targets no larger than ``size`` give
    ``size``'s aspect at ``size``'s scale: the crop then matches theirs too."""
    width, height = native
    out_w, out_h = size
    crop_w, crop_h = min(width, height * out_w / out_h), min(height, width * out_h / out_w)
    scale = max(out_w / crop_w, out_h / crop_h)  # the scale at which the crop is exactly ``size``
    scale = max(scale, min(1.0, MAX_RENDER_SCALE * scale))
    return max(out_w, round(width * scale)), max(out_h, round(height * scale))
