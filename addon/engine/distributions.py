"""Distributions over single scene parameters, learned by score-function gradients.

Each distribution holds its learnable parameters as unconstrained leaf tensors (a scale as log σ, probabilities as
logits) so that a plain Adam step can never make them invalid. Sampling takes an explicit ``torch.Generator``:
the same generator state gives the same samples. ``to_dict`` gives readable, JSON-safe values (σ, not log σ);
``state_dict`` gives the raw tensors, for exact checkpoints.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import distributions as td
from torch.special import log_ndtr, ndtri

from .errors import DistributionError

Value = float | int | bool

# Logits are kept finite (a probability of exactly 0 or 1 becomes ±LOGIT_LIMIT) so parameter tensors stay finite:
# NaN/inf checks on parameters then mean something, and Bernoulli's log_prob never computes inf − inf.
LOGIT_LIMIT = 30.0
PROB_TOLERANCE = 1e-6
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# How closely a derived value given back to from_dict (a truncated normal's mean, std) must match the parameters.
DERIVED_TOLERANCE = 1e-6


def _real(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DistributionError(f"{kind}: {name} must be a finite number, got {value!r}")
    return float(value)


def _positive(kind: str, name: str, value: Any) -> float:
    number = _real(kind, name, value)
    if number <= 0:
        raise DistributionError(f"{kind}: {name} must be > 0, got {value!r}")
    return number


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


class Distribution:
    """One scalar scene parameter. Subclasses define ``kind``, their parameter tensors and the maths."""

    kind: ClassVar[str]
    # The keys ``from_dict`` requires (the constructor's), and those it accepts but does not require.
    required_keys: ClassVar[tuple[str, ...]]
    optional_keys: ClassVar[tuple[str, ...]] = ()
    # Where ``values()`` reports a parameter under another name (reported name → constructor key), and the keys
    # it adds that follow from the parameters: ``from_dict`` reads both back (derived values must agree).
    reported_keys: ClassVar[dict[str, str]] = {}
    derived_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: dict[str, torch.Tensor], fixed: bool) -> None:
        if not isinstance(fixed, bool):
            raise DistributionError(f"{self.kind}: fixed must be true or false, got {fixed!r}")
        self.fixed = fixed
        self._params = {name: tensor.requires_grad_(not fixed) for name, tensor in params.items()}

    def learnable(self) -> list[torch.Tensor]:
        """Unconstrained leaf tensors an optimizer may step; none when the distribution is fixed."""
        return [] if self.fixed else list(self._params.values())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` raw samples, float32 shape (n,), without gradient (categorical: the index as a float)."""
        with torch.no_grad():
            return self._sample(n, generator).to(torch.float32)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (or mass) of raw samples, shape (n,), differentiable w.r.t. ``learnable()``."""
        raise NotImplementedError

    def entropy(self) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, x: float) -> Value:
        """The scene value of a raw sample."""
        return float(x)

    def mean_value(self) -> Value:
        """The single most representative scene value ("apply mean to scene")."""
        raise NotImplementedError

    def values(self) -> dict[str, Any]:
        """Readable parameters in the property's units."""
        raise NotImplementedError

    def project_(self, min_scale: float) -> None:
        """Keep learned scales at or above ``min_scale`` (σ floor against collapse); called after optimizer steps."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fixed": self.fixed, **self.values()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: tensor.detach().clone() for name, tensor in self._params.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy raw parameters in place, so optimizers holding ``learnable()`` keep working."""
        self.check_state(state)
        with torch.no_grad():
            for name, tensor in self._params.items():
                tensor.copy_(state[name])

    def check_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Raise DistributionError unless ``state`` fits ``load_state_dict``."""
        if not isinstance(state, Mapping) or set(state) != set(self._params):
            raise DistributionError(f"{self.kind}: state must have the keys {sorted(self._params)}")
        for name, tensor in self._params.items():
            value = state[name]
            if not isinstance(value, torch.Tensor) or value.shape != tensor.shape or not torch.isfinite(value).all():
                raise DistributionError(f"{self.kind}: state {name!r} must be a finite tensor of shape {tensor.shape}")


class _LocationScale(Distribution):
    """Shared by distributions learning (mu, log σ)."""

    def __init__(self, mu: float, sigma: float, fixed: bool) -> None:
        mu, sigma = _real(self.kind, "mu", mu), _positive(self.kind, "sigma", sigma)
        super().__init__({"mu": _scalar(mu), "log_sigma": _scalar(math.log(sigma))}, fixed)

    @property
    def mu(self) -> torch.Tensor:
        return self._params["mu"]

    @property
    def sigma(self) -> torch.Tensor:
        return self._params["log_sigma"].exp()

    def values(self) -> dict[str, Any]:
        # float64 so that from_dict(to_dict()) recovers the float32 log σ exactly.
        return {"mu": self.mu.item(), "sigma": math.exp(self._params["log_sigma"].item())}

    def project_(self, min_scale: float) -> None:
        if not self.fixed and min_scale > 0:
            floor = torch.tensor(math.log(min_scale), dtype=torch.float32)
            if math.exp(floor.item()) < min_scale:  # rounded down to float32: step up so that σ >= min_scale holds
                floor = torch.nextafter(floor, torch.tensor(math.inf))
            with torch.no_grad():
                self._params["log_sigma"].clamp_(min=floor)


class Normal(_LocationScale):
    kind = "normal"
    required_keys = ("mu", "sigma")

    def __init__(self, mu: float, sigma: float, fixed: bool = False) -> None:
        super().__init__(mu, sigma, fixed)

    def _torch(self) -> td.Normal:
        return td.Normal(self.mu, self.sigma, validate_args=False)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.mu + self.sigma * torch.randn(n, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._torch().log_prob(x)

    def entropy(self) -> torch.Tensor:
        return self._torch().entropy()

    def mean_value(self) -> float:
        return self.mu.item()


class LogNormal(_LocationScale):
    """log x ~ Normal(mu, σ): torch's LogNormal(loc=mu, scale=σ), as in blendtorch's densityopt."""

    kind = "lognormal"
    required_keys = ("mu", "sigma")

    def __init__(self, mu: float, sigma: float, fixed: bool = False) -> None:
        super().__init__(mu, sigma, fixed)

    def _torch(self) -> td.LogNormal:
        return td.LogNormal(self.mu, self.sigma, validate_args=False)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.exp(self.mu + self.sigma * torch.randn(n, generator=generator))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        positive = x > 0
        # A placeholder of 1 where x <= 0 keeps log(x) (and so the gradient) finite in the discarded branch.
        log_p = self._torch().log_prob(torch.where(positive, x, torch.ones_like(x)))
        return torch.where(positive, log_p, torch.full_like(log_p, -math.inf))

    def entropy(self) -> torch.Tensor:
        return self._torch().entropy()

    def mean_value(self) -> float:
        values = self.values()
        return math.exp(values["mu"] + values["sigma"] ** 2 / 2)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, accurate both near 0 and far below it (Mächler 2012)."""
    return torch.log(-torch.expm1(x)) if x > -math.log(2) else torch.log1p(-torch.exp(x))


