"""Recovery of known distributions through the ask/tell optimizer on the numpy renderers (no Blender).

Targets are rendered from a known "true" distribution; the optimizer starts elsewhere and must end close to it.
Each test takes a few seconds on one core (single torch thread, 32 px images).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from addon.engine import synthetic
from addon.engine.distributions import Categorical, LogNormal, Normal, ParameterSpace, TruncatedNormal
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig
from addon.engine.presets import recommended_steps

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def render_targets(truth: ParameterSpace, n: int, render: Callable, seed: int) -> np.ndarray:
    raw = truth.sample(n, torch.Generator().manual_seed(seed))
    return np.stack([render(truth.decode(row), SIZE) for row in raw])


def optimise(optimizer: AskTellOptimizer, render: Callable, renders: int) -> list[dict]:
    """Ask, render, tell until ``renders`` images were used; returns the values after each step."""
    trace = []
    while optimizer.renders < renders:
        samples = optimizer.ask()
        optimizer.tell([s.id for s in samples], [render(s.values, SIZE) for s in samples])
        trace.append(optimizer.space.values())
    return trace


def test_supershape_lognormal_m1_m2_recovered_with_the_adversarial_default():
    """The supershape presets' objective (blendtorch's experiment): the stand-in's m2 shows only as thin shading
    rings, which a discriminator picks out and pixel distances barely see."""
    truth = ParameterSpace({"m1": LogNormal(2.25, 0.1), "m2": LogNormal(2.25, 0.1)})
    targets = render_targets(truth, 64, synthetic.supershape, seed=1000)
    sigmas = {"m1": [], "m2": []}
    for seed in range(3):
        space = ParameterSpace({"m1": LogNormal(1.2, 0.4), "m2": LogNormal(3.0, 0.4)})
        optimizer = AskTellOptimizer(space, targets, OptimizerConfig.default(objective="adversarial", seed=seed))

        trace = optimise(optimizer, synthetic.supershape, renders=1200)

        values = trace[-1]
        error = max(abs(values["m1"]["mu"] - 2.25), abs(values["m2"]["mu"] - 2.25))
        assert error < 0.15, (seed, values)
        # It got there by moving, not by starting there: the start was 1.05 away in m1.
        assert abs(trace[0]["m1"]["mu"] - 2.25) > 0.8
        for label in sigmas:
            sigmas[label].append(values[label]["sigma"])
    # The spread is learned too (reverse-KL reward): from 0.4 towards 0.1, not collapsed onto the σ floor — in the
    # median run (one seed in four of this 32 px stand-in still ends at σ ≈ 0.3 in m1 after 1200 renders).
    for values in sigmas.values():
        assert 0.03 < float(np.median(values)) < 0.25, sigmas


def test_a_yaw_far_from_the_targets_is_recovered_with_the_default_energy_distance():
    """From 1.2 rad away (the arrow points the other way) to μ within 0.1 and σ within 35 % in every seed."""
    truth = ParameterSpace({"yaw": Normal(1.2, 0.15)})
    targets = render_targets(truth, 32, synthetic.arrow, seed=2100)
    for seed in range(3):
        optimizer = AskTellOptimizer(
            ParameterSpace({"yaw": Normal(0.0, 0.15)}), targets, OptimizerConfig.default(batch_size=8, seed=seed)
        )
        values = optimise(optimizer, synthetic.arrow, renders=640)[-1]["yaw"]
        assert abs(values["mu"] - 1.2) < 0.1, (seed, values)
        assert 0.65 < values["sigma"] / 0.15 < 1.35, (seed, values)


def test_yaw_normal_recovered_with_mmd():
    truth = ParameterSpace({"yaw": Normal(0.9, 0.1)})
    targets = render_targets(truth, 64, synthetic.arrow, seed=2000)
    space = ParameterSpace({"yaw": Normal(0.0, 0.5)})
    config = OptimizerConfig.default(objective="mmd", d_steps=0, seed=0)
    optimizer = AskTellOptimizer(space, targets, config)

    values = optimise(optimizer, synthetic.arrow, renders=800)[-1]["yaw"]

    assert abs(values["mu"] - 0.9) < math.radians(5), values
    assert 0.05 < values["sigma"] < 0.2, values


def test_categorical_shape_recovered_with_wgan_gp():
    p_true = np.array([0.6, 0.3, 0.1, 0.0])
    # Exactly these proportions among the targets: a random draw of 40 would itself be up to ~0.1 (TV) off p*.
    counts = (p_true * 40).round().astype(int)
    targets = np.stack(
        [synthetic.shape_choice({"shape": k}, SIZE) for k, count in enumerate(counts) for _ in range(count)]
    )
    space = ParameterSpace({"shape": Categorical([0.25] * 4)})
    # The Wasserstein critic pushes probabilities with a near-constant force (it does not flatten as p → p*), so
    # discrete choices need smaller steps than the default to settle instead of circling.
    config = OptimizerConfig.default(objective="wgan-gp", param_lr=0.05, param_lr_half_life=20, seed=0)
    optimizer = AskTellOptimizer(space, targets, config)

    probs = np.array(optimise(optimizer, synthetic.shape_choice, renders=960)[-1]["shape"]["probs"])

    tv = 0.5 * np.abs(probs - p_true).sum()
    assert tv < 0.15, probs  # the uniform start is at TV 0.35


def lit_ball(values: dict, size: int) -> np.ndarray:
    """A ball on a floor under a sun: the strength lights every pixel, the ball's red channel only its own — the
    independent suite's light_and_colour scene in small, where the strength dwarfs the red in the image."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    ball = (xx - 0.5) ** 2 + (yy - 0.55) ** 2 < 0.25**2
    light = 1 - np.exp(-0.35 * values["strength"])
    image = np.full((size, size, 3), 0.6 * light, np.float32)
    image[ball] = light * np.array([values["red"], 0.3, 0.15])
    return image


def test_a_property_that_changes_the_image_little_beside_another_learns_its_spread_with_the_defaults():
    """Sun strength and base-colour red learned together, with the defaults and the recommended steps (150 for two
    properties): both μ inside their tolerance in every seed, the red's σ within 25 % in the median. With the
    leave-one-out baseline and 100 steps (before) the red's σ ended 1.13 / 1.63 / 1.52 × the truth."""

    def space(strength: tuple[float, float], red: tuple[float, float]) -> ParameterSpace:
        return ParameterSpace(
            {"strength": TruncatedNormal(*strength, 0.0, 20.0), "red": TruncatedNormal(*red, 0.0, 1.0)}
        )

    truth = space((3.0, 0.2), (0.75, 0.05))
    targets = render_targets(truth, 64, lit_ball, seed=7)
    steps = recommended_steps(2)
    red_ratios = []
    for seed in range(3):
        optimizer = AskTellOptimizer(space((1.0, 0.1), (0.2, 0.05)), targets, OptimizerConfig.default(seed=seed))
        pending = optimizer.ask()  # told one batch late, as the Session does
        for _ in range(steps):
            batch, pending = pending, optimizer.ask()
            optimizer.tell([s.id for s in batch], [lit_ball(s.values, SIZE) for s in batch])
        values = optimizer.values()
        assert abs(values["strength"]["mean"] - 3.0) < 0.2 and abs(values["red"]["mean"] - 0.75) < 0.05, (seed, values)
        red_ratios.append(values["red"]["std"] / 0.05)
    assert 0.75 < float(np.median(red_ratios)) < 1.25, red_ratios
