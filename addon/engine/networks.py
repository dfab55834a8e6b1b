"""Networks of the objectives: a size-adaptive DCGAN discriminator / WGAN-GP critic and MMD feature maps.

Images are torch (N, C, H, W) float32 in [-1, 1], C in {3, 4}, each side at least ``MIN_SIZE`` px. Clips are
(N, T, C, H, W): the networks stack a clip's frames in the channel axis (N, T·C, H, W), so the first convolution
already sees the whole trajectory. Chosen over a small 3D convolution by ``bench/clip_encoders.py`` (bouncing-ball
restitution, 3 seeds, 50 steps): adversarial, stacked 3/3 runs end within 0.1 (errors ≤ 0.024) at 66–82 ms per
step vs 2/3 for 3D (one diverged) at 440–760 ms with 3× the weights; MMD, 3/3 both, stacked 3× faster.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .errors import FeatureExtractorError

MIN_SIZE = 16
"""Smallest image side the networks accept: two stride-2 convolutions down to 4 px."""

NORMS = ("batch", "layer")


def _downsampled_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Sizes after each stride-2 convolution, halving until the smaller side is 4–7 px (4 for powers of two)."""
    sizes = []
    while min(height, width) >= 8:
        # Conv2d(kernel 4, stride 2, padding 1) maps a side s to floor(s / 2).
        height, width = height // 2, width // 2
        sizes.append((height, width))
    return sizes


def _check_image_size(channels: int, height: int, width: int, frames: int = 1) -> None:
    if channels not in (3, 4):
        raise ValueError(f"networks take 3 (RGB) or 4 (RGBA) channels, got {channels}")
    if min(height, width) < MIN_SIZE:
        raise ValueError(f"networks need images of at least {MIN_SIZE}×{MIN_SIZE} px, got {height}×{width}")
    if frames < 1:
        raise ValueError(f"clips need at least one frame, got {frames}")


def stack_frames(images: torch.Tensor) -> torch.Tensor:
    """Clips (N, T, C, H, W) → (N, T·C, H, W), frame-major; images (N, C, H, W) pass unchanged."""
    return images.flatten(1, 2) if images.ndim == 5 else images


class Discriminator(nn.Module):
    """DCGAN discriminator (blendtorch densityopt's for 64×64) generalised to any size and 3/4 channels.

    Stride-2 convolutions (width 32, 64, 128, 256, then 256…) halve the image until it is 4–7 px; a last
    convolution spanning the remaining map gives one logit per image. ``norm="batch"`` is the DCGAN
    discriminator; ``norm="layer"`` (per-sample normalisation over C, H, W) is the WGAN-GP critic, whose
    gradient penalty is per sample and so must not mix samples through batch statistics. ``frames`` > 1 makes it
    a clip discriminator over (N, frames, C, H, W) with the frames stacked in the channel axis.
    """

    def __init__(
        self, channels: int, height: int, width: int, base_width: int = 32, norm: str = "batch", frames: int = 1
    ):
        super().__init__()
        _check_image_size(channels, height, width, frames)
        if norm not in NORMS:
            raise ValueError(f"unknown normalisation {norm!r}; expected one of {NORMS}")
        layers: list[nn.Module] = []
        in_channels = channels * frames
        sizes = _downsampled_sizes(height, width)
        for i in range(len(sizes)):
            out_channels = base_width * 2 ** min(i, 3)
            layers.append(nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False))
            if norm == "batch":
                # Batch statistics in every mode, as blendtorch's discriminator (never switched to eval) used
                # them: running averages would mix target and render statistics and change the function that
                # rewards are read from.
                layers.append(nn.BatchNorm2d(out_channels, track_running_stats=False))
            else:
                layers.append(nn.GroupNorm(1, out_channels))
            layers.append(nn.LeakyReLU(0.2))
            in_channels = out_channels
        layers.append(nn.Conv2d(in_channels, 1, sizes[-1], 1, 0, bias=False))
        self.features = nn.Sequential(*layers)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """DCGAN initialisation drawn from ``generator``: conv weights N(0, 0.02), norm weights N(1, 0.02)."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
                elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                    nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (n,) — for ``norm="layer"``, critic scores."""
        return self.features(stack_frames(images)).flatten()


class RandomConvFeatures(nn.Module):
    """Fixed, seeded random convolutional features (no pretrained weights can be downloaded).

    Three stride-2 convolutions with He-initialised weights; each stage is average-pooled to a 4×4 grid and
    the grids are concatenated, so features keep the coarse layout (where an object's parts are) that
    orientation and shape show up in. ``frames`` > 1: features of clips, frames stacked in the channel axis.
    """

    GRID = 4

    def __init__(
        self, channels: int, generator: torch.Generator, widths: tuple[int, ...] = (16, 32, 64), frames: int = 1
    ):
        super().__init__()
        if channels not in (3, 4):
            raise ValueError(f"networks take 3 (RGB) or 4 (RGBA) channels, got {channels}")
        if frames < 1:
            raise ValueError(f"clips need at least one frame, got {frames}")
        convs = []
        in_channels = channels * frames
        for out_channels in widths:
            conv = nn.Conv2d(in_channels, out_channels, 4, 2, 1)
            with torch.no_grad():
                nn.init.normal_(conv.weight, 0.0, (2.0 / (in_channels * 16)) ** 0.5, generator=generator)
                nn.init.normal_(conv.bias, 0.0, 0.1, generator=generator)
            conv.requires_grad_(False)
            convs.append(conv)
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (n, k)."""
        pooled = []
        x = stack_frames(images)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            pooled.append(F.adaptive_avg_pool2d(x, self.GRID).flatten(1))
        return torch.cat(pooled, dim=1)


class PixelFeatures(nn.Module):
    """Area-downsampled pixels as features: (n, C·size·size), for clips (n, T·C·size·size)."""

    def __init__(self, size: int = 16):
        super().__init__()
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(stack_frames(images), self.size).flatten(1)


class TorchScriptFeatures(nn.Module):
    """A user's TorchScript feature extractor whose every output is checked to be finite (n, k) features.

    It maps images (n, C, H, W); a clip's features are its frames' features concatenated in time order (n, T·k).
    """

    def __init__(self, module: torch.jit.ScriptModule, path: Path):
        super().__init__()
        self.module = module
        self.path = path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 5:
            n, frames = images.shape[:2]
            return self(images.flatten(0, 1)).reshape(n, frames, -1).flatten(1)
        try:
            features = self.module(images)
        except Exception as exc:
            raise FeatureExtractorError(
                f"feature extractor {self.path} failed on images of shape {tuple(images.shape)}: {exc}"
            ) from exc
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != images.shape[0]:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise FeatureExtractorError(
                f"feature extractor {self.path} must return (n, k) features for n = {images.shape[0]} images, got {got}"
            )
        if not torch.isfinite(features).all():
            raise FeatureExtractorError(f"feature extractor {self.path} returned NaN or infinite features")
        return features.float()


def load_feature_extractor(path: str | Path) -> TorchScriptFeatures:
    """Load a TorchScript feature extractor (``torch.jit.save`` of a scripted or traced module) on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FeatureExtractorError(f"feature extractor file not found: {path}")
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; a user who chose a TorchScript extractor cannot act on that.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise FeatureExtractorError(f"feature extractor {path} is not a TorchScript file: {exc}") from exc
    module.eval()
    return TorchScriptFeatures(module, path)