def _ndtri_log(log_p: torch.Tensor) -> torch.Tensor:
    """z with log Φ(z) = log_p, also where exp(log_p) underflows (log_p < −745)."""
    p = torch.exp(log_p)
    z = torch.where(p > 0, ndtri(p), -torch.sqrt(-2 * log_p))
    # Newton on the concave log Φ: exact starts stay put, the asymptotic start (which undershoots) converges from
    # below within a few steps.
    for _ in range(4):
        z = z - (log_ndtr(z) - log_p) / torch.exp(_log_phi(z) - log_ndtr(z))
    return z


def _log_phi(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - HALF_LOG_2PI


class TruncatedNormal(_LocationScale):
    """Normal(mu, σ) restricted to [low, high] and renormalised; for properties with hard limits.

    mu and σ are those of the parent normal; mu may lie outside [low, high] (a density falling off from a bound is a
    legitimate fit). The distribution's own moments are :attr:`mean`, :attr:`variance` and :attr:`stddev`, and
    ``values()`` reports them as "mean" and "std", with the parent's parameters as "parent_mu" and
    "parent_sigma" (a parent μ of 1.29 on [0, 1] is a mean of about 0.6). The maths runs in float64 and on the
    side of the lighter tail, so it stays finite even when [low, high] lies many σ from mu.
    """

    kind = "truncnormal"
    required_keys = ("mu", "sigma", "low", "high")
    reported_keys = {"parent_mu": "mu", "parent_sigma": "sigma"}
    derived_keys = ("mean", "std")

    def __init__(self, mu: float, sigma: float, low: float, high: float, fixed: bool = False) -> None:
        self.low, self.high = _real(self.kind, "low", low), _real(self.kind, "high", high)
        if self.low >= self.high:
            raise DistributionError(f"{self.kind}: low must be < high, got low={low!r}, high={high!r}")
        super().__init__(mu, sigma, fixed)

    def _standardised(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, sigma = self.mu.double(), self.sigma.double()
        return mu, sigma, (self.low - mu) / sigma, (self.high - mu) / sigma

    @staticmethod
    def _log_mass(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """log(Φ(β) − Φ(α)); mirrored into the lower tail, where Φ does not round to 1."""
        if alpha > 0:
            alpha, beta = -beta, -alpha
        log_a, log_b = log_ndtr(alpha), log_ndtr(beta)
        return log_b + _log1mexp(log_a - log_b)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # Inverse CDF in log space: Φ(α) + u·(Φ(β) − Φ(α)) may underflow when [low, high] lies far out in a tail.
        mu, sigma, alpha, beta = self._standardised()
        mirrored = bool(alpha > 0)
        if mirrored:
            alpha, beta = -beta, -alpha
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        log_p = torch.logaddexp(log_ndtr(alpha), torch.log(u) + self._log_mass(alpha, beta))
        z = _ndtri_log(log_p)
        return (mu + sigma * (-z if mirrored else z)).clamp(self.low, self.high)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        # Bounds are compared in x's own dtype: a float32 sample clamped to [low, high] in float64 and then rounded
        # still counts as inside, because rounding is monotonic.
        inside = (x >= self.low) & (x <= self.high)
        mu, sigma, alpha, beta = self._standardised()
        log_p = _log_phi((x.double() - mu) / sigma) - torch.log(sigma) - self._log_mass(alpha, beta)
        return torch.where(inside, log_p, torch.full_like(log_p, -math.inf)).to(torch.float32)

    def entropy(self) -> torch.Tensor:
        _, sigma, alpha, beta = self._standardised()
        log_mass = self._log_mass(alpha, beta)
        alpha_term = alpha * torch.exp(_log_phi(alpha) - log_mass)
        beta_term = beta * torch.exp(_log_phi(beta) - log_mass)
        entropy = 0.5 + HALF_LOG_2PI + torch.log(sigma) + log_mass + 0.5 * (alpha_term - beta_term)
        return entropy.to(torch.float32)

    def decode(self, x: float) -> float:
        return min(max(float(x), self.low), self.high)

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """E[x] and Var[x] of the truncated distribution (float64, differentiable): with Z = Φ(β) − Φ(α),
        E = μ + σ(φ(α) − φ(β))/Z and Var = σ²(1 + (αφ(α) − βφ(β))/Z − ((φ(α) − φ(β))/Z)²)."""
        mu, sigma, alpha, beta = self._standardised()
        log_mass = self._log_mass(alpha, beta)
        phi_alpha, phi_beta = torch.exp(_log_phi(alpha) - log_mass), torch.exp(_log_phi(beta) - log_mass)
        shift = phi_alpha - phi_beta
        mean = (mu + sigma * shift).clamp(self.low, self.high)
        variance = (sigma * sigma * (1 + alpha * phi_alpha - beta * phi_beta - shift * shift)).clamp(min=0.0)
        return mean, variance

    @property
    def mean(self) -> torch.Tensor:
        """The truncated distribution's mean (float64), always within [low, high]."""
        return self._moments()[0]

    @property
    def variance(self) -> torch.Tensor:
        return self._moments()[1]

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    def mean_value(self) -> float:
        with torch.no_grad():
            return self.decode(self.mean.item())

    def values(self) -> dict[str, Any]:
        with torch.no_grad():
            mean, variance = self._moments()
        parent = super().values()
        return {
            "mean": mean.item(),
            "std": math.sqrt(variance.item()),
            "parent_mu": parent["mu"],
            "parent_sigma": parent["sigma"],
            "low": self.low,
            "high": self.high,
        }


class Categorical(Distribution):
    """A choice among ``len(probs)`` options; samples are indices, ``decode`` maps them to ``choices``."""

    kind = "categorical"
    required_keys = ("probs",)
    optional_keys = ("choices",)

    def __init__(self, probs: Sequence[float], choices: Sequence[Value] | None = None, fixed: bool = False) -> None:
        if isinstance(probs, str | bytes) or not isinstance(probs, Sequence) or len(probs) == 0:
            raise DistributionError(f"{self.kind}: probs must be a non-empty list of numbers, got {probs!r}")
        values = [_real(self.kind, f"probs[{i}]", p) for i, p in enumerate(probs)]
        if min(values) < 0:
            raise DistributionError(f"{self.kind}: probs must be >= 0, got {list(probs)!r}")
        if abs(math.fsum(values) - 1) > PROB_TOLERANCE:
            raise DistributionError(f"{self.kind}: probs must sum to 1, got {list(probs)!r} (sum {math.fsum(values)})")
        if choices is None:
            choices = list(range(len(values)))
        if isinstance(choices, str | bytes) or not isinstance(choices, Sequence) or len(choices) != len(values):
            raise DistributionError(
                f"{self.kind}: choices must be a list of {len(values)} numbers or booleans (one per prob), "
                f"got {choices!r}"
            )
        for i, choice in enumerate(choices):
            if not isinstance(choice, bool):
                _real(self.kind, f"choices[{i}]", choice)
        self.choices: list[Value] = list(choices)
        logits = torch.log(torch.tensor(values, dtype=torch.float64)).clamp(min=-LOGIT_LIMIT)
        super().__init__({"logits": logits.to(torch.float32)}, fixed)

    def _torch(self) -> td.Categorical:
        return td.Categorical(logits=self._params["logits"], validate_args=False)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self._torch().probs, n, replacement=True, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._torch().log_prob(x.long())

    def entropy(self) -> torch.Tensor:
        return self._torch().entropy()

    def decode(self, x: float) -> Value:
        return self.choices[int(x)]

    def mean_value(self) -> Value:
        return self.choices[int(torch.argmax(self._params["logits"]))]

    def values(self) -> dict[str, Any]:
        return {
            "probs": torch.softmax(self._params["logits"].detach().double(), 0).tolist(),
            "choices": list(self.choices),
        }


class Bernoulli(Distribution):
    """On/off with probability p of on; samples are 0.0/1.0, decoded to bool."""

    kind = "bernoulli"
    required_keys = ("p",)

    def __init__(self, p: float, fixed: bool = False) -> None:
        p = _real(self.kind, "p", p)
        if not 0 <= p <= 1:
            raise DistributionError(f"{self.kind}: p must be in [0, 1], got {p!r}")
        logit = math.log(p) - math.log1p(-p) if 0 < p < 1 else math.copysign(LOGIT_LIMIT, p - 0.5)
        super().__init__({"logit": _scalar(max(-LOGIT_LIMIT, min(LOGIT_LIMIT, logit)))}, fixed)

    def _torch(self) -> td.Bernoulli:
        return td.Bernoulli(logits=self._params["logit"], validate_args=False)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < torch.sigmoid(self._params["logit"])).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._torch().log_prob(x.float())

    def entropy(self) -> torch.Tensor:
        return self._torch().entropy()

    def decode(self, x: float) -> bool:
        return float(x) > 0.5

    def mean_value(self) -> bool:
        return self._params["logit"].item() > 0

    def values(self) -> dict[str, Any]:
        return {"p": 1 / (1 + math.exp(-self._params["logit"].item()))}


KINDS: dict[str, type[Distribution]] = {
    cls.kind: cls for cls in (Normal, LogNormal, TruncatedNormal, Categorical, Bernoulli)
}


def distribution_from_dict(d: Mapping[str, Any]) -> Distribution:
    """Inverse of ``Distribution.to_dict``; ``fixed`` may be omitted (false). Unknown keys are rejected. Takes the
    constructor's keys or the form ``values()`` reports (a truncated normal's parent_mu/parent_sigma for mu/sigma;
    its mean and std, derived, must then agree with them)."""
    if not isinstance(d, Mapping):
        raise DistributionError(f"a distribution must be a mapping with a 'kind', got {d!r}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise DistributionError(f"unknown distribution kind {kind!r}; expected one of {sorted(KINDS)}")
    cls = KINDS[kind]
    d = dict(d)
    for reported, key in cls.reported_keys.items():
        if reported in d:
            if key in d:
                raise DistributionError(f"{kind}: give {key!r} or {reported!r} (the same parameter), not both")
            d[key] = d.pop(reported)
    derived = {key: d.pop(key) for key in cls.derived_keys if key in d}
    missing = [key for key in cls.required_keys if key not in d]
    if missing:
        raise DistributionError(f"{kind}: missing key(s) {missing}")
    unknown = sorted(set(d) - {"kind", "fixed", *cls.required_keys, *cls.optional_keys})
    if unknown:
        raise DistributionError(f"{kind}: unknown key(s) {unknown}")
    args = {key: d[key] for key in (*cls.required_keys, *cls.optional_keys) if key in d}
    distribution = cls(**args, fixed=d.get("fixed", False))
    if derived:
        values = distribution.values()
        for key, value in derived.items():
            number = _real(kind, key, value)
            if not math.isclose(number, values[key], rel_tol=DERIVED_TOLERANCE, abs_tol=DERIVED_TOLERANCE):
                raise DistributionError(
                    f"{kind}: {key}={value!r} does not follow from the parameters, which give {values[key]!r}; "
                    f"{key} is reported, not set: leave it out or change the parameters"
                )
    return distribution


class ParameterSpace:
    """Independent distributions over named scene parameters, sampled and scored jointly (columns in label order)."""

    def __init__(self, distributions: Mapping[str, Distribution]) -> None:
        if not distributions:
            raise DistributionError("a parameter space needs at least one distribution")
        for label, dist in distributions.items():
            if not isinstance(label, str) or not label:
                raise DistributionError(f"parameter labels must be non-empty strings, got {label!r}")
            if not isinstance(dist, Distribution):
                raise DistributionError(f"parameter {label!r}: expected a Distribution, got {type(dist).__name__}")
        self.distributions = dict(distributions)

    @property
    def labels(self) -> list[str]:
        return list(self.distributions)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, D) float32, column i sampled from distribution i."""
        return torch.stack([dist.sample(n, generator) for dist in self.distributions.values()], dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Joint log-probability (n,) of rows of ``x`` (n, D)."""
        return self.log_prob_terms(x).sum(dim=1)

    def log_prob_terms(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probability of each column under its own distribution, (n, D) for rows of ``x`` (n, D)."""
        if x.ndim != 2 or x.shape[1] != len(self.distributions):
            raise DistributionError(f"samples must have shape (n, {len(self.distributions)}), got {tuple(x.shape)}")
        return torch.stack([dist.log_prob(x[:, i]) for i, dist in enumerate(self.distributions.values())], dim=1)

    def entropy(self) -> torch.Tensor:
        return sum(dist.entropy() for dist in self.distributions.values())

    def learnable(self) -> list[torch.Tensor]:
        return [tensor for dist in self.distributions.values() for tensor in dist.learnable()]

    def decode(self, row: torch.Tensor) -> dict[str, Value]:
        return {label: dist.decode(float(x)) for (label, dist), x in zip(self.distributions.items(), row, strict=True)}

    def values(self) -> dict[str, dict[str, Any]]:
        return {label: dist.values() for label, dist in self.distributions.items()}

    def project_(self, min_scale: float) -> None:
        for dist in self.distributions.values():
            dist.project_(min_scale)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {label: dist.to_dict() for label, dist in self.distributions.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> ParameterSpace:
        if not isinstance(d, Mapping):
            raise DistributionError(f"a parameter space must be a mapping of label to distribution, got {d!r}")
        distributions = {}
        for label, spec in d.items():
            try:
                distributions[label] = distribution_from_dict(spec)
            except DistributionError as error:
                raise DistributionError(f"parameter {label!r}: {error}") from error
        return cls(distributions)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Raw parameter tensors by label, for exact checkpoints (``torch.load(weights_only=True)`` safe)."""
        return {label: dist.state_dict() for label, dist in self.distributions.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """In place; validated completely before anything is copied."""
        if not isinstance(state, Mapping) or set(state) != set(self.distributions):
            raise DistributionError(f"state must have the labels {sorted(self.distributions)}")
        for label, dist in self.distributions.items():
            try:
                dist.check_state(state[label])
            except DistributionError as error:
                raise DistributionError(f"parameter {label!r}: {error}") from error
        for label, dist in self.distributions.items():
            dist.load_state_dict(state[label])
