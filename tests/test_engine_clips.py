"""Clips in the engine: the synthetic bouncing ball, clip networks and objectives, the optimizer taking clips, and
restitution recovered from target clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from addon.engine.distributions import ParameterSpace, TruncatedNormal
from addon.engine.errors import ConfigError, TargetError
from addon.engine.networks import Discriminator, PixelFeatures, RandomConvFeatures, load_feature_extractor
from addon.engine.objectives import ObjectiveConfig, make_objective
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig, images_to_tensor
from addon.engine.synthetic_clips import DROP_HEIGHT, RADIUS, bouncing_ball, heights

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

SMALL = ObjectiveConfig(base_width=16)


def ball_clips(restitutions, **kwargs) -> np.ndarray:
    return np.stack([bouncing_ball({"restitution": float(e)}, **kwargs) for e in restitutions])


def as_tensor(clips: np.ndarray) -> torch.Tensor:
    return images_to_tensor(clips, "clips")


# --- synthetic bouncing ball -----------------------------------------------------------------------------------


def test_bouncing_ball_is_a_deterministic_clip_in_range():
    clip = bouncing_ball({"restitution": 0.6}, size=32, frames=8)
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0
    assert np.array_equal(clip, bouncing_ball({"restitution": 0.6}, size=32, frames=8))


def test_restitution_shapes_the_trajectory_after_the_first_impact_only():
    # First impact at t = sqrt(2 (DROP_HEIGHT − RADIUS) / g): frames before it are free fall for every restitution.
    impact = np.sqrt(2 * (DROP_HEIGHT - RADIUS) / 9.81)
    times = np.linspace(0.0, 1.6, 200)
    low, high = heights(0.3, 9.81, times), heights(0.9, 9.81, times)
    before = times < impact - 0.01
    assert np.allclose(low[before], high[before])
    assert high[~before].max() > low[~before].max() + 0.5
    # Bounce apex follows restitution²: (DROP_HEIGHT − RADIUS) e² above the floor contact.
    assert high[~before].max() - RADIUS == pytest.approx((DROP_HEIGHT - RADIUS) * 0.81, rel=0.02)
    clips = ball_clips([0.3, 0.9], start=4, stride=4)
    assert np.array_equal(clips[0, 0], clips[1, 0])  # frame 4: still falling
    assert np.abs(clips[0, -1] - clips[1, -1]).max() > 0.3


def test_gravity_changes_the_timing():
    slow = bouncing_ball({"restitution": 0.5, "gravity": 3.0})
    fast = bouncing_ball({"restitution": 0.5, "gravity": 9.81})
    assert np.abs(slow - fast).max() > 0.3


@pytest.mark.parametrize("values", [{"restitution": -0.1}, {"restitution": 1.5}, {"restitution": 0.5, "gravity": 0}])
def test_bouncing_ball_refuses_impossible_physics(values):
    with pytest.raises(ValueError):
        bouncing_ball(values)


# --- networks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("channels", [3, 4])
def test_clip_discriminator_scores_each_clip(norm, channels):
    net = Discriminator(channels, 32, 48, base_width=8, norm=norm, frames=6)
    net.reset_parameters(torch.Generator().manual_seed(0))
    logits = net(torch.rand(5, 6, channels, 32, 48) * 2 - 1)
    assert logits.shape == (5,) and torch.isfinite(logits).all()
    first = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert first.in_channels == 6 * channels


def test_clip_networks_see_the_order_of_frames():
    clips = as_tensor(ball_clips([0.4, 0.8, 0.6]))
    reversed_clips = clips.flip(1)
    net = Discriminator(3, 32, 32, base_width=8, norm="layer", frames=8)
    net.reset_parameters(torch.Generator().manual_seed(0))
    features = RandomConvFeatures(3, torch.Generator().manual_seed(0), frames=8)
    with torch.no_grad():
        assert not torch.allclose(net(clips), net(reversed_clips))
        assert not torch.allclose(features(clips), features(reversed_clips))
    assert PixelFeatures(8)(clips).shape == (3, 8 * 3 * 8 * 8)


def test_torchscript_features_of_a_clip_are_its_frames_features_in_order(tmp_path):
    module = torch.jit.script(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()))
    path = tmp_path / "features.pt"
    module.save(str(path))
    extractor = load_feature_extractor(path)
    clips = as_tensor(ball_clips([0.4, 0.8]))
    features = extractor(clips)
    assert features.shape == (2, 8 * 3 * 2 * 2)
    assert torch.allclose(features[1, -12:], extractor(clips[1, -1:]).flatten())


# --- objectives and the optimizer ------------------------------------------------------------------------------


TARGET_CLIPS = as_tensor(ball_clips(np.linspace(0.65, 0.75, 12)))
OTHER_CLIPS = as_tensor(ball_clips(np.linspace(0.15, 0.25, 12)))


@pytest.mark.parametrize("name", ["adversarial", "wgan-gp", "mmd"])
def test_every_objective_takes_clips(name):
    objective = make_objective(name, TARGET_CLIPS, SMALL, torch.Generator().manual_seed(0))
    for _ in range(3):
        stats = objective.update(OTHER_CLIPS[:6])
    assert all(np.isfinite(v) for v in stats.values())
    rewards = objective.rewards(torch.cat([TARGET_CLIPS[:4], OTHER_CLIPS[:4]]))
    assert rewards.shape == (8,) and torch.isfinite(rewards).all()
    with pytest.raises(TargetError, match=r"\(T, C, H, W\)"):
        objective.rewards(TARGET_CLIPS[:, :6])  # clips of 6 frames against targets of 8
    with pytest.raises(TargetError, match="shape"):
        objective.rewards(TARGET_CLIPS[:, 0])  # still images against clip targets


def test_mmd_rewards_rank_target_like_clips_higher():
    objective = make_objective("mmd", TARGET_CLIPS, SMALL, torch.Generator().manual_seed(0))
    mixed = torch.cat([as_tensor(ball_clips(np.linspace(0.66, 0.74, 4))), OTHER_CLIPS[:4]])
    rewards = objective.rewards(mixed)
    assert rewards[:4].min() > rewards[4:].max()


def test_the_optimizer_takes_clip_targets_and_clip_renders():
    space = ParameterSpace({"restitution": TruncatedNormal(0.3, 0.15, 0.0, 1.0)})
    optimizer = AskTellOptimizer(space, ball_clips(np.full(8, 0.7)), OptimizerConfig.default(batch_size=4))
    assert optimizer.image_shape == (8, 32, 32, 3)
    samples = optimizer.ask()
    clips = [bouncing_ball(s.values) for s in samples]
    with pytest.raises(TargetError, match=r"\(8, 32, 32, 3\)"):
        optimizer.tell([s.id for s in samples], [clip[0] for clip in clips])
    with pytest.raises(TargetError, match=r"\(8, 32, 32, 3\)"):
        optimizer.tell([s.id for s in samples], [clip[:5] for clip in clips])
    stats = optimizer.tell([s.id for s in samples], clips)
    assert stats.renders == 4 and optimizer.pending_ids == []


def test_clip_targets_need_frames_and_channels():
    with pytest.raises(TargetError, match="empty"):
        images_to_tensor(np.zeros((4, 0, 32, 32, 3), np.float32), "target clips")
    with pytest.raises(TargetError, match="channels"):
        images_to_tensor(np.zeros((4, 8, 32, 32, 2), np.float32), "target clips")


def test_restitution_is_recovered_from_target_clips():
    """Truth TruncatedNormal(0.7, 0.05) on [0, 1], start (0.3, 0.15): SceneFit's default settings, 40 steps of 16
    clips (640 renders) end within 0.1 of the truth (bench/clip_encoders.py: 3/3 seeds, median error < 0.03)."""
    rng = np.random.default_rng(100)
    targets = ball_clips(np.clip(rng.normal(0.7, 0.05, size=64), 0.0, 1.0))
    space = ParameterSpace({"restitution": TruncatedNormal(0.3, 0.15, 0.0, 1.0)})
    optimizer = AskTellOptimizer(space, targets, OptimizerConfig.default(seed=0))
    for _ in range(40):
        samples = optimizer.ask()
        optimizer.tell([s.id for s in samples], [bouncing_ball(s.values) for s in samples])
    mean = optimizer.space.values()["restitution"]["mean"]  # the truth's own mean is 0.7 (six σ inside [0, 1])
    assert abs(mean - 0.7) < 0.1, mean


# --- the bouncing-ball preset ----------------------------------------------------------------------------------


def test_the_bouncing_ball_preset_samples_clips():
    from addon.engine import presets

    preset = presets.load_preset(presets.PRESET_DIR / "bouncing_ball.json")
    assert preset.scene_builder == "bouncing_ball"
    assert preset.run["clips"] == {"frame_start": 9, "frame_end": 51, "stride": 6}
    assert preset.truth()["restitution"]["mu"] == 0.7 and preset.space()["restitution"]["mu"] == 0.3


@pytest.mark.parametrize(
    "clips, message",
    [
        ({"frame_start": 10, "frame_end": 12, "stride": 5}, "fewer than 2 frames"),
        ({"frame_start": 1, "frame_end": 20, "stride": 0}, "run.clips.stride"),
        ({"frame_start": 1}, "run.clips.frame_end: missing"),
        ({"frame_start": 1, "frame_end": 20, "every": 2}, "unknown field"),
    ],
)
def test_bad_clip_run_settings_are_refused(clips, message):
    import json

    from addon.engine import presets
    from addon.engine.errors import ConfigError

    data = json.loads((presets.PRESET_DIR / "bouncing_ball.json").read_text())
    data["run"]["clips"] = clips
    with pytest.raises(ConfigError, match=message):
        presets.preset_from_dict(data, "bouncing_ball.json")


def test_a_clip_run_resumes_from_its_checkpoint(tmp_path):
    space = ParameterSpace({"restitution": TruncatedNormal(0.3, 0.15, 0.0, 1.0)})
    targets = ball_clips(np.full(6, 0.7))
    optimizer = AskTellOptimizer(space, targets, OptimizerConfig.default(batch_size=4, objective="mmd"))
    samples = optimizer.ask()
    optimizer.tell([s.id for s in samples], [bouncing_ball(s.values) for s in samples])
    optimizer.save_checkpoint(tmp_path / "checkpoint.pt")
    resumed = AskTellOptimizer.load_checkpoint(tmp_path / "checkpoint.pt", targets)
    assert resumed.image_shape == (8, 32, 32, 3) and resumed.step == 1
    with pytest.raises(ConfigError, match="shape"):
        AskTellOptimizer.load_checkpoint(tmp_path / "checkpoint.pt", targets[:, :6])
