"""Score-function (REINFORCE) estimator: per-sample rewards → a surrogate loss whose gradient estimates ∇ E[reward].

The renderer gives no gradients, so for samples x ~ p_θ with rewards r the parameters follow
∇θ E[r] ≈ mean((r − b) ∇θ log p_θ(x)). A baseline b that does not depend on x keeps the estimate unbiased and
lowers its variance: an exponential moving average of past rewards (blendtorch's densityopt) or, per sample, the mean
of the *other* rewards of the batch (leave-one-out).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from .errors import ConfigError, TrainingError
from .vocabulary import BASELINES

# Ridge of the per-property baseline's regression, per sample of the batch (features standardised): keeps the fit
# from following the noise of a small batch with many properties. On the light_and_colour lookup table (8 seeds,
# 150 steps) the red's σ/σ* ended 1.23 / 1.10 / 1.09 / 1.12 with 0.01 / 0.03 / 0.1 / 0.3.
PER_PROPERTY_RIDGE = 0.1
# Added to the advantages' standard deviation so a batch of equal rewards gives zero, not NaN.
NORMALIZE_EPS = 1e-8
# Rewards whose spread is below this fraction of their size are equal (float32 rounding): they carry no direction,
# and normalising their rounding residue would make a full-size step out of nothing.
TIED_REWARDS = 1e-5


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"estimator: {name} must be a finite number, got {value!r}")
    return float(value)


@dataclass
class EstimatorConfig:
    """How rewards become gradients. ``min_scale`` is the σ floor the optimizer applies via ``space.project_``."""

    baseline: str = "loo"
    ema_init: float | None = None  # None: the first batch's mean reward starts the average
    ema_new_weight: float = 0.9  # b ← w·mean(r) + (1 − w)·b
    normalize_advantages: bool = False
    entropy_weight: float = 0.0
    min_scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ConfigError(f"estimator: unknown baseline {self.baseline!r}; expected one of {list(BASELINES)}")
        if self.ema_init is not None:
            self.ema_init = _finite("ema_init", self.ema_init)
        self.ema_new_weight = _finite("ema_new_weight", self.ema_new_weight)
        if not 0 < self.ema_new_weight <= 1:
            raise ConfigError(f"estimator: ema_new_weight must be in (0, 1], got {self.ema_new_weight!r}")
        if not isinstance(self.normalize_advantages, bool):
            raise ConfigError(
                f"estimator: normalize_advantages must be true or false, got {self.normalize_advantages!r}"
            )
        for name in ("entropy_weight", "min_scale"):
            if _finite(name, getattr(self, name)) < 0:
                raise ConfigError(f"estimator: {name} must be >= 0, got {getattr(self, name)!r}")
            setattr(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EstimatorConfig:
        """Missing keys take their defaults; unknown keys are rejected (a typo must not pass silently)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"estimator: settings must be a mapping, got {d!r}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"estimator: unknown setting(s) {unknown}")
        return cls(**d)


