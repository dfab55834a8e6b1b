"""Which clip encoder should the objectives use: frames stacked in channels, or a small 3D convolution?

Both are run on the synthetic bouncing ball (``addon.engine.synthetic_clips``): learn the restitution
(truth TruncatedNormal(0.7, 0.05) on [0, 1], start (0.3, 0.15)) from 64 target clips of T = 8 frames at 32 px,
with SceneFit's default optimizer settings, for the adversarial and the MMD objective and a few seeds. The stacked
encoder is the product's (``networks.Discriminator`` / ``RandomConvFeatures`` with ``frames``); the 3D variant is
defined here and swapped into the objective, so everything else is identical.

    .venv/bin/python bench/clip_encoders.py [--steps 60] [--seeds 0 1 2]

Reported per run: renders until |μ − μ*| < 0.1 first holds and until it holds for good, final |μ − μ*|, network
parameters, seconds per tell (one discriminator step + one parameter step on a batch of 16 clips).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addon.engine.distributions import ParameterSpace, TruncatedNormal  # noqa: E402
from addon.engine.networks import _downsampled_sizes  # noqa: E402
from addon.engine.objectives import MMDObjective, _sqdist  # noqa: E402
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig  # noqa: E402
from addon.engine.synthetic_clips import bouncing_ball  # noqa: E402

TRUTH = (0.7, 0.05)
START = (0.3, 0.15)
BAND = 0.1


class Conv3dDiscriminator(nn.Module):
    """The DCGAN layout with 3D convolutions: kernels (3, 4, 4), stride (1, 2, 2) keep the time axis; a last
    convolution spans (T, h, w). Same widths and normalisations as the 2D discriminator."""

    def __init__(self, channels: int, frames: int, height: int, width: int, base_width: int, norm: str):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = channels
        sizes = _downsampled_sizes(height, width)
        for i in range(len(sizes)):
            out_channels = base_width * 2 ** min(i, 3)
            layers.append(nn.Conv3d(in_channels, out_channels, (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False))
            if norm == "batch":
                layers.append(nn.BatchNorm3d(out_channels, track_running_stats=False))
            else:
                layers.append(nn.GroupNorm(1, out_channels))
            layers.append(nn.LeakyReLU(0.2))
            in_channels = out_channels
        layers.append(nn.Conv3d(in_channels, 1, (frames, *sizes[-1]), 1, 0, bias=False))
        self.features = nn.Sequential(*layers)

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv3d):
                    nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
                elif isinstance(module, nn.BatchNorm3d | nn.GroupNorm):
                    nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
                    nn.init.zeros_(module.bias)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        # (N, T, C, H, W) → Conv3d's (N, C, T, H, W)
        return self.features(clips.transpose(1, 2)).flatten()


class Conv3dFeatures(nn.Module):
    """Fixed random 3D convolutional features, each stage pooled to (T', 4, 4) and concatenated."""

    def __init__(self, channels: int, generator: torch.Generator, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        convs = []
        in_channels = channels
        for out_channels in widths:
            conv = nn.Conv3d(in_channels, out_channels, (3, 4, 4), (1, 2, 2), (1, 1, 1))
            with torch.no_grad():
                nn.init.normal_(conv.weight, 0.0, (2.0 / (in_channels * 48)) ** 0.5, generator=generator)
                nn.init.normal_(conv.bias, 0.0, 0.1, generator=generator)
            conv.requires_grad_(False)
            convs.append(conv)
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.transpose(1, 2)
        pooled = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            pooled.append(F.adaptive_avg_pool3d(x, (min(x.shape[2], 4), 4, 4)).flatten(1))
        return torch.cat(pooled, dim=1)


def use_conv3d(optimizer: AskTellOptimizer, seed: int) -> None:
    """Swap the objective's stacked-frames network for the 3D one (initialised from its own seeded generator)."""
    objective = optimizer.objective
    _, frames, channels, height, width = objective.targets.shape
    generator = torch.Generator().manual_seed(1000 + seed)
    if isinstance(objective, MMDObjective):
        objective.features = Conv3dFeatures(channels, generator)
        objective._target_features = objective._features(objective.targets)
        objective._target_sqdist = _sqdist(objective._target_features, objective._target_features)
        return
    config = objective.config
    objective.net = Conv3dDiscriminator(channels, frames, height, width, config.base_width, objective.norm)
    objective.net.reset_parameters(generator)
    objective.optimizer = torch.optim.Adam(objective.net.parameters(), lr=config.lr, betas=config.betas)


def clips(values: list[float]) -> np.ndarray:
    return np.stack([bouncing_ball({"restitution": v}) for v in values])


def run(encoder: str, objective: str, seed: int, steps: int) -> dict[str, float]:
    rng = np.random.default_rng(100 + seed)
    truth = np.clip(rng.normal(*TRUTH, size=64), 0.0, 1.0)
    space = ParameterSpace({"restitution": TruncatedNormal(*START, 0.0, 1.0)})
    optimizer = AskTellOptimizer(space, clips(list(truth)), OptimizerConfig.default(objective=objective, seed=seed))
    if encoder == "conv3d":
        use_conv3d(optimizer, seed)
    parameters = sum(p.numel() for p in optimizer.objective.state_dict().get("net", {}).values())
    first = stay = None
    tell_seconds = 0.0
    for _ in range(steps):
        samples = optimizer.ask()
        batch = clips([s.values["restitution"] for s in samples])
        started = time.perf_counter()
        stats = optimizer.tell([s.id for s in samples], list(batch))
        tell_seconds += time.perf_counter() - started
        inside = abs(stats.values["restitution"]["mean"] - TRUTH[0]) < BAND
        if inside and first is None:
            first = stats.renders
        stay = (stay or stats.renders) if inside else None
    error = abs(optimizer.space.values()["restitution"]["mean"] - TRUTH[0])
    return {
        "first": first or float("nan"),
        "stay": stay or float("nan"),
        "error": error,
        "parameters": parameters,
        "tell_s": tell_seconds / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objectives", nargs="+", default=["adversarial", "mmd"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for objective in args.objectives:
        for encoder in ("stack", "conv3d"):
            results = [run(encoder, objective, seed, args.steps) for seed in args.seeds]
            for seed, r in zip(args.seeds, results, strict=True):
                print(
                    f"{objective:11s} {encoder:6s} seed {seed}: first in band {r['first']:5.0f} renders, "
                    f"stays from {r['stay']:5.0f}, final |μ−μ*| {r['error']:.3f}, net params {r['parameters']:7d}, "
                    f"{1000 * r['tell_s']:.0f} ms/tell",
                    flush=True,
                )
            inside = sum(r["error"] < BAND for r in results)
            median = statistics.median(r["error"] for r in results)
            print(f"{objective:11s} {encoder:6s} → {inside}/{len(results)} end inside, median final error {median:.3f}")


if __name__ == "__main__":
    main()
