"""Objectives and their networks: shapes, learning signal, rewards, checkpoints, determinism, bad input."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from addon.engine.errors import ConfigError, FeatureExtractorError, TargetError
from addon.engine.networks import Discriminator, load_feature_extractor
from addon.engine.objectives import ObjectiveConfig, make_objective

torch.set_num_threads(1)
# TorchScript is what user feature extractors are saved as; torch 2.13 deprecates scripting/saving it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

SMALL = ObjectiveConfig(base_width=16)


def shapes(yaws: torch.Tensor, size: int = 32, height: int | None = None) -> torch.Tensor:
    """An elongated blob with a knob at one end, turned by each yaw: (n, 3, H, W) in [-1, 1]."""
    height = height or size
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(size) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    c, s = torch.cos(yaws)[:, None, None], torch.sin(yaws)[:, None, None]
    u, v = c * x + s * y, -s * x + c * y
    inside = torch.minimum((u / 0.7) ** 2 + (v / 0.25) ** 2, ((u - 0.6) ** 2 + v**2) / 0.2**2)
    alpha = torch.sigmoid((1 - inside) * 8)
    image = torch.stack([0.3 + 0.6 * alpha, 0.3 + 0.1 * alpha, 0.3 - 0.1 * alpha], dim=1)
    return image * 2 - 1


def yaws(n: int, mean: float, seed: int, std: float = 0.1) -> torch.Tensor:
    return mean + std * torch.randn(n, generator=torch.Generator().manual_seed(seed))


TARGETS = shapes(yaws(48, 0.3, seed=1))
OTHERS = shapes(yaws(48, 1.8, seed=2))


def objective(name: str, config: ObjectiveConfig = SMALL, seed: int = 0, targets: torch.Tensor = TARGETS):
    return make_objective(name, targets, config, torch.Generator().manual_seed(seed))


def train(obj, steps: int, batch: int = 16, seed: int = 3) -> dict[str, float]:
    """``steps`` updates on fresh batches of the 'other' shapes; returns the last stats."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        stats = obj.update(OTHERS[torch.randperm(len(OTHERS), generator=g)[:batch]])
    return stats


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative."""
    return (positive[:, None] > negative[None, :]).float().mean().item()


# --- networks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("height,width", [(32, 32), (64, 64), (128, 128), (256, 256), (48, 80), (100, 37), (16, 16)])
def test_discriminator_output_shape(norm, channels, height, width):
    net = Discriminator(channels, height, width, base_width=8, norm=norm)
    net.reset_parameters(torch.Generator().manual_seed(0))
    logits = net(torch.rand(3, channels, height, width) * 2 - 1)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()


def test_discriminator_matches_blendtorch_layout_at_64px():
    net = Discriminator(3, 64, 64)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (4, 4), (2, 2)),
        (32, 64, (4, 4), (2, 2)),
        (64, 128, (4, 4), (2, 2)),
        (128, 256, (4, 4), (2, 2)),
        (256, 1, (4, 4), (1, 1)),
    ]
    net.reset_parameters(torch.Generator().manual_seed(0))
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("args", [(2, 32, 32), (3, 15, 64), (5, 64, 64)])
def test_discriminator_rejects_unusable_images(args):
    with pytest.raises(ValueError):
        Discriminator(*args)


# --- adversarial ---------------------------------------------------------------------------------------------


def test_adversarial_discriminator_learns_to_separate_and_rewards_rank_targets():
    obj = objective("adversarial")
    before = obj.evaluate(OTHERS[:16])
    train(obj, 50)
    stats = obj.evaluate(OTHERS[:16])
    assert before["d_real"] - before["d_sim"] < 0.2
    assert stats["d_real"] - stats["d_sim"] > 0.5
    fresh_targets, fresh_others = shapes(yaws(16, 0.3, seed=10)), shapes(yaws(16, 1.8, seed=11))
    assert obj.rewards(fresh_targets).mean() > obj.rewards(fresh_others).mean() + 2.0
    mixed = obj.rewards(torch.cat([fresh_targets[:8], fresh_others[:8]]))
    assert auc(mixed[:8], mixed[8:]) > 0.9


def test_adversarial_update_returns_stats_and_changes_the_discriminator():
    obj = objective("adversarial")
    fake = OTHERS[:8]
    before = obj.rewards(fake)
    stats = obj.update(fake)
    assert set(stats) == {"d_loss", "d_real", "d_sim"}
    assert 0 < stats["d_real"] < 1 and 0 < stats["d_sim"] < 1 and stats["d_loss"] > 0
    assert not torch.equal(obj.rewards(fake), before)
    assert torch.equal(obj.rewards(fake), obj.rewards(fake))  # evaluation does not train


@pytest.mark.parametrize("name", ["adversarial", "wgan-gp"])
def test_update_with_a_non_finite_loss_reports_it_and_leaves_the_network_unchanged(name):
    obj = objective(name)
    with torch.no_grad():
        next(obj.net.parameters())[0].fill_(float("nan"))
    before = {k: v.clone() for k, v in obj.net.state_dict().items()}
    stats = obj.update(OTHERS[:8])
    assert math.isnan(stats["d_loss"])
    after = obj.net.state_dict()
    assert all(torch.equal(before[k].nan_to_num(), after[k].nan_to_num()) for k in before)
    assert obj.optimizer.state_dict()["state"] == {}


def test_adversarial_reward_kinds_agree_on_one_discriminator():
    trained = objective("adversarial")
    train(trained, 5)
    fake = torch.cat([TARGETS[:4], OTHERS[:4]])
    rewards = {}
    for kind in ("log_d", "prob", "logit"):
        obj = objective("adversarial", ObjectiveConfig(base_width=16, reward=kind))
        obj.load_state_dict(trained.state_dict())
        rewards[kind] = obj.rewards(fake)
    prob = rewards["prob"]
    assert ((prob > 0) & (prob < 1)).all()
    torch.testing.assert_close(rewards["log_d"], torch.log(prob))
    torch.testing.assert_close(rewards["logit"], torch.log(prob / (1 - prob)))


def test_adversarial_accepts_non_square_rgba():
    targets = torch.cat([shapes(yaws(8, 0.3, seed=1), size=48, height=32), torch.ones(8, 1, 32, 48)], dim=1)
    obj = objective("adversarial", targets=targets)
    stats = obj.update(targets.flip(0) * 0.5)
    assert all(math.isfinite(v) for v in stats.values())
    assert obj.rewards(targets[:5]).shape == (5,)


# --- wgan-gp -------------------------------------------------------------------------------------------------


def test_wgan_gp_critic_scores_targets_higher_after_training():
    obj = objective("wgan-gp", ObjectiveConfig(base_width=16, lr=1e-3, betas=(0.0, 0.9)))
    stats = train(obj, 40)
    assert set(stats) == {"d_loss", "gp", "d_real", "d_sim", "wasserstein"}
    assert math.isfinite(stats["gp"]) and stats["gp"] >= 0
    evaluated = obj.evaluate(OTHERS[:16])
    assert evaluated["wasserstein"] == pytest.approx(evaluated["d_real"] - evaluated["d_sim"])
    assert evaluated["wasserstein"] > 5.0
    fresh_targets, fresh_others = shapes(yaws(16, 0.3, seed=10)), shapes(yaws(16, 1.8, seed=11))
    assert auc(obj.rewards(fresh_targets), obj.rewards(fresh_others)) > 0.95


def test_wgan_gp_rewards_are_per_image():
    obj = objective("wgan-gp")
    batch = torch.cat([TARGETS[:4], OTHERS[:4]])
    torch.testing.assert_close(obj.rewards(batch)[:4], obj.rewards(batch[:4]))


# --- mmd -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("features", ["random-conv", "pixels"])
def test_mmd_is_near_zero_for_the_same_distribution_and_large_for_another(features):
    obj = objective("mmd", ObjectiveConfig(feature_extractor=features))
    same = obj.evaluate(shapes(yaws(32, 0.3, seed=20)))["mmd2"]
    different = obj.evaluate(shapes(yaws(32, 1.8, seed=21)))["mmd2"]
    assert abs(same) < 0.02
    assert different > 0.5
    assert obj.update(OTHERS[:8]) == obj.evaluate(OTHERS[:8])


def test_mmd_rewards_rank_target_like_images_higher():
    obj = objective("mmd")
    near, far = shapes(yaws(8, 0.3, seed=22)), shapes(yaws(8, 1.8, seed=23))
    rewards = obj.rewards(torch.cat([near, far]))
    assert auc(rewards[:8], rewards[8:]) == 1.0


def test_mmd_batches_closer_to_the_targets_get_higher_mean_reward_and_lower_mmd():
    obj = objective("mmd")
    # Common random numbers: the batches differ only by their offset from the targets' mean yaw.
    offsets = [1.0, 0.5, 0.25, 0.0]
    batches = [shapes(yaws(16, 0.3 + offset, seed=30)) for offset in offsets]
    means = [obj.rewards(batch).mean().item() for batch in batches]
    mmds = [obj.evaluate(batch)["mmd2"] for batch in batches]
    assert means == sorted(means)
    assert mmds == sorted(mmds, reverse=True)


def test_mmd_rewards_punish_a_collapsed_batch():
    """Copies of one image at the targets' mean yaw match no spread: lower reward, higher MMD² than a spread batch."""
    obj = objective("mmd")
    spread, collapsed = shapes(yaws(8, 0.3, seed=50)), shapes(torch.full((8,), 0.3))
    assert obj.rewards(spread).mean() > obj.rewards(collapsed).mean() + 0.2
    assert obj.evaluate(collapsed)["mmd2"] > obj.evaluate(spread)["mmd2"] + 0.1


