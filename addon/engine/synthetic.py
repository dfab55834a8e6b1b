"""Small numpy renderers standing in for Blender in the engine's tests.

Each renderer maps a dict of scene values to an (H, W, 3) float32 image in [0, 1], deterministically, in well
under a millisecond at 32 px, so recovery can be tested in seconds. Edges are anti-aliased (soft coverage
and 2x supersampling) so that images change smoothly with continuous values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_SUPERSAMPLE = 2
_BACKGROUND = np.array([0.08, 0.08, 0.10], dtype=np.float32)
# Maximum of the superformula with a = b = 1, n1 = n2 = n3 = 3 (reached at odd multiples of π/m).
_SUPERFORMULA_PEAK = 2.0 ** (1.0 / 6.0)


def superformula(phi: np.ndarray, m: float, n1: float = 3.0, n2: float = 3.0, n3: float = 3.0) -> np.ndarray:
    """Gielis' superformula r(φ) = (|cos(mφ/4)|^n2 + |sin(mφ/4)|^n3)^(-1/n1) with a = b = 1 (blendtorch's shapes)."""
    t = m * phi / 4.0
    return (np.abs(np.cos(t)) ** n2 + np.abs(np.sin(t)) ** n3) ** (-1.0 / n1)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates in [-1, 1], y pointing up."""
    n = size * _SUPERSAMPLE
    c = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)
    return x, y


def _coverage(signed_distance: np.ndarray, size: int) -> np.ndarray:
    """Soft inside-ness from a signed distance in image units (positive inside), about one output pixel wide."""
    pixel = 2.0 / size
    return np.clip(0.5 + signed_distance / pixel, 0.0, 1.0)


def _compose(coverage: np.ndarray, colour: np.ndarray, size: int) -> np.ndarray:
    """Blend a (supersampled) foreground over the background and box-filter down to size × size."""
    image = _BACKGROUND + coverage[..., None] * (colour - _BACKGROUND)
    image = image.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _check_size(size: int) -> None:
    if size < 8:
        raise ValueError(f"synthetic image size must be at least 8 px, got {size}")


def supershape(values: Mapping[str, float], size: int = 32) -> np.ndarray:
    """Top view of a shaded 2D supershape: the outline follows m1, concentric shading rings follow m2.

    Like looking down the z axis of blendtorch's 3D supershape (spherical product of two superformulas): the
    equator's outline is r(θ; m1) and the latitude profile r(φ; m2) shows as ridges in the shading, with
    φ running linearly from the rim (equator) to the centre (pole). The superformula's modulation (only 12 %
    with n = 3) is stretched to a visible depth, so m1 in exp(1.2)…exp(3.0) ≈ 3.3…20 sets the number of lobes of
    the outline and m2 the number of rings (m2/4 ridge periods from rim to centre), both smoothly.
    """
    _check_size(size)
    m1, m2 = float(values["m1"]), float(values["m2"])
    x, y = _grid(size)
    rho = np.hypot(x, y)
    theta = np.arctan2(y, x)
    lobes = (superformula(theta, m1) - 1.0) / (_SUPERFORMULA_PEAK - 1.0)  # in [0, 1]
    outline = 0.62 + 0.26 * lobes
    s = rho / outline  # 0 at the pole, 1 on the rim
    latitude = np.clip(1.0 - s, 0.0, 1.0) * (np.pi / 2.0)
    ridges = (superformula(latitude, m2) - 1.0) / (_SUPERFORMULA_PEAK - 1.0)
    brightness = 0.35 + 0.6 * ridges
    colour = np.stack([brightness, 0.55 + 0.4 * ridges, 0.9 - 0.3 * ridges], axis=-1)
    return _compose(_coverage(outline - rho, size), colour, size)


def _polygon_distance(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance (positive inside) to a convex polygon with counter-clockwise vertices."""
    distance = np.full(x.shape, np.inf)
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        ex, ey = bx - ax, by - ay
        length = np.hypot(ex, ey)
        # Inward normal of a counter-clockwise edge is (-ey, ex).
        distance = np.minimum(distance, ((x - ax) * -ey + (y - ay) * ex) / length)
    return distance


def arrow(values: Mapping[str, float], size: int = 32) -> np.ndarray:
    """An elongated triangle pointing along the yaw angle (radians, counter-clockwise from +x), plus a dot at its tip.

    The dot and the triangle's asymmetry make every yaw in (-π, π] distinct; the image is 2π-periodic in yaw.
    """
    _check_size(size)
    yaw = float(values["yaw"])
    x, y = _grid(size)
    c, s = np.cos(yaw), np.sin(yaw)
    u, v = c * x + s * y, -s * x + c * y  # coordinates in the arrow's frame
    body = np.array([[0.75, 0.0], [-0.55, 0.3], [-0.55, -0.3]])
    inside = _coverage(_polygon_distance(u, v, body), size)
    tip = _coverage(0.12 - np.hypot(u - 0.75, v), size)
    colour = np.array([0.95, 0.75, 0.2]) + tip[..., None] * (np.array([0.2, 0.6, 1.0]) - np.array([0.95, 0.75, 0.2]))
    return _compose(np.maximum(inside, tip), colour, size)


def _regular_polygon(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


SHAPE_NAMES = ("disk", "square", "triangle", "cross")


def shape_choice(values: Mapping[str, float], size: int = 32) -> np.ndarray:
    """One of ``SHAPE_NAMES`` chosen by ``values["shape"]`` (index 0…3), each in its own colour."""
    _check_size(size)
    index = int(values["shape"])
    if not 0 <= index < len(SHAPE_NAMES):
        raise ValueError(f"shape index must be in 0..{len(SHAPE_NAMES) - 1}, got {values['shape']!r}")
    x, y = _grid(size)
    name = SHAPE_NAMES[index]
    if name == "disk":
        distance = 0.6 - np.hypot(x, y)
    elif name == "square":
        distance = _polygon_distance(x, y, _regular_polygon(4, 0.75, np.pi / 4.0))
    elif name == "triangle":
        distance = _polygon_distance(x, y, _regular_polygon(3, 0.75, np.pi / 2.0))
    else:
        bar_x = np.minimum(0.7 - np.abs(x), 0.2 - np.abs(y))
        bar_y = np.minimum(0.2 - np.abs(x), 0.7 - np.abs(y))
        distance = np.maximum(bar_x, bar_y)
    colours = {
        "disk": (0.9, 0.3, 0.3),
        "square": (0.3, 0.85, 0.4),
        "triangle": (0.35, 0.45, 0.95),
        "cross": (0.95, 0.9, 0.35),
    }
    return _compose(_coverage(distance, size), np.array(colours[name]), size)
