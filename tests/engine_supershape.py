"""What the engine tests of the optimizer share: the numpy supershape stand-in at 32 px, blendtorch's start
(m1, m2 ~ LogNormal(1.2 / 3.0, 0.4)) and 16 targets from its truth (LogNormal(2.25, 0.1) each)."""

from __future__ import annotations

import numpy as np
import torch

from addon.engine import synthetic
from addon.engine.distributions import LogNormal, ParameterSpace

SIZE = 32


def make_space() -> ParameterSpace:
    return ParameterSpace({"m1": LogNormal(1.2, 0.4), "m2": LogNormal(3.0, 0.4)})


def targets(n: int = 16) -> np.ndarray:
    truth = ParameterSpace({"m1": LogNormal(2.25, 0.1), "m2": LogNormal(2.25, 0.1)})
    raw = truth.sample(n, torch.Generator().manual_seed(7))
    return np.stack([synthetic.supershape(truth.decode(row), SIZE) for row in raw])


def render(samples) -> tuple[list[int], list[np.ndarray]]:
    """(ids, images) of asked samples, as ``tell`` takes them."""
    return [s.id for s in samples], [synthetic.supershape(s.values, SIZE) for s in samples]