def test_mmd_reward_gradient_descends_mmd():
    """The score-function gradient of the mean reward must point where MMD² falls: towards the targets' yaw."""
    obj = objective("mmd")
    mu = torch.tensor(0.9, requires_grad=True)
    x = mu.detach() + 0.2 * torch.randn(64, generator=torch.Generator().manual_seed(5))
    rewards = obj.rewards(shapes(x))
    surrogate = ((rewards - rewards.mean()) * torch.distributions.Normal(mu, 0.2).log_prob(x)).mean()
    (grad,) = torch.autograd.grad(surrogate, mu)
    assert grad < 0  # ascending the reward lowers mu towards 0.3
    lower = obj.evaluate(shapes(yaws(64, 0.8, seed=6, std=0.2)))["mmd2"]
    higher = obj.evaluate(shapes(yaws(64, 1.0, seed=6, std=0.2)))["mmd2"]
    assert lower < higher


def test_mmd_needs_two_images_on_each_side():
    with pytest.raises(TargetError, match="2 target"):
        objective("mmd", targets=TARGETS[:1])
    with pytest.raises(TargetError, match="2 rendered"):
        objective("mmd").rewards(OTHERS[:1])


# --- TorchScript feature extractors --------------------------------------------------------------------------


class _Pool(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images, 8).flatten(1)


