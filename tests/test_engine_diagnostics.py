"""Saturation: detected from the history, said in words, and the discriminator paused while it wins."""

from __future__ import annotations

import numpy as np
import pytest

from addon.engine import diagnostics, synthetic
from addon.engine.distributions import Normal, ParameterSpace
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig

WINDOW = diagnostics.SATURATION_WINDOW


def entries(gaps: list[float]) -> list[dict]:
    return [{"d_real": 0.5 + gap / 2, "d_sim": 0.5 - gap / 2} for gap in gaps]


def test_saturated_only_after_a_whole_window_of_won_steps():
    won = [0.99] * WINDOW
    assert diagnostics.saturated(entries(won), "adversarial")
    assert not diagnostics.saturated(entries(won[1:]), "adversarial")  # one step short of the window
    assert not diagnostics.saturated(entries([*won[:-1], 0.5]), "adversarial")  # the last step was contested
    assert diagnostics.saturated(entries([0.1, *won]), "adversarial")  # only the last window counts
    assert not diagnostics.saturated(entries(won), "wgan-gp")  # critic scores are not probabilities
    assert not diagnostics.saturated([{"d_real": None, "d_sim": None}] * WINDOW, "mmd")


def test_energy_is_saturated_when_its_separation_stays_high_and_does_not_fall():
    def history(separations: list[float]) -> list[dict]:
        return [{"objective_stats": {"separation": s}} for s in separations]

    stuck = [0.9] * WINDOW
    assert diagnostics.saturated(history(stuck), "energy")
    assert not diagnostics.saturated(history(stuck[1:]), "energy")  # one step short of the window
    assert diagnostics.saturated(history(list(np.linspace(0.94, 0.92, WINDOW))), "energy")  # white targets' drift
    # A far start: as high at first, but falling (the independent light-and-colour scene: 0.92 → 0.38–0.85).
    assert not diagnostics.saturated(history(list(np.linspace(0.95, 0.72, WINDOW))), "energy")
    assert not diagnostics.saturated(history([*stuck[:-1], 0.5]), "energy")
    assert not diagnostics.saturated(history(stuck), "adversarial")  # no d_real/d_sim


@pytest.mark.parametrize("objective", ["energy", "adversarial"])
def test_the_warning_names_what_to_check(objective):
    for setting in ("engine", "samples", "resolution", "colour management"):
        assert setting in diagnostics.saturation_warning(objective)


def test_a_discriminator_that_wins_a_whole_window_stops_training_until_the_gap_closes(one_thread):
    """Targets no parameter can reach (a different picture altogether): D wins, is paused once it has won for a
    window, and the history says so."""
    size = 16
    targets = np.zeros((8, size, size, 3), np.float32)
    targets[:, : size // 2] = 1.0  # half white: no arrow looks like this
    space = ParameterSpace({"yaw": Normal(0.0, 0.3)})
    optimizer = AskTellOptimizer(
        space, targets, OptimizerConfig.default(objective="adversarial", batch_size=4, d_lr=2e-3)
    )
    for _ in range(WINDOW + 10):
        samples = optimizer.ask()
        optimizer.tell([s.id for s in samples], [synthetic.arrow(s.values, size) for s in samples])
    history = optimizer.history
    first = next(i for i in range(len(history)) if diagnostics.saturated(history[: i + 1], "adversarial"))
    assert all(entry["d_updates"] == 1 for entry in history[: first + 1])
    assert all(entry["d_updates"] == 0 for entry in history[first + 1 :])  # still winning: still paused
    assert diagnostics.saturated(history, "adversarial")