class ScoreFunctionEstimator:
    """Turns a batch's log-probabilities and rewards into a loss to minimise; keeps the moving baseline."""

    def __init__(self, config: EstimatorConfig) -> None:
        self.config = config
        self.baseline: float | None = config.ema_init if config.baseline == "ema" else None

    def surrogate(
        self,
        log_prob: torch.Tensor,
        rewards: torch.Tensor,
        entropy: torch.Tensor,
        features: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """−mean(Σ_k A_k · log_prob_k) − entropy_weight · entropy, A = rewards − baseline (higher reward = better).

        ``log_prob`` is (n,) joint or (n, D) per property. The "per-property" baseline needs the (n, D) terms and
        ``features``: per property, an (n, k) description of each sample's draw of it (its score, k = its number of
        learned parameters; k = 0 for one that learns nothing). The moving baseline is updated only once the loss
        is known to be finite; on a TrainingError nothing changes.
        """
        terms = log_prob if log_prob.ndim == 2 else log_prob.unsqueeze(1)
        if log_prob.ndim not in (1, 2) or rewards.shape != terms.shape[:1]:
            shapes = f"{tuple(log_prob.shape)} and {tuple(rewards.shape)}"
            raise TrainingError(f"log_prob must have shape (n,) or (n, D) and rewards (n,), got {shapes}")
        rewards = rewards.detach().to(log_prob.dtype)
        if not torch.isfinite(rewards).all():
            raise TrainingError(f"rewards contain NaN or inf: {rewards.tolist()}")
        if self.config.baseline == "per-property":
            if features is None or len(features) != terms.shape[1]:
                raise TrainingError("the per-property baseline needs (n, D) log-probabilities and D feature blocks")
            advantages, baseline = _per_property_advantages(rewards, features), None
        else:
            advantages, baseline = self._advantages(rewards)
            advantages = advantages.unsqueeze(1)
        if self.config.normalize_advantages:
            tied = rewards.std(correction=0) <= TIED_REWARDS * max(1.0, rewards.abs().max().item())
            advantages = (
                torch.zeros_like(advantages)
                if tied
                else advantages / (advantages.std(dim=0, correction=0) + NORMALIZE_EPS)
            )
        loss = -(advantages * terms).sum(dim=1).mean() - self.config.entropy_weight * entropy
        if not torch.isfinite(loss):
            raise TrainingError(f"the score-function loss is {loss.item()} (log_prob or entropy not finite)")
        self.baseline = baseline
        return loss

    def _advantages(self, rewards: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """Advantages for this batch and the baseline state to keep afterwards."""
        kind = self.config.baseline
        if kind == "none":
            return rewards, None
        if kind == "loo":
            n = len(rewards)
            if n < 2:
                raise TrainingError("the leave-one-out baseline needs at least 2 samples per batch, got 1")
            return rewards - (rewards.sum() - rewards) / (n - 1), None
        mean = rewards.mean().item()
        old = mean if self.baseline is None else self.baseline
        w = self.config.ema_new_weight
        return rewards - old, w * mean + (1 - w) * old

    def state_dict(self) -> dict[str, float | None]:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or set(state) != {"baseline"}:
            raise TrainingError(f"estimator state must be {{'baseline': float | None}}, got {state!r}")
        baseline = state["baseline"]
        if isinstance(baseline, torch.Tensor):
            baseline = baseline.item()
        if baseline is not None and (
            isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not math.isfinite(baseline)
        ):
            raise TrainingError(f"estimator state: baseline must be a finite number or None, got {baseline!r}")
        self.baseline = None if baseline is None else float(baseline)


def _per_property_advantages(rewards: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
    """(n, D) advantages: for property k, each reward minus its leave-one-out prediction from the other
    properties' draws (a ridge regression on their features, with an intercept).

    A reward mixes what every property's draw did to the image; for property k, the part that the others explain
    is noise in its gradient (a sun's strength dwarfs a colour channel learned beside it: bench/README.md,
    "Several properties at once"). The prediction never looks at property k's own draw nor
    at sample i's reward, so it is a baseline (the gradient stays unbiased; property draws are independent). With
    one property it is the leave-one-out mean.
    """
    n = len(rewards)
    if n < 2:
        raise TrainingError(f"the per-property baseline needs at least 2 samples per batch, got {n}")
    blocks = [_standardised(block.detach().to(rewards.dtype)) if block.shape[1] else None for block in features]
    columns = []
    for k in range(len(blocks)):
        others = [block for j, block in enumerate(blocks) if j != k and block is not None and block.shape[1]]
        if others:
            design = torch.cat([torch.ones(n, 1, dtype=rewards.dtype), *others], dim=1)
            columns.append(_leave_one_out_residuals(design, rewards))
        else:  # nothing else varies: the plain leave-one-out mean, exactly as the "loo" baseline computes it
            columns.append(rewards - (rewards.sum() - rewards) / (n - 1))
    return torch.stack(columns, dim=1)


def _standardised(block: torch.Tensor) -> torch.Tensor:
    """Columns centred and scaled to unit spread; constant columns dropped (they explain nothing)."""
    spread = block.std(dim=0, correction=0)
    kept = spread > 1e-12
    return (block[:, kept] - block[:, kept].mean(dim=0)) / spread[kept]


def _leave_one_out_residuals(design: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """r_i − the ridge fit's prediction of r_i from the other samples: e_i / (1 − h_ii) (the hat-matrix identity,
    exact for ridge regression; the intercept is not shrunk)."""
    n, width = design.shape
    penalty = torch.full((width,), PER_PROPERTY_RIDGE * n, dtype=design.dtype)
    penalty[0] = 0.0
    gram_inverse = torch.linalg.inv(design.T @ design + torch.diag(penalty))
    residuals = rewards - design @ (gram_inverse @ (design.T @ rewards))
    leverage = ((design @ gram_inverse) * design).sum(dim=1)
    return residuals / (1.0 - leverage)