class _NoFlatten(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images, 8)


def test_torchscript_feature_extractor_loads_and_drives_mmd(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(_Pool()), str(path))
    extractor = load_feature_extractor(path)
    assert extractor(TARGETS[:5]).shape == (5, 3 * 64)
    obj = objective("mmd", ObjectiveConfig(feature_extractor=str(path)))
    assert obj.evaluate(OTHERS[:16])["mmd2"] > 10 * abs(obj.evaluate(shapes(yaws(16, 0.3, seed=40)))["mmd2"])


def test_feature_extractor_that_is_not_torchscript_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), weights)
    for path in (text, weights, tmp_path / "missing.pt"):
        with pytest.raises(FeatureExtractorError, match=path.name):
            load_feature_extractor(path)
    with pytest.raises(FeatureExtractorError, match="notes.txt"):
        objective("mmd", ObjectiveConfig(feature_extractor=str(text)))


def test_feature_extractor_with_wrong_output_shape_is_refused(tmp_path):
    path = tmp_path / "maps.pt"
    torch.jit.save(torch.jit.script(_NoFlatten()), str(path))
    with pytest.raises(FeatureExtractorError, match=r"maps\.pt.*\(n, k\)"):
        objective("mmd", ObjectiveConfig(feature_extractor=str(path)))


# --- energy --------------------------------------------------------------------------------------------------


def test_energy_is_near_zero_for_the_same_distribution_and_separation_near_one_for_another_picture():
    obj = objective("energy")
    same = obj.evaluate(shapes(yaws(32, 0.3, seed=20)))
    different = obj.evaluate(shapes(yaws(32, 1.8, seed=21)))
    flat = obj.evaluate(torch.ones(16, 3, 32, 32))  # nothing in common with the targets
    assert abs(same["energy"]) < 0.05 * different["energy"] and abs(same["separation"]) < 0.05
    assert 0.3 < different["separation"] < flat["separation"] <= 1.0
    assert obj.update(OTHERS[:8]) == obj.evaluate(OTHERS[:8])


