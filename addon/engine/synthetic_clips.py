"""A numpy bouncing ball standing in for Blender's rigid-body simulation in the engine's clip tests.

:func:`bouncing_ball` drops a ball on a floor and returns a short clip (T, H, W, 3) float32 in [0, 1]. The
restitution sets how high each bounce goes (the rebound speed is ``restitution`` × the impact speed) and gravity
how fast everything happens, so both shape the trajectory the way they do in Blender: the first frames (free
fall) are the same for every restitution, the later ones tell restitutions apart. Deterministic; ~1 ms per clip
at 32 px.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .synthetic import _check_size, _compose, _coverage, _grid

FPS = 24.0
SUBSTEPS = 40  # integration steps per frame: bounce times are resolved to ~1 ms
RADIUS = 0.2  # m
DROP_HEIGHT = 2.0  # m, height of the ball's centre at t = 0
VIEW_HEIGHT = 2.3  # m, the image spans [0, VIEW_HEIGHT] vertically and as much horizontally
FLOOR_BAND = 0.12  # m of floor visible below the contact plane
_BALL_COLOUR = np.array([0.95, 0.55, 0.2])
_FLOOR_COLOUR = np.array([0.35, 0.4, 0.45])


def heights(restitution: float, gravity: float, times: np.ndarray) -> np.ndarray:
    """Height of the ball's centre at ``times`` (s, increasing), dropped from rest at DROP_HEIGHT at t = 0."""
    if not 0.0 <= restitution <= 1.0:
        raise ValueError(f"restitution must lie in [0, 1], got {restitution}")
    if gravity <= 0:
        raise ValueError(f"gravity must be > 0 (its magnitude, pointing down), got {gravity}")
    dt = 1.0 / (FPS * SUBSTEPS)
    z, v, t = DROP_HEIGHT, 0.0, 0.0
    out = np.empty(len(times))
    for i, target in enumerate(times):
        while t < target - 1e-12:
            step = min(dt, target - t)
            v -= gravity * step
            z += v * step
            if z < RADIUS and v < 0:
                # Reflect the part of the step spent below the floor (keeps the bounce height exact as dt → 0).
                z = RADIUS + restitution * (RADIUS - z)
                v = -restitution * v
            t += step
        out[i] = z
    return out


def bouncing_ball(
    values: Mapping[str, float], size: int = 32, frames: int = 8, start: int = 12, stride: int = 4
) -> np.ndarray:
    """Side view of a ball bouncing on a floor: frames ``start, start + stride, …`` at 24 fps, (T, H, W, 3).

    values: ``restitution`` in [0, 1]; optional ``gravity`` (m/s², magnitude, default 9.81).
    """
    _check_size(size)
    if frames < 1 or stride < 1 or start < 0:
        raise ValueError(f"need frames ≥ 1, stride ≥ 1 and start ≥ 0, got {frames}, {stride}, {start}")
    restitution = float(values["restitution"])
    gravity = float(values.get("gravity", 9.81))
    times = (start + stride * np.arange(frames)) / FPS
    zs = heights(restitution, gravity, times)
    x, y = _grid(size)
    # Image coordinates in [-1, 1] → metres: y = -1 is FLOOR_BAND below the floor, the ball falls along x = 0.
    scale = (VIEW_HEIGHT + FLOOR_BAND) / 2.0
    wy = (y + 1.0) * scale - FLOOR_BAND
    wx = x * scale
    floor = _coverage(-wy / scale, size)
    clip = []
    for z in zs:
        ball = _coverage((RADIUS - np.hypot(wx, wy - z)) / scale, size)
        colour = _FLOOR_COLOUR + ball[..., None] * (_BALL_COLOUR - _FLOOR_COLOUR)
        clip.append(_compose(np.maximum(ball, floor), colour, size))
    return np.stack(clip)
