"""Objectives comparing a batch of renders with the target set; each image's reward drives the score-function step.

An objective is built from the targets (N, C, H, W) float32 in [-1, 1] — or target clips (N, T, C, H, W), whose
renders are then clips of the same shape — an :class:`ObjectiveConfig` and a ``torch.Generator``. It draws its
network initialisation and a seed for its own private generator (target minibatches, gradient-penalty
interpolation) from that generator, so two objectives built from generators in the same state behave
identically, and its state dict holds everything to resume (networks, Adam, RNG).

Devices: an objective works on the ``device`` it is built for (its networks, targets, the renders it is given,
its blur kernels and features); it takes renders and returns rewards as CPU tensors, and its state dict holds CPU
tensors, so a state saved on a GPU loads on a CPU-only machine and back. Networks are initialised on the CPU from
the CPU generator and then moved, and the private generator stays a CPU generator whose draws are moved: the same
seed gives the same initial networks and the same target minibatches on every device.

* ``adversarial`` — DCGAN discriminator trained with the non-saturating BCE loss (blendtorch densityopt).
* ``wgan-gp`` — WGAN-GP critic with a gradient penalty (SPIRAL); the reward is the critic score.
* ``mmd`` — MMD² with a multi-bandwidth RBF kernel on fixed image features (Meta-Sim); nothing is trained.
* ``energy`` — the energy distance between renders and targets in pixel space (as the objective sees them,
  blurred coarse to fine); nothing is trained. SceneFit's default.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError, FeatureExtractorError, TargetError
from .networks import MIN_SIZE, Discriminator, PixelFeatures, RandomConvFeatures, load_feature_extractor

REWARDS = ("log_d", "prob", "logit")
BUILTIN_FEATURES = ("random-conv", "pixels")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Settings of an objective. Invalid values raise :class:`ConfigError` naming the field.

    reward (adversarial only): ``"log_d"`` = log D(x), the non-saturating reward; it equals blendtorch's
    −errS = −BCE(D(x), 1) per image. ``"prob"`` = D(x). ``"logit"`` = log D(x) − log(1 − D(x)), the
    discriminator's estimate of log p_target(x) / p_render(x).
    feature_extractor (mmd only): ``"random-conv"``, ``"pixels"`` or the path of a TorchScript file mapping
    (n, C, H, W) images in [-1, 1] to (n, k) features.
    mmd_bandwidths: RBF bandwidths as multiples of the median pairwise feature distance of renders ∪ targets.
    input_blur: σ in pixels of the Gaussian blur every image — render and target alike — gets before the
    objective sees it (0: none). Render noise differs from the targets' whenever their samples differ (Cycles at 4
    samples against targets at 8): unblurred, a discriminator separates renders from targets by their noise
    alone, even at the true parameters; 0.7–1 px makes that difference vanish (bench/image_pipeline.py). It also
    removes detail the parameters may need at small sizes (on the 32 px synthetic supershape one seed in four no
    longer converges), so it is off by default: match the targets' samples, or turn it on.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    base_width: int = 32
    reward: str = "log_d"
    gp_weight: float = 10.0
    feature_extractor: str = "random-conv"
    mmd_bandwidths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    input_blur: float = 0.0

    def __post_init__(self) -> None:
        _check_number("lr", self.lr, positive=True)
        betas = _as_tuple("betas", self.betas)
        if len(betas) != 2:
            raise ConfigError(f"objective setting 'betas' needs two values, got {len(betas)}")
        for beta in betas:
            _check_number("betas", beta)
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"objective setting 'betas' must lie in [0, 1), got {beta!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if isinstance(self.base_width, bool) or not isinstance(self.base_width, int) or self.base_width < 1:
            raise ConfigError(f"objective setting 'base_width' must be a positive integer, got {self.base_width!r}")
        if self.reward not in REWARDS:
            raise ConfigError(f"unknown adversarial reward {self.reward!r}; expected one of {REWARDS}")
        _check_number("gp_weight", self.gp_weight)
        if self.gp_weight < 0:
            raise ConfigError(f"objective setting 'gp_weight' must be ≥ 0, got {self.gp_weight!r}")
        if not isinstance(self.feature_extractor, str) or not self.feature_extractor.strip():
            raise ConfigError(
                f"objective setting 'feature_extractor' must be one of {BUILTIN_FEATURES} or a TorchScript file "
                f"path, got {self.feature_extractor!r}"
            )
        bandwidths = _as_tuple("mmd_bandwidths", self.mmd_bandwidths)
        if not bandwidths:
            raise ConfigError("objective setting 'mmd_bandwidths' needs at least one bandwidth")
        for bandwidth in bandwidths:
            _check_number("mmd_bandwidths", bandwidth, positive=True)
        object.__setattr__(self, "mmd_bandwidths", tuple(float(b) for b in bandwidths))
        _check_number("input_blur", self.input_blur)
        if not 0.0 <= self.input_blur <= 8.0:
            raise ConfigError(f"objective setting 'input_blur' must be 0–8 pixels, got {self.input_blur!r}")
        object.__setattr__(self, "input_blur", float(self.input_blur))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "gp_weight", float(self.gp_weight))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectiveConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"objective settings must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown objective setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**data)


def _check_number(name: str, value: Any, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"objective setting {name!r} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"objective setting {name!r} must be > 0, got {value!r}")


def _as_tuple(name: str, value: Any) -> tuple:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise ConfigError(f"objective setting {name!r} must be a list of numbers, got {value!r}")
    return tuple(value)


def _check_images(images: Any, what: str) -> torch.Tensor:
    """(N, C, H, W) finite float images — or (N, T, C, H, W) clips — in [-1, 1] with C in {3, 4} and sides
    ≥ MIN_SIZE, as float32."""
    if not isinstance(images, torch.Tensor):
        raise TargetError(f"{what} must be a torch tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim not in (4, 5):
        raise TargetError(
            f"{what} must have shape (N, C, H, W), or (N, T, C, H, W) for clips, got shape {tuple(images.shape)}"
        )
    n, c, h, w = images.shape[0], *images.shape[-3:]
    if n == 0:
        raise TargetError(f"{what} is empty")
    if images.ndim == 5 and images.shape[1] == 0:
        raise TargetError(f"{what} are clips without frames (shape {tuple(images.shape)})")
    if c not in (3, 4):
        raise TargetError(f"{what} must have 3 (RGB) or 4 (RGBA) channels, got {c} (shape {tuple(images.shape)})")
    if min(h, w) < MIN_SIZE:
        raise TargetError(f"{what} must be at least {MIN_SIZE}×{MIN_SIZE} px, got {h}×{w}")
    if not images.is_floating_point():
        raise TargetError(f"{what} must be floating point in [-1, 1], got dtype {images.dtype}")
    images = images.detach().to(torch.float32)
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten().tolist()
        raise TargetError(f"{what} contains NaN or infinite pixels (image index {bad[:10]})")
    low, high = images.min().item(), images.max().item()
    # A little slack for rounding; anything beyond is an unmapped [0, 1] or [0, 255] image.
    if low < -1.001 or high > 1.001:
        raise TargetError(f"{what} must be in [-1, 1] (the engine maps [0, 1] images), got range [{low}, {high}]")
    return images


class Objective:
    """Base: compares batches of renders with a fixed target set. Subclasses set ``name`` and ``loss_stat``, the
    stat reported as the run's loss."""

    name: ClassVar[str]
    loss_stat: ClassVar[str] = "d_loss"

    def __init__(
        self,
        targets: torch.Tensor,
        config: ObjectiveConfig,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ):
        if not isinstance(config, ObjectiveConfig):
            raise ConfigError(f"config must be an ObjectiveConfig, got {type(config).__name__}")
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.config = config
        self.device = torch.device(device)
        self.targets = _check_images(targets, "target images").to(self.device)
        # σ in pixels of the blur renders and targets get (see ObjectiveConfig.input_blur); the optimizer may
        # change it between steps (coarse to fine).
        self.blur = config.input_blur
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        self._rng = torch.Generator().manual_seed(seed)
        self._batch_cache: tuple[Any, float, Any] | None = None
        self._build(generator)

    def _build(self, generator: torch.Generator) -> None:
        """What a kind of objective adds once the targets are on the device: its network or features, drawn from
        ``generator`` after the objective's own seed."""

    def _once_per_batch(self, fake: Any, compute: Callable[[Any], Any]) -> Any:
        """``compute(fake)``, computed once for a batch at a blur: a tell asks for the stats and then for the
        rewards of the same renders, and an objective that trains nothing would compute the same distances twice."""
        cache = self._batch_cache
        if cache is None or cache[0] is not fake or cache[1] != self.blur:
            self._batch_cache = cache = (fake, self.blur, compute(fake))
        return cache[2]

    def _check_fake(self, fake: Any) -> torch.Tensor:
        fake = _check_images(fake, "rendered images").to(self.device)
        if fake.shape[1:] != self.targets.shape[1:]:
            layout = "(T, C, H, W)" if self.targets.ndim == 5 else "(C, H, W)"
            raise TargetError(
                f"rendered images have shape {layout} = {tuple(fake.shape[1:])} but the targets have "
                f"{tuple(self.targets.shape[1:])}"
            )
        return self._view(fake)

    def _view(self, images: torch.Tensor) -> torch.Tensor:
        """What the objective compares: the images blurred by :attr:`blur` pixels (renders and targets alike)."""
        sigma = self.blur
        if sigma == 0:
            return images
        radius = max(1, math.ceil(3 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        flat = images.reshape(-1, *images.shape[-3:])
        channels = flat.shape[1]
        flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
        flat = F.conv2d(flat, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        flat = F.conv2d(flat, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        return flat.reshape(images.shape)

    def _target_batch(self, n: int) -> torch.Tensor:
        """A target minibatch of min(n, N) distinct images drawn with the objective's generator."""
        index = torch.randperm(len(self.targets), generator=self._rng)[:n].to(self.device)
        return self._view(self.targets[index])

    def update(self, fake: torch.Tensor) -> dict[str, float]:
        """One training step of the discriminator/critic on a target minibatch vs ``fake``; stats before it."""
        raise NotImplementedError

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        """The stats of :meth:`update` without training (on a fresh target minibatch where one is used)."""
        raise NotImplementedError

    def rewards(self, fake: torch.Tensor) -> torch.Tensor:
        """Per-image rewards (n,) on the CPU, higher = more target-like; no gradient."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """CPU tensors and plain containers only (loadable with ``torch.load(weights_only=True)`` anywhere)."""
        return _to_cpu({"objective": self.name, "rng": self._rng.get_state(), **self._state()})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; on a mismatch raise ConfigError and leave the objective unchanged."""
        if not isinstance(state, Mapping) or state.get("objective") != self.name:
            got = state.get("objective") if isinstance(state, Mapping) else type(state).__name__
            raise ConfigError(f"state of objective {got!r} cannot be loaded into objective {self.name!r}")
        try:
            rng = torch.Generator()
            rng.set_state(state["rng"])
            commit = self._prepare_load(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"state does not match objective {self.name!r}: {exc!r}") from exc
        commit()
        self._rng = rng
        self._batch_cache = None  # computed with the state replaced

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _prepare_load(self, state: Mapping[str, Any]):
        """Build the restored members off to the side; return a function installing them (cannot fail)."""
        raise NotImplementedError


class _TrainedObjective(Objective):
    """An objective with a network trained by Adam: ``adversarial`` and ``wgan-gp``."""

    norm: ClassVar[str]

    def _build(self, generator: torch.Generator) -> None:
        c, h, w = self.targets.shape[-3:]
        self.net = Discriminator(c, h, w, self.config.base_width, self.norm, frames=_frames(self.targets))
        self.net.reset_parameters(generator)
        self.net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, betas=self.config.betas)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        # A non-finite loss leaves network and Adam as they were; the caller sees d_loss = NaN/inf and stops.
        if torch.isfinite(loss):
            loss.backward()
            self.optimizer.step()

    def _state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def _prepare_load(self, state: Mapping[str, Any]):
        net = copy.deepcopy(self.net)
        net.load_state_dict(state["net"])
        optimizer = torch.optim.Adam(net.parameters(), lr=self.config.lr, betas=self.config.betas)
        optimizer.load_state_dict(state["optimizer"])

        def commit() -> None:
            self.net, self.optimizer = net, optimizer

        return commit


class AdversarialObjective(_TrainedObjective):
    """Non-saturating GAN objective with a DCGAN discriminator (blendtorch densityopt), BCE on logits."""

    name = "adversarial"
    norm = "batch"

    def _losses(self, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        real = self._target_batch(len(fake))
        real_logits, fake_logits = self.net(real), self.net(fake)
        loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        stats = {
            "d_loss": loss.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(),
            "d_sim": torch.sigmoid(fake_logits).mean().item(),
        }
        return loss, stats

    def update(self, fake: torch.Tensor) -> dict[str, float]:
        loss, stats = self._losses(self._check_fake(fake))
        self._step(loss)
        return stats

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        fake = self._check_fake(fake)
        with torch.no_grad():
            return self._losses(fake)[1]

    def rewards(self, fake: torch.Tensor) -> torch.Tensor:
        fake = self._check_fake(fake)
        with torch.no_grad():
            logits = self.net(fake)
        if self.config.reward == "log_d":
            return F.logsigmoid(logits).cpu()
        if self.config.reward == "prob":
            return torch.sigmoid(logits).cpu()
        return logits.cpu()


class WGANGPObjective(_TrainedObjective):
    """WGAN-GP critic (Gulrajani et al. 2017, as SPIRAL's reward); rewards are critic scores."""

    name = "wgan-gp"
    norm = "layer"

    def _scores(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = self._target_batch(len(fake))
        return real, self.net(real), self.net(fake)

    @staticmethod
    def _stats(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, float]:
        d_real, d_sim = real_scores.mean().item(), fake_scores.mean().item()
        return {"d_real": d_real, "d_sim": d_sim, "wasserstein": d_real - d_sim}

    def update(self, fake: torch.Tensor) -> dict[str, float]:
        fake = self._check_fake(fake)
        real, real_scores, fake_scores = self._scores(fake)
        # Pair every render with a target (cycling when there are fewer targets) for the penalty's interpolates.
        paired = real[torch.arange(len(fake), device=self.device) % len(real)]
        eps = torch.rand(len(fake), *[1] * (fake.ndim - 1), generator=self._rng).to(self.device)
        mixed = (eps * paired + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.net(mixed).sum(), mixed, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss = fake_scores.mean() - real_scores.mean() + self.config.gp_weight * penalty
        self._step(loss)
        return {"d_loss": loss.item(), "gp": penalty.item(), **self._stats(real_scores, fake_scores)}

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        fake = self._check_fake(fake)
        with torch.no_grad():
            _, real_scores, fake_scores = self._scores(fake)
        return self._stats(real_scores, fake_scores)

    def rewards(self, fake: torch.Tensor) -> torch.Tensor:
        fake = self._check_fake(fake)
        with torch.no_grad():
            return self.net(fake).cpu()


class MMDObjective(Objective):
    """MMD² between render and target features with a sum of RBF kernels (Meta-Sim); nothing is trained.

    Bandwidths are ``config.mmd_bandwidths`` × the median pairwise distance of renders ∪ targets, so the kernel
    follows the renders as they approach the targets. The reward of render i is the negative witness function
    r_i = mean_j k(x_i, y_j) − mean_{j≠i} k(x_i, x_j): its score-function gradient is −½ ∇ MMD², so raising the
    expected reward lowers MMD² (the second term keeps the renders from collapsing onto one image).
    Needs at least two targets and two renders per batch (unbiased estimate).
    """

    name = "mmd"
    loss_stat = "mmd2"
    CHUNK = 256

    def _build(self, generator: torch.Generator) -> None:
        if len(self.targets) < 2:
            raise TargetError("the MMD objective needs at least 2 target images, got 1")
        if self.config.feature_extractor == "random-conv":
            channels = self.targets.shape[-3]
            self.features: nn.Module = RandomConvFeatures(channels, generator, frames=_frames(self.targets))
        elif self.config.feature_extractor == "pixels":
            self.features = PixelFeatures()
        else:
            self.features = load_feature_extractor(self.config.feature_extractor)
        self.features.to(self.device)
        self._refresh_targets()

    def _refresh_targets(self, network: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The targets' features and their pairwise distances at the current blur (kept until the blur changes)."""
        features = self._features(self._view(self.targets), network)
        if network is None:
            self._target_features, self._target_sqdist = features, _sqdist(features, features)
            self._target_blur = self.blur
        return features, _sqdist(features, features)

    def _features(self, images: torch.Tensor, network: nn.Module | None = None) -> torch.Tensor:
        network = self.features if network is None else network
        with torch.no_grad():
            features = torch.cat([network(chunk) for chunk in images.split(self.CHUNK)]).double()
        if not torch.isfinite(features).all():
            raise FeatureExtractorError(f"feature extractor {self.config.feature_extractor!r} gave NaN/inf features")
        return features

    def _kernels(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Kernel matrices k(x, x), k(x, y), k(y, y) for renders x and targets y."""
        return self._once_per_batch(fake, self._compute_kernels)

    def _compute_kernels(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fake = self._check_fake(fake)
        if len(fake) < 2:
            raise TargetError("the MMD objective needs at least 2 rendered images per batch, got 1")
        x = self._features(fake)
        if self._target_blur != self.blur:
            self._refresh_targets()
        d_xx, d_xy, d_yy = _sqdist(x, x), _sqdist(x, self._target_features), self._target_sqdist
        n, m = len(d_xx), len(d_yy)
        pooled = torch.cat(
            [
                d_xx[torch.triu_indices(n, n, 1, device=self.device).unbind()],
                d_xy.flatten(),
                d_yy[torch.triu_indices(m, m, 1, device=self.device).unbind()],
            ]
        )
        median = pooled.median()
        if median <= 0:
            # Every image identical: any positive bandwidth gives the same (zero) MMD².
            median = torch.ones_like(median)
        scales = 2 * median * torch.tensor(self.config.mmd_bandwidths, dtype=torch.float64, device=self.device) ** 2
        return tuple(torch.exp(-d.unsqueeze(-1) / scales).mean(dim=-1) for d in (d_xx, d_xy, d_yy))

    def _mmd2(self, k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
        return (_mean_off_diagonal(k_xx) + _mean_off_diagonal(k_yy) - 2 * k_xy.mean()).item()

    def update(self, fake: torch.Tensor) -> dict[str, float]:
        return self.evaluate(fake)

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        return {"mmd2": self._mmd2(*self._kernels(fake))}

    def rewards(self, fake: torch.Tensor) -> torch.Tensor:
        k_xx, k_xy, _ = self._kernels(fake)
        n = len(k_xx)
        repulsion = (k_xx.sum(dim=1) - k_xx.diagonal()) / (n - 1)
        return (k_xy.mean(dim=1) - repulsion).float().cpu()

    def _state(self) -> dict[str, Any]:
        return {"features": self.features.state_dict()}

    def _prepare_load(self, state: Mapping[str, Any]):
        features = copy.deepcopy(self.features)
        features.load_state_dict(state["features"])
        target_features, target_sqdist = self._refresh_targets(features)

        def commit() -> None:
            self.features, self._target_features, self._target_sqdist = features, target_features, target_sqdist
            self._target_blur = self.blur

        return commit


class EnergyObjective(Objective):
    """Energy distance (Székely & Rizzo) between renders and targets, on their pixels as the objective sees them
    (blurred by :attr:`blur`); nothing is trained, nothing can saturate.

    E = 2·E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖ ≥ 0 for renders X and targets Y, zero only when their distributions
    are equal. The reward of render i is r_i = mean_{j≠i} ‖x_i − x_j‖ − mean_j ‖x_i − y_j‖, whose
    score-function gradient is −½ ∇E: the first term keeps the renders spread (σ), the second pulls them to the
    targets (μ). Unlike a discriminator, which far from the targets tells every render from every target and then
    ranks them by accident, or an RBF kernel, whose gradient fades once images are farther apart than its
    bandwidth, ‖x − y‖ keeps growing with the distance, so a start far from the targets still gets its direction:
    measured on the independent-target scenes (bench/README.md), an L shape's tilt 70° away reached the targets in
    5 of 5 seeds against 1 of 3 with the discriminator. ``separation`` = E / (2·E‖X − Y‖) ∈ [0, 1] is the share
    of the render–target distance the parameters could still remove (0: renders pass for targets; near 1: nothing
    in common). Needs at least two targets and two renders per batch (unbiased estimate).
    """

    name = "energy"
    loss_stat = "energy"

    def _build(self, generator: torch.Generator) -> None:
        if len(self.targets) < 2:
            raise TargetError("the energy objective needs at least 2 target images, got 1")
        self._refresh_targets()

    def _refresh_targets(self) -> None:
        """The targets' pixels and their mean pairwise distance at the current blur (kept until it changes)."""
        self._target_pixels = self._view(self.targets).flatten(1).double()
        self._target_spread = _mean_off_diagonal(torch.cdist(self._target_pixels, self._target_pixels))
        self._target_blur = self.blur

    def _distances(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """‖x_i − x_j‖ (n, n) and ‖x_i − y_j‖ (n, N) for renders x and targets y."""
        return self._once_per_batch(fake, self._compute_distances)

    def _compute_distances(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fake = self._check_fake(fake)
        if len(fake) < 2:
            raise TargetError("the energy objective needs at least 2 rendered images per batch, got 1")
        if self._target_blur != self.blur:
            self._refresh_targets()
        pixels = fake.flatten(1).double()
        return torch.cdist(pixels, pixels), torch.cdist(pixels, self._target_pixels)

    def update(self, fake: torch.Tensor) -> dict[str, float]:
        return self.evaluate(fake)

    def evaluate(self, fake: torch.Tensor) -> dict[str, float]:
        d_xx, d_xy = self._distances(fake)
        cross = d_xy.mean()
        energy = 2 * cross - _mean_off_diagonal(d_xx) - self._target_spread
        separation = energy / (2 * cross) if cross > 0 else torch.zeros_like(energy)
        return {"energy": energy.item(), "separation": separation.item()}

    def rewards(self, fake: torch.Tensor) -> torch.Tensor:
        d_xx, d_xy = self._distances(fake)
        spread = d_xx.sum(dim=1) / (len(d_xx) - 1)
        return (spread - d_xy.mean(dim=1)).float().cpu()

    def _state(self) -> dict[str, Any]:
        return {}

    def _prepare_load(self, state: Mapping[str, Any]):
        return lambda: None


def _mean_off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """Mean of a square matrix without its diagonal (the unbiased mean of pairwise terms)."""
    n = len(matrix)
    return (matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))


def _to_cpu(state: Any) -> Any:
    """``state`` with every tensor in it on the CPU (CPU tensors are kept as they are, not copied)."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, Mapping):
        return type(state)((key, _to_cpu(value)) for key, value in state.items())
    if isinstance(state, list | tuple):
        return type(state)(_to_cpu(value) for value in state)
    return state


def _frames(images: torch.Tensor) -> int:
    """Frames per clip of (N, T, C, H, W) clips; 1 for (N, C, H, W) images."""
    return images.shape[1] if images.ndim == 5 else 1


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (len(a), len(b)), clamped at 0 against rounding."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)


OBJECTIVE_CLASSES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (AdversarialObjective, WGANGPObjective, MMDObjective, EnergyObjective)
}


def make_objective(
    name: str,
    targets: torch.Tensor,
    config: ObjectiveConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Objective:
    """The objective called ``name`` (a key of :data:`OBJECTIVE_CLASSES`) working on ``device``; ConfigError on an
    unknown name."""
    if name not in OBJECTIVE_CLASSES:
        raise ConfigError(f"unknown objective {name!r}; expected one of {sorted(OBJECTIVE_CLASSES)}")
    return OBJECTIVE_CLASSES[name](targets, config, generator, device)