def test_energy_rewards_rank_target_like_images_higher_and_punish_a_collapsed_batch():
    obj = objective("energy")
    near, far = shapes(yaws(8, 0.3, seed=22)), shapes(yaws(8, 1.8, seed=23))
    rewards = obj.rewards(torch.cat([near, far]))
    assert auc(rewards[:8], rewards[8:]) == 1.0
    spread, collapsed = shapes(yaws(8, 0.3, seed=50)), shapes(torch.full((8,), 0.3))
    assert obj.rewards(spread).mean() > obj.rewards(collapsed).mean()
    assert obj.evaluate(collapsed)["energy"] > obj.evaluate(spread)["energy"]


def test_energy_reward_gradient_points_to_the_targets_from_far_away():
    """Where an RBF kernel's gradient has faded (renders 1.5 rad away share no pixels with the targets), the
    distance still grows with the yaw error: the score-function step goes toward the targets."""
    obj = objective("energy")
    for start in (0.9, 1.8):
        mu = torch.tensor(start, requires_grad=True)
        x = mu.detach() + 0.2 * torch.randn(64, generator=torch.Generator().manual_seed(5))
        rewards = obj.rewards(shapes(x))
        surrogate = ((rewards - rewards.mean()) * torch.distributions.Normal(mu, 0.2).log_prob(x)).mean()
        (grad,) = torch.autograd.grad(surrogate, mu)
        assert grad < 0, start  # ascending the reward lowers mu towards 0.3


def test_energy_target_pixels_follow_the_blur_and_it_needs_two_images_on_each_side():
    obj = objective("energy")
    sharp = obj.evaluate(OTHERS[:8])["energy"]
    obj.blur = 3.0
    assert obj.evaluate(OTHERS[:8])["energy"] < sharp  # both sides blurred: closer
    with pytest.raises(TargetError, match="2 target"):
        objective("energy", targets=TARGETS[:1])
    with pytest.raises(TargetError, match="2 rendered"):
        objective("energy").rewards(OTHERS[:1])


