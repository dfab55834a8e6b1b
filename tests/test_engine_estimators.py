"""Score-function estimator: baselines, normalisation, entropy bonus, state, and that it actually optimises."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from addon.engine.distributions import Normal
from addon.engine.errors import ConfigError, TrainingError
from addon.engine.estimators import EstimatorConfig, ScoreFunctionEstimator

torch.set_num_threads(1)


def score(config: EstimatorConfig, *batches: tuple[list[float], list[float]], entropy: float = 0.0):
    """Feeds batches of (log_prob, rewards); returns the last loss, d loss / d log_prob and the estimator."""
    estimator = ScoreFunctionEstimator(config)
    for log_prob, rewards in batches:
        lp = torch.tensor(log_prob, requires_grad=True)
        loss = estimator.surrogate(lp, torch.tensor(rewards), torch.tensor(entropy))
    loss.backward()
    return loss, lp.grad, estimator


# --- config ----------------------------------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = EstimatorConfig(baseline="ema", ema_init=0.7, ema_new_weight=0.9, normalize_advantages=True)
    assert EstimatorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert EstimatorConfig.from_dict({}) == EstimatorConfig()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"baseline": "critic"}, "unknown baseline 'critic'"),
        ({"ema_new_weight": 0.0}, "ema_new_weight must be in (0, 1]"),
        ({"ema_new_weight": 1.5}, "ema_new_weight must be in (0, 1]"),
        ({"ema_init": math.nan}, "ema_init must be a finite number"),
        ({"entropy_weight": -0.1}, "entropy_weight must be >= 0"),
        ({"min_scale": "small"}, "min_scale must be a finite number"),
        ({"normalize_advantages": 1}, "normalize_advantages must be true or false"),
        ({"baselin": "ema"}, "unknown setting(s) ['baselin']"),
    ],
)
def test_bad_config_raises_a_config_error_naming_the_setting(settings, message):
    with pytest.raises(ConfigError) as error:
        EstimatorConfig.from_dict(settings)
    assert message in str(error.value)


def test_config_from_non_mapping_is_rejected():
    with pytest.raises(ConfigError, match="must be a mapping"):
        EstimatorConfig.from_dict(["ema"])


# --- baselines -------------------------------------------------------------------------------------------------


def test_ema_baseline_starts_at_first_batch_mean_then_follows_the_update_rule():
    first = ([-1.0, -2.0, -0.5], [1.0, 2.0, 6.0])
    second = ([-0.3, -1.1, -2.0], [4.0, 0.0, 5.0])
    config = EstimatorConfig(baseline="ema", ema_new_weight=0.9)

    loss, grad, estimator = score(config, first)
    assert estimator.baseline == pytest.approx(3.0)
    advantages = torch.tensor(first[1]) - 3.0
    assert loss.item() == pytest.approx(-(advantages * torch.tensor(first[0])).mean().item())
    torch.testing.assert_close(grad, -advantages / 3)

    loss, grad, estimator = score(config, first, second)
    torch.testing.assert_close(grad, -(torch.tensor(second[1]) - 3.0) / 3)
    assert estimator.baseline == pytest.approx(0.9 * 3.0 + 0.1 * 3.0)


def test_ema_baseline_with_explicit_init_is_used_before_it_is_updated():
    config = EstimatorConfig(baseline="ema", ema_init=0.7, ema_new_weight=0.9)
    rewards = [0.2, 0.4, 0.9, 0.1]
    _, grad, estimator = score(config, ([0.0] * 4, rewards))
    torch.testing.assert_close(grad, -(torch.tensor(rewards) - 0.7) / 4)
    assert estimator.baseline == pytest.approx(0.9 * 0.4 + 0.1 * 0.7)
    _, grad, estimator = score(config, ([0.0] * 4, rewards), ([0.0] * 4, [1.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(grad, -(torch.ones(4) - (0.9 * 0.4 + 0.1 * 0.7)) / 4)
    assert estimator.baseline == pytest.approx(0.9 * 1.0 + 0.1 * (0.9 * 0.4 + 0.1 * 0.7))


def test_leave_one_out_baseline_is_the_mean_of_the_other_rewards():
    rewards = [1.0, 2.0, 6.0, 3.0]
    _, grad, estimator = score(EstimatorConfig(baseline="loo"), ([0.0] * 4, rewards))
    others = torch.tensor([(11.0 / 3), 10.0 / 3, 6.0 / 3, 9.0 / 3])
    torch.testing.assert_close(grad, -(torch.tensor(rewards) - others) / 4)
    assert estimator.baseline is None


def test_no_baseline_uses_raw_rewards_and_normalisation_scales_advantages():
    rewards = [1.0, 2.0, 6.0, 3.0]
    _, grad, _ = score(EstimatorConfig(baseline="none"), ([0.0] * 4, rewards))
    torch.testing.assert_close(grad, -torch.tensor(rewards) / 4)
    _, grad, _ = score(EstimatorConfig(baseline="none", normalize_advantages=True), ([0.0] * 4, rewards))
    r = torch.tensor(rewards)
    torch.testing.assert_close(grad, -(r / (r.std(correction=0) + 1e-8)) / 4)


def test_equal_rewards_with_normalisation_give_zero_not_nan():
    _, grad, _ = score(EstimatorConfig(baseline="loo", normalize_advantages=True), ([0.1, 0.2], [0.5, 0.5]))
    assert torch.equal(grad, torch.zeros(2))


def test_equal_rewards_give_no_step_even_when_rounding_leaves_a_residue():
    """Eight equal float32 rewards: the leave-one-out baseline leaves rounding residue (~1e-7) that normalising
    blew up to a full-size step on no information (every advantage −23.8)."""
    for value in (3.7, 0.1, -12.25):
        rewards = [value] * 8
        _, grad, _ = score(
            EstimatorConfig(baseline="loo", normalize_advantages=True), ([0.1 * i for i in range(8)], rewards)
        )
        assert torch.equal(grad, torch.zeros(8)), (value, grad)
    _, grad, _ = score(EstimatorConfig(baseline="loo", normalize_advantages=True), ([0.0] * 4, [3.7, 3.7, 3.7, 3.8]))
    assert grad.abs().max() > 0.1  # a real difference still counts, however small the rewards' spread


def test_entropy_bonus_is_subtracted_from_the_loss():
    estimator = ScoreFunctionEstimator(EstimatorConfig(baseline="none", entropy_weight=0.25))
    entropy = torch.tensor(1.3, requires_grad=True)
    loss = estimator.surrogate(torch.zeros(3), torch.zeros(3), entropy)
    loss.backward()
    assert loss.item() == pytest.approx(-0.25 * 1.3) and entropy.grad.item() == pytest.approx(-0.25)


# --- bad input and state ---------------------------------------------------------------------------------------


def test_non_finite_input_raises_and_leaves_the_baseline_alone():
    estimator = ScoreFunctionEstimator(EstimatorConfig(baseline="ema", ema_init=0.5))
    with pytest.raises(TrainingError, match="rewards contain NaN"):
        estimator.surrogate(torch.zeros(2), torch.tensor([1.0, math.nan]), torch.tensor(0.0))
    with pytest.raises(TrainingError, match="loss is"):
        estimator.surrogate(torch.tensor([0.0, -math.inf]), torch.tensor([1.0, 2.0]), torch.tensor(0.0))
    assert estimator.baseline == 0.5
    with pytest.raises(TrainingError, match="shape"):
        estimator.surrogate(torch.zeros(3), torch.zeros(2), torch.tensor(0.0))
    with pytest.raises(TrainingError, match="at least 2 samples"):
        ScoreFunctionEstimator(EstimatorConfig(baseline="loo")).surrogate(
            torch.zeros(1), torch.zeros(1), torch.tensor(0.0)
        )


def test_state_survives_a_weights_only_checkpoint():
    config = EstimatorConfig(baseline="ema", ema_new_weight=0.5)
    _, _, estimator = score(config, ([0.0, 0.0], [1.0, 3.0]), ([0.0, 0.0], [5.0, 5.0]))
    buffer = io.BytesIO()
    torch.save(estimator.state_dict(), buffer)
    buffer.seek(0)
    resumed = ScoreFunctionEstimator(config)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.baseline == estimator.baseline == pytest.approx(0.5 * 5.0 + 0.5 * 2.0)
    batch = (torch.tensor([0.1, -0.2]), torch.tensor([2.0, 4.0]), torch.tensor(0.0))
    assert resumed.surrogate(*batch).item() == estimator.surrogate(*batch).item()
    assert resumed.baseline == estimator.baseline
    with pytest.raises(TrainingError, match="baseline must be a finite number"):
        resumed.load_state_dict({"baseline": math.nan})
    with pytest.raises(TrainingError, match="estimator state"):
        resumed.load_state_dict({"mean": 1.0})


# --- it optimises ----------------------------------------------------------------------------------------------


def reward(x: torch.Tensor) -> torch.Tensor:
    return -((x - 3.0) ** 2)


@pytest.mark.parametrize(
    "config",
    [
        EstimatorConfig(baseline="loo"),
        EstimatorConfig(baseline="ema"),
        EstimatorConfig(baseline="loo", normalize_advantages=True, entropy_weight=0.01),
    ],
    ids=["loo", "ema", "loo-normalised-entropy"],
)
def test_reinforce_moves_a_normal_to_the_reward_maximum(config):
    config.min_scale = 0.05
    dist, generator = Normal(0.0, 1.0), torch.Generator().manual_seed(0)
    estimator = ScoreFunctionEstimator(config)
    optimizer = torch.optim.Adam(dist.learnable(), lr=0.05)
    for _ in range(300):
        x = dist.sample(32, generator)
        optimizer.zero_grad()
        estimator.surrogate(dist.log_prob(x), reward(x), dist.entropy()).backward()
        optimizer.step()
        dist.project_(config.min_scale)
    assert dist.values()["mu"] == pytest.approx(3.0, abs=0.2)
    assert dist.values()["sigma"] >= 0.05


def test_leave_one_out_lowers_gradient_variance_without_bias():
    dist, generator = Normal(0.0, 1.0), torch.Generator().manual_seed(1)
    batches = [dist.sample(16, generator) for _ in range(400)]
    grads = {}
    for kind in ("none", "loo"):
        estimator, mu_grads = ScoreFunctionEstimator(EstimatorConfig(baseline=kind)), []
        for x in batches:
            (mu_grad,) = torch.autograd.grad(estimator.surrogate(dist.log_prob(x), reward(x), dist.entropy()), dist.mu)
            mu_grads.append(mu_grad)
        grads[kind] = torch.stack(mu_grads)
    # d/dmu E[-(x-3)^2] = -2(mu - 3) = 6, so the loss gradient is -6 on average.
    for kind, g in grads.items():
        assert g.mean().item() == pytest.approx(-6.0, abs=4 * g.std().item() / math.sqrt(len(g))), kind
    # Per-sample variances in closed form: 222 without a baseline, 82 with b = E[r] = -10; LOO comes close to that.
    assert grads["loo"].var().item() < 0.6 * grads["none"].var().item()


# --- per-property baseline ----------------------------------------------------------------------------------------


def test_the_per_property_baseline_of_one_property_is_the_leave_one_out_baseline():
    rewards = torch.tensor([0.3, -1.2, 2.5, 0.7, 0.1])
    log_prob = torch.tensor([[-0.5], [-1.0], [-0.2], [-2.0], [-0.9]], requires_grad=True)
    features = [torch.randn(5, 2, generator=torch.Generator().manual_seed(0))]
    for normalize in (False, True):
        per_property = ScoreFunctionEstimator(EstimatorConfig(baseline="per-property", normalize_advantages=normalize))
        loo = ScoreFunctionEstimator(EstimatorConfig(baseline="loo", normalize_advantages=normalize))
        assert per_property.surrogate(log_prob, rewards, torch.tensor(0.0), features) == loo.surrogate(
            log_prob, rewards, torch.tensor(0.0)
        )


def test_the_per_property_baseline_needs_one_feature_block_per_property():
    estimator = ScoreFunctionEstimator(EstimatorConfig(baseline="per-property"))
    with pytest.raises(TrainingError, match="D feature blocks"):
        estimator.surrogate(torch.zeros(4, 2), torch.arange(4.0), torch.tensor(0.0), [torch.zeros(4, 2)])


def test_the_per_property_baseline_keeps_the_gradient_and_removes_what_the_other_property_explains():
    """Two Normal properties; the reward is mostly the first's (5·z_a²) and a little the second's (0.3·z_b). The
    gradient for the second's μ stays unbiased (its mean agrees with leave-one-out's, 0.3) and its spread over
    batches falls to under 0.4× (0.31×: the ridge leaves a little of the first's part), since the first's draw no
    longer adds to it."""
    generator = torch.Generator().manual_seed(5)
    gradients: dict[str, list[float]] = {"loo": [], "per-property": []}
    for _ in range(3000):
        z = torch.randn(16, 2, generator=generator)
        rewards = 5 * z[:, 0] ** 2 + 0.3 * z[:, 1]
        mu_b = torch.zeros((), requires_grad=True)
        log_prob = torch.stack([-0.5 * z[:, 0] ** 2, -0.5 * (z[:, 1] - mu_b) ** 2], dim=1)  # σ = 1, x_b = z_b
        features = [torch.stack([z[:, 0], z[:, 0] ** 2 - 1], dim=1), torch.stack([z[:, 1], z[:, 1] ** 2 - 1], dim=1)]
        for kind, grads in gradients.items():
            loss = ScoreFunctionEstimator(EstimatorConfig(baseline=kind)).surrogate(
                log_prob, rewards, torch.tensor(0.0), features
            )
            (grad,) = torch.autograd.grad(-loss, mu_b, retain_graph=True)
            grads.append(grad.item())
    loo, per_property = torch.tensor(gradients["loo"]), torch.tensor(gradients["per-property"])
    assert abs(loo.mean() - 0.3) < 0.1 and abs(per_property.mean() - 0.3) < 0.03
    assert per_property.std() < 0.4 * loo.std()  # 0.56 against 1.79
