"""param_average: the learned distribution is a bias-corrected running average of the parameters (Polyak
averaging); samples still come from the current parameters; the average survives checkpoints and failed tells."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from addon.engine import synthetic
from addon.engine.distributions import LogNormal, ParameterSpace
from addon.engine.errors import ConfigError, TrainingError
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig

SIZE = 32

torch.set_num_threads(1)


def targets() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack(
        [synthetic.supershape({"m1": m1, "m2": m2}, SIZE) for m1, m2 in np.exp(rng.normal(2.25, 0.1, (16, 2)))]
    )


def optimizer(**overrides) -> AskTellOptimizer:
    space = ParameterSpace({"m1": LogNormal(1.2, 0.4), "m2": LogNormal(3.0, 0.4)})
    return AskTellOptimizer(space, targets(), OptimizerConfig.default(batch_size=8, **overrides))


def tell(opt: AskTellOptimizer):
    samples = opt.ask()
    return opt.tell([s.id for s in samples], [synthetic.supershape(s.values, SIZE) for s in samples])


def test_values_are_the_running_average_of_the_parameters():
    opt = optimizer(param_average=0.75)
    assert opt.values() == opt.space.values()
    expected = {label: np.array([mu, math.log(0.4)]) for label, mu in (("m1", 1.2), ("m2", 3.0))}
    for k in range(1, 5):
        stats = tell(opt)
        for label, dist in opt.space.distributions.items():
            current = np.array([t.item() for t in dist.learnable()])
            # Bias-corrected: the first step's average is that step's parameters, not pulled toward the start.
            expected[label] += (current - expected[label]) * 0.25 / (1 - 0.75**k)
            assert stats.values[label]["mu"] == pytest.approx(expected[label][0], abs=1e-5)
            assert stats.values[label]["sigma"] == pytest.approx(math.exp(expected[label][1]), rel=1e-5)
    assert opt.values() == stats.values == opt.history[-1]["values"] != opt.space.values()


def test_without_averaging_the_values_are_the_current_parameters():
    opt = optimizer(param_average=None)
    stats = tell(opt)
    assert stats.values == opt.values() == opt.space.values()


def test_the_adversarial_default_averages():
    assert OptimizerConfig.default(objective="adversarial").param_average == 0.9
    assert OptimizerConfig.default().param_average is None  # the energy distance plays no game to smooth
    assert OptimizerConfig.blendtorch().param_average is None  # blendtorch reports its current parameters


@pytest.mark.parametrize("value", [1.0, -0.1, "0.9", float("nan")])
def test_bad_averages_are_refused(value):
    with pytest.raises(ConfigError, match="param_average"):
        OptimizerConfig.default(param_average=value)


def test_a_checkpoint_keeps_the_average(tmp_path):
    uninterrupted, first = optimizer(), optimizer()
    for _ in range(3):
        tell(uninterrupted)
        tell(first)
    first.save_checkpoint(tmp_path / "c.pt")
    resumed = AskTellOptimizer.load_checkpoint(tmp_path / "c.pt", targets())
    assert resumed.values() == first.values()
    assert tell(resumed).values == tell(uninterrupted).values


def test_a_failed_tell_leaves_the_average_as_it_was(monkeypatch):
    opt = optimizer()
    tell(opt)
    before = opt.values()

    def poison(_min_scale):
        opt.space.learnable()[0].data.fill_(float("nan"))

    monkeypatch.setattr(opt.space, "project_", poison)
    with pytest.raises(TrainingError):
        tell(opt)
    assert opt.values() == before