# --- checkpoints and determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adversarial", "wgan-gp", "mmd"])  # energy: no seeded state
def test_state_dict_round_trip_through_weights_only_load(name):
    obj = objective(name, seed=0)
    train(obj, 3)
    buffer = io.BytesIO()
    torch.save(obj.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = objective(name, seed=99)
    fake = OTHERS[:8]
    assert not torch.equal(restored.rewards(fake), obj.rewards(fake))
    restored.load_state_dict(state)
    assert torch.equal(restored.rewards(fake), obj.rewards(fake))
    # Adam moments and the objective's generator come back too: the next steps are the same.
    assert train(restored, 2, seed=8) == train(obj, 2, seed=8)
    assert torch.equal(restored.rewards(fake), obj.rewards(fake))


def test_loading_a_foreign_state_fails_and_changes_nothing():
    obj = objective("adversarial")
    fake = OTHERS[:8]
    before = obj.rewards(fake)
    with pytest.raises(ConfigError, match="wgan-gp"):
        obj.load_state_dict(objective("wgan-gp").state_dict())
    other_size = make_objective("adversarial", shapes(yaws(8, 0.3, seed=1), size=64), SMALL, torch.Generator())
    with pytest.raises(ConfigError):
        obj.load_state_dict(other_size.state_dict())
    assert torch.equal(obj.rewards(fake), before)


@pytest.mark.parametrize("name", ["adversarial", "wgan-gp", "mmd"])  # energy: no seeded state
def test_same_seed_same_rewards(name):
    a, b, c = objective(name, seed=7), objective(name, seed=7), objective(name, seed=8)
    stats_a, stats_b = train(a, 3), train(b, 3)
    train(c, 3)
    assert stats_a == stats_b
    fake = OTHERS[:8]
    assert torch.equal(a.rewards(fake), b.rewards(fake))
    assert not torch.equal(a.rewards(fake), c.rewards(fake))


# --- configuration and bad input -----------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = ObjectiveConfig(lr=5e-5, betas=(0.5, 0.999), reward="prob", mmd_bandwidths=(1.0, 2.0))
    data = json.loads(json.dumps(config.to_dict()))
    assert ObjectiveConfig.from_dict(data) == config
    assert ObjectiveConfig.from_dict({}) == ObjectiveConfig()


@pytest.mark.parametrize(
    "data,culprit",
    [
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": True}, "lr"),
        ({"betas": [0.5]}, "betas"),
        ({"betas": [1.0, 0.9]}, "betas"),
        ({"base_width": 0}, "base_width"),
        ({"reward": "neg_log"}, "neg_log"),
        ({"gp_weight": -1}, "gp_weight"),
        ({"mmd_bandwidths": []}, "mmd_bandwidths"),
        ({"mmd_bandwidths": [1.0, -2.0]}, "mmd_bandwidths"),
        ({"feature_extractor": ""}, "feature_extractor"),
        ({"learning_rate": 1e-3}, "learning_rate"),
    ],
)
def test_bad_config_is_refused(data, culprit):
    with pytest.raises(ConfigError, match=culprit):
        ObjectiveConfig.from_dict(data)


def test_unknown_objective_is_refused():
    with pytest.raises(ConfigError, match="gan"):
        make_objective("gan", TARGETS, SMALL, torch.Generator())


@pytest.mark.parametrize(
    "targets,message",
    [
        (torch.empty(0, 3, 32, 32), "empty"),
        (TARGETS[0], "shape"),
        (torch.zeros(4, 2, 32, 32), "channels"),
        (torch.zeros(4, 3, 8, 32), "16"),
        (TARGETS.clone().index_put_((torch.tensor([2]),), torch.tensor(float("nan"))), "NaN"),
        (TARGETS * 255, r"\[-1, 1\]"),
        (TARGETS.numpy(), "tensor"),
        (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "floating"),
    ],
)
@pytest.mark.parametrize("name", ["energy", "adversarial", "wgan-gp", "mmd"])
def test_bad_targets_are_refused(name, targets, message):
    with pytest.raises(TargetError, match=message):
        make_objective(name, targets, SMALL, torch.Generator())


@pytest.mark.parametrize("name", ["energy", "adversarial", "wgan-gp", "mmd"])
def test_bad_renders_are_refused_without_training(name):
    obj = objective(name)
    before = obj.state_dict()
    bad_inf = OTHERS[:4].clone()
    bad_inf[1, 0, 0, 0] = float("inf")
    for bad, message in [(shapes(yaws(4, 0.3, seed=1), size=64), "shape"), (bad_inf, "image index \\[1\\]")]:
        for method in (obj.update, obj.evaluate, obj.rewards):
            with pytest.raises(TargetError, match=message):
                method(bad)
    after = obj.state_dict()
    assert torch.equal(before["rng"], after["rng"])
    if "net" in before:
        assert all(torch.equal(before["net"][k], after["net"][k]) for k in before["net"])


def test_input_blur_treats_renders_and_targets_alike_and_hides_pixel_noise():
    """The blur is the same path for both: a target and a render of the same picture stay equal, while per-pixel
    noise (the trace of fewer render samples) shrinks."""
    from addon.engine.objectives import ObjectiveConfig, make_objective

    generator = torch.Generator().manual_seed(0)
    picture = torch.zeros(1, 3, 32, 32)
    picture[..., 8:24, 8:24] = 0.8
    noise = (0.1 * torch.randn(1, 3, 32, 32, generator=generator)).clamp(-0.15, 0.15)
    objective = make_objective("adversarial", picture.repeat(4, 1, 1, 1), ObjectiveConfig(input_blur=1.0), generator)
    seen_target = objective._target_batch(1)
    seen_render = objective._check_fake(picture)
    assert torch.allclose(seen_target, seen_render)
    assert (objective._check_fake(picture + noise) - seen_render).std() < 0.4 * noise.std()
    objective.blur = 0.0
    assert torch.equal(objective._check_fake(picture), picture)


def test_mmd_target_features_follow_the_blur():
    from addon.engine.objectives import ObjectiveConfig, make_objective

    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1
    objective = make_objective("mmd", targets, ObjectiveConfig(), generator)
    sharp = objective._target_features.clone()
    objective.blur = 2.0
    objective.evaluate(targets)
    assert not torch.allclose(objective._target_features, sharp)
    assert objective.evaluate(targets)["mmd2"] < 0.05  # renders identical to the targets, blurred alike


@pytest.mark.parametrize(("name", "compute"), [("energy", "_compute_distances"), ("mmd", "_compute_kernels")])
def test_a_batch_s_distances_are_computed_once_for_its_stats_and_rewards(name, compute, monkeypatch):
    obj = objective(name)
    calls = []
    original = getattr(obj, compute)
    monkeypatch.setattr(obj, compute, lambda fake: calls.append(1) or original(fake))
    fake = OTHERS[:8]
    stats, rewards = obj.evaluate(fake), obj.rewards(fake)
    assert len(calls) == 1 and math.isfinite(next(iter(stats.values()))) and rewards.shape == (8,)
    obj.blur = 2.0  # another view of the same renders
    obj.rewards(fake)
    obj.rewards(OTHERS[8:16])  # another batch
    assert len(calls) == 3
