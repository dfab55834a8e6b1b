"""The ask/tell optimizer: sample scene parameters, receive their renders, learn the parameter distribution.

``ask(n)`` draws n samples from the current :class:`ParameterSpace`, each with a unique id. ``tell(ids, images)``
takes the renders of some of them (in any order, matched by id), trains the objective's discriminator/critic on
them, and takes one score-function (REINFORCE) step on the distribution's parameters with Adam. The renderer is
a black box: gradients come only from ``log_prob`` of the stored raw samples.

Threading: the Blender main thread calls ``ask`` while a training thread calls ``tell``. A lock makes sampling and
the (short) in-place parameter update exclusive; the heavy work of ``tell`` runs outside it so that ``ask`` never
waits for a discriminator step.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import numbers
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import diagnostics
from .distributions import ParameterSpace, Value
from .errors import ConfigError, SceneFitError, TargetError, TrainingError, cut, quote
from .estimators import EstimatorConfig, ScoreFunctionEstimator
from .objectives import Objective, ObjectiveConfig, make_objective
from .presets import default_baseline
from .vocabulary import DEVICES, GAP_OBJECTIVES, OBJECTIVES

CHECKPOINT_FORMAT = "scenefit-optimizer"
CHECKPOINT_VERSION = 2
_STATE_KEYS = (
    *("format", "version", "config", "space_structure", "image_shape", "history"),
    *("space", "average", "objective", "estimator", "param_optimizer", "param_started", "param_steps"),
    *("step", "renders"),
    *("sample_rng", "next_id", "pending_ids", "pending_samples", "pending_drawn_with"),
)
# Renders may overshoot [0, 1] by rounding (e.g. 1.0000001 after colour management); more than this is a bug.
_RANGE_SLACK = 1e-3
# ObjectiveConfig fields that OptimizerConfig sets itself (d_lr, d_betas, feature_extractor): not in objective_options.
_OWN_OBJECTIVE_FIELDS = ("lr", "betas", "feature_extractor")


@dataclass
class OptimizerConfig:
    """Settings of an :class:`AskTellOptimizer`. Invalid values raise :class:`ConfigError` naming the field.

    objective: "energy" | "adversarial" | "wgan-gp" | "mmd" (engine.vocabulary).
    estimator: how rewards become gradients (baseline, advantage normalisation, σ floor…).
    batch_size: samples per ``ask()`` (a tell needs at least 2 images).
    d_steps: discriminator/critic updates per tell (0 trains nothing, as MMD needs). d_lr, d_betas: their Adam.
    param_lr, param_betas: Adam of the distribution parameters.
    param_lr_half_life: when set, the parameter learning rate halves every ``param_lr_half_life`` parameter steps
    (param_lr · 2^(−t / half-life)): steps shrink from fast travel to fine settling and then stop, so a long run
    stays where it converged (a 1/t decay keeps moving without bound, and a discriminator that has learned the
    targets by heart then drags the parameters away).
    param_average: when set, the learned distribution — what ``values()``, ``StepStats.values`` and the history
    report, and the Blender layer writes back — is an exponential moving average of the (unconstrained)
    parameters with decay d = param_average, bias-corrected like Adam's moments so that it does not lean toward
    the starting point: after parameter step k, avg ← avg + (θ − avg)·(1 − d)/(1 − dᵏ) (Polyak averaging, as for
    GAN generators: Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"). Samples keep
    coming from the current parameters θ; the average removes the slow oscillation the adversarial game leaves
    in them. Measured on the supershape demo's real renders (64 px Workbench, 5 seeds, still with a 1/t step
    decay), d = 0.9 brought the median renders until max|μ − μ*| < 0.1 holds for good from 784 to 464; the
    current figures are in bench/README.md.
    seed: seeds sampling and the networks' initialisation.
    d_gap_max: when set, each discriminator update happens only while D(real) − D(sim) < d_gap_max (the gap is
    measured on the batch right before the update).
    param_start_gap: when set, parameter steps start once the gap, measured before the tell's discriminator
    updates, first exceeds it; from then on every tell steps them. Both gap knobs need an objective with
    D(real)/D(sim) ("adversarial", "wgan-gp").
    feature_extractor: MMD features, "random-conv" / "pixels" / a TorchScript file (None: the objective's default).
    coarse_to_fine: when set, the objective first compares renders and targets blurred by this fraction of the
    image's shorter side (Gaussian σ; 1/16 is 4 px at 64×64), halving every ``coarse_half_life`` steps until it
    falls under a quarter pixel (then ``objective_options.input_blur`` holds). Seen coarsely, a pose or shape far
    from the targets' still looks more like them on the side where they are, so a start far from the truth gets a
    direction (a wide basin); the fine detail comes back as the run settles. Measured on independent targets
    (tests/independent_scenes.py): an L shape's tilt from 10° to targets at 80° went to −104° unblurred and to
    77–78° with 3–6 px (bench/README.md).
    coarse_half_life: steps in which the coarse-to-fine blur halves.
    objective_options: the other :class:`ObjectiveConfig` fields (reward, base_width, gp_weight, mmd_bandwidths,
    input_blur).
    device: where the objective works — "auto" (CUDA when torch has a GPU, else the CPU), "cpu" or "cuda". The
    parameter space and the score-function step always stay on the CPU (a few numbers). It is where this run
    works, not what it learns: a checkpoint resumes on any device (:func:`read_checkpoint`).
    """

    objective: str = "adversarial"
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    batch_size: int = 16
    d_steps: int = 1
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.5, 0.999)
    param_lr: float = 0.1
    param_betas: tuple[float, float] = (0.5, 0.999)
    param_lr_half_life: float | None = None
    param_average: float | None = None
    seed: int = 0
    d_gap_max: float | None = None
    param_start_gap: float | None = None
    feature_extractor: str | None = None
    coarse_to_fine: float | None = None
    coarse_half_life: float = 20.0
    objective_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; expected one of {sorted(OBJECTIVES)}")
        if not isinstance(self.estimator, EstimatorConfig):
            raise ConfigError(f"estimator must be an EstimatorConfig, got {type(self.estimator).__name__}")
        self.batch_size = _integer("batch_size", self.batch_size, minimum=2)
        self.d_steps = _integer("d_steps", self.d_steps, minimum=0)
        self.seed = _integer("seed", self.seed, minimum=0)
        self.d_lr = _number("d_lr", self.d_lr, positive=True)
        self.param_lr = _number("param_lr", self.param_lr, positive=True)
        if self.param_lr_half_life is not None:
            self.param_lr_half_life = _number("param_lr_half_life", self.param_lr_half_life, positive=True)
        if self.param_average is not None:
            self.param_average = _number("param_average", self.param_average)
            if not 0.0 <= self.param_average < 1.0:
                raise ConfigError(f"param_average must be in [0, 1), got {self.param_average!r}")
        if self.coarse_to_fine is not None:
            self.coarse_to_fine = _number("coarse_to_fine", self.coarse_to_fine)
            if not 0.0 <= self.coarse_to_fine <= 0.5:
                raise ConfigError(
                    f"coarse_to_fine must be a fraction of the image size in [0, 0.5], got {self.coarse_to_fine!r}"
                )
        self.coarse_half_life = _number("coarse_half_life", self.coarse_half_life, positive=True)
        self.d_betas = _betas("d_betas", self.d_betas)
        self.param_betas = _betas("param_betas", self.param_betas)
        for name in ("d_gap_max", "param_start_gap"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _number(name, value))
                if self.objective not in GAP_OBJECTIVES:
                    raise ConfigError(
                        f"{name} needs D(real)/D(sim) from an objective in {GAP_OBJECTIVES}; "
                        f"objective {self.objective!r} has none"
                    )
        if self.feature_extractor is not None and (
            not isinstance(self.feature_extractor, str) or not self.feature_extractor.strip()
        ):
            raise ConfigError(f"feature_extractor must be None or a non-empty string, got {self.feature_extractor!r}")
        if not isinstance(self.objective_options, Mapping):
            raise ConfigError(f"objective_options must be a mapping, got {self.objective_options!r}")
        self.objective_options = dict(self.objective_options)
        clash = sorted(set(self.objective_options) & set(_OWN_OBJECTIVE_FIELDS))
        if clash:
            raise ConfigError(f"objective_options may not set {clash}: use d_lr, d_betas and feature_extractor instead")
        self.objective_config()  # validates objective_options (ConfigError naming the field)
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' was asked for, but this torch has no CUDA GPU "
                f"(torch {torch.__version__}, built {'without' if torch.version.cuda is None else 'with'} CUDA); "
                "use device 'auto' or 'cpu'"
            )

    def torch_device(self) -> torch.device:
        """The device that :attr:`device` names on this machine ("auto": CUDA when torch has it)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def objective_config(self) -> ObjectiveConfig:
        own: dict[str, Any] = {"lr": self.d_lr, "betas": self.d_betas}
        if self.feature_extractor is not None:
            own["feature_extractor"] = self.feature_extractor
        return ObjectiveConfig.from_dict({**self.objective_options, **own})

    @classmethod
    def default(cls, **overrides: Any) -> OptimizerConfig:
        """SceneFit's own settings; ``overrides`` replace fields. The objective is the energy distance
        (``EnergyObjective``): on six scenes built and rendered without SceneFit (tests/independent_scenes.py) it
        found the targets from every start in 5 of 5 seeds, where the discriminator lost an L shape's tilt 70° away
        in 2 of 3 (bench/README.md).

        Small batches (16) and a large parameter step (Adam lr 0.1) make many parameter updates per render; the
        leave-one-out baseline with normalised advantages gives each step a well-scaled, low-variance direction from
        the first batch on (no warm-up gap as in blendtorch). With the energy distance the baseline is per property
        (``"per-property"``: each property's advantage also leaves out what the other properties' draws explain of
        the reward): a base colour's red channel learned beside a sun's strength that dwarfs it in the image ended
        at σ/σ* 1.12 instead of 1.93 (with the 150 steps a run of two properties gets, bench/README.md); with one
        property it is the leave-one-out baseline. The step halves every 45 parameter steps with the
        energy distance — its σ settles from above after the travel widened it, and at 30 the steps stopped before
        it had (Meta-Sim's yaw σ/σ* 2.4 against 1.3) — and every 30 with the adversarial objectives, whose σ
        narrowed and μ settled later with longer half-lives (supershape demo, bench/README.md). Those also report
        the running average of the parameters (``param_average`` 0.9), which the adversarial game otherwise leaves
        oscillating; the energy distance has no game and needs none. The discriminator's reward is its logit
        log D/(1 − D), an estimate of log p_target/p_render, so the expected reward is −KL(render ‖ target): unlike
        blendtorch's log D it also pulls σ to the target's spread instead of collapsing it. Renders are compared
        coarse to fine (``coarse_to_fine`` 1/16 of the image). The σ floor of 0.02 (in the learned scale's units;
        log-space for a LogNormal) keeps exploration alive.
        """
        objective = overrides.get("objective", "energy")
        config = cls(
            objective=objective,
            estimator=EstimatorConfig(
                baseline=default_baseline(objective),
                ema_init=None,
                normalize_advantages=True,
                entropy_weight=0.0,
                min_scale=0.02,
            ),
            batch_size=16,
            d_steps=1,
            d_lr=2e-4,
            d_betas=(0.5, 0.999),
            param_lr=0.1,
            param_betas=(0.5, 0.999),
            param_lr_half_life=45.0 if objective == "energy" else 30.0,
            param_average=None if objective == "energy" else 0.9,
            coarse_to_fine=1 / 16,
            objective_options={"reward": "logit"},
        )
        return config.replace(**overrides)

    @classmethod
    def blendtorch(cls, **overrides: Any) -> OptimizerConfig:
        """blendtorch's densityopt (examples/densityopt/densityopt.py), the baseline the benchmarks beat.

        Adam lr 5e-5, betas (0.5, 0.999) for the DCGAN discriminator; Adam lr 5e-2, betas (0.7, 0.999) for the
        parameters; batch 64; one discriminator update per batch, taken only while D(real) − D(sim) < 0.95;
        parameter steps once the gap first exceeds 0.7, then on every batch; reward log D(sim) = −errS =
        −BCE(D(sim), 1); moving-average baseline b = 0 for the first parameter step, then b ← 0.9·mean + 0.1·b.

        Where the issue text and blendtorch's code differ, this follows the code: the issue says the baseline
        starts at 0.7 and D is stepped while the gap is < 0.7; the code starts the baseline at 0 and steps D while
        the gap is < 0.95. One unavoidable difference remains: blendtorch sets b to the first batch's mean after
        the first step, while the EMA estimator keeps 0.9·mean + 0.1·0 (only the second step's baseline differs,
        by a tenth of the mean reward). blendtorch has no σ floor; ``min_scale`` is 1e-6 only to keep σ > 0.
        """
        config = cls(
            objective="adversarial",
            estimator=EstimatorConfig(
                baseline="ema", ema_init=0.0, ema_new_weight=0.9, normalize_advantages=False, min_scale=1e-6
            ),
            batch_size=64,
            d_steps=1,
            d_lr=5e-5,
            d_betas=(0.5, 0.999),
            param_lr=5e-2,
            param_betas=(0.7, 0.999),
            d_gap_max=0.95,
            param_start_gap=0.7,
            objective_options={"reward": "log_d"},
        )
        return config.replace(**overrides)

    def replace(self, **overrides: Any) -> OptimizerConfig:
        """A copy with some fields replaced (validated)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown optimizer setting(s) {unknown}")
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples as lists, the estimator as a nested dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["estimator"] = self.estimator.to_dict()
        data["d_betas"], data["param_betas"] = list(self.d_betas), list(self.param_betas)
        data["objective_options"] = json.loads(json.dumps(self.objective_options))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizerConfig:
        """Inverse of :meth:`to_dict`; missing keys take the defaults of the dataclass, unknown keys raise."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"optimizer settings must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown optimizer setting(s) {unknown}")
        values = dict(data)
        if "estimator" in values:
            values["estimator"] = EstimatorConfig.from_dict(values["estimator"])
        for name in ("d_betas", "param_betas"):
            if name in values and isinstance(values[name], list):
                values[name] = tuple(values[name])
        return cls(**values)


def _learning_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Optimizer settings as a dict without ``device``: a run resumed on another device learns the same way."""
    return {key: value for key, value in config.items() if key != "device"}


def _flat(space: ParameterSpace) -> torch.Tensor:
    """The space's learnable parameters as one detached vector (what a sample was drawn with)."""
    params = [p.detach().reshape(-1) for p in space.learnable()]
    return torch.cat(params).clone() if params else torch.zeros(0)


def _load_flat(space: ParameterSpace, flat: torch.Tensor) -> None:
    """Inverse of :func:`_flat`, in place; gradients cleared (a deep copy brings the original's along)."""
    offset = 0
    with torch.no_grad():
        for param in space.learnable():
            param.copy_(flat[offset : offset + param.numel()].view_as(param))
            param.grad = None
            offset += param.numel()


def _draw_features(space: ParameterSpace, raw: torch.Tensor) -> list[torch.Tensor]:
    """Per property, (n, k) scores ∇ log p(x_i) of each sample's draw w.r.t. its k learned parameters: what the
    per-property baseline regresses the rewards on (k = 0 for a property that learns nothing)."""
    terms = space.log_prob_terms(raw)
    features = []
    for column, distribution in enumerate(space.distributions.values()):
        params = distribution.learnable()
        scores = torch.zeros(len(raw), sum(p.numel() for p in params))
        for i in range(len(raw) if params else 0):
            gradients = torch.autograd.grad(terms[i, column], params, retain_graph=True)
            scores[i] = torch.cat([g.reshape(-1) for g in gradients])
        features.append(scores)
    return features


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _number(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _betas(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigError(f"{name} must be two numbers in [0, 1), got {value!r}")
    betas = tuple(_number(name, beta) for beta in value)
    if not all(0.0 <= beta < 1.0 for beta in betas):
        raise ConfigError(f"{name} must be two numbers in [0, 1), got {value!r}")
    return betas  # type: ignore[return-value]


@dataclass
class Sample:
    """One draw from the parameter space: ``values`` are the decoded scene values by label."""

    id: int
    values: dict[str, Value]


@dataclass
class StepStats:
    """What one ``tell`` did. d_loss/d_real/d_sim are None where the objective has no such number (MMD reports
    MMD² as d_loss); ``objective_stats`` holds everything the objective reported (before its updates)."""

    step: int
    renders: int
    param_step: bool
    d_updates: int
    d_loss: float | None
    d_real: float | None
    d_sim: float | None
    reward_mean: float
    values: dict[str, dict[str, Any]]
    objective_stats: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def images_to_tensor(images: np.ndarray, what: str) -> torch.Tensor:
    """(N, H, W, C) float [0, 1] numpy images → torch (N, C, H, W) float32 in [-1, 1]; TargetError if unusable.

    Clips (N, T, H, W, C) → (N, T, C, H, W).
    """
    if not isinstance(images, np.ndarray):
        raise TargetError(f"{what} must be a numpy array (N, H, W, C), got {type(images).__name__}")
    if images.ndim not in (4, 5):
        raise TargetError(f"{what} must have shape (N, H, W, C), or (N, T, H, W, C) for clips, got {images.shape}")
    if images.shape[0] == 0 or images.size == 0:
        raise TargetError(f"{what} is empty")
    if images.shape[-1] not in (3, 4):
        raise TargetError(f"{what} must have 3 (RGB) or 4 (RGBA) channels, got {images.shape[-1]} ({images.shape})")
    if not np.issubdtype(images.dtype, np.floating):
        raise TargetError(f"{what} must be floating point in [0, 1], got dtype {images.dtype}")
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        raise TargetError(f"{what} contain NaN or infinite pixels (index {np.flatnonzero(~finite)[:10].tolist()})")
    low, high = float(images.min()), float(images.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise TargetError(f"{what} must be in [0, 1], got range [{low}, {high}]")
    tensor = torch.from_numpy(np.clip(images, 0.0, 1.0).astype(np.float32, copy=False))
    channels_first = (0, 3, 1, 2) if images.ndim == 4 else (0, 1, 4, 2, 3)
    return tensor.permute(*channels_first).contiguous() * 2.0 - 1.0


class AskTellOptimizer:
    """Learns the distributions of ``space`` so that renders of its samples match ``targets``.

    targets: numpy (N, H, W, C) float32 in [0, 1], C in {3, 4}; every told image must have the same (H, W, C).
    Clips: targets (N, T, H, W, C) and every told "image" a clip (T, H, W, C).
    """

    def __init__(self, space: ParameterSpace, targets: np.ndarray, config: OptimizerConfig) -> None:
        if not isinstance(space, ParameterSpace):
            raise ConfigError(f"space must be a ParameterSpace, got {type(space).__name__}")
        if not isinstance(config, OptimizerConfig):
            raise ConfigError(f"config must be an OptimizerConfig, got {type(config).__name__}")
        target_tensor = images_to_tensor(targets, "target images")
        self.space = space
        self.config = config
        self.image_shape: tuple[int, ...] = tuple(targets.shape[1:])
        seeds = np.random.SeedSequence(config.seed).generate_state(2, dtype=np.uint64)
        self._sample_rng = torch.Generator().manual_seed(int(seeds[0]))
        # Resolved once: the objective's tensors live there for the whole run.
        self.device = config.torch_device()
        self.objective: Objective = make_objective(
            config.objective,
            target_tensor,
            config.objective_config(),
            torch.Generator().manual_seed(int(seeds[1])),
            self.device,
        )
        self.estimator = ScoreFunctionEstimator(config.estimator)
        params = space.learnable()
        self._param_optimizer = (
            torch.optim.Adam(params, lr=config.param_lr, betas=config.param_betas) if params else None
        )
        # The averaged parameters (param_average): a copy of the space that only ever follows the current one.
        self._average = copy.deepcopy(space) if config.param_average is not None and params else None
        self.step = 0
        self.renders = 0
        self.history: list[dict[str, Any]] = []
        self._param_started = False
        self._param_steps = 0
        self._next_id = 0
        self._pending: dict[int, torch.Tensor] = {}
        # Per pending sample, the flat parameters it was drawn with (see _log_prob_as_drawn).
        self._drawn_with: dict[int, torch.Tensor] = {}
        # _lock: sampling state, pending samples and parameter writes (short). _tell_lock: one tell at a time.
        self._lock = threading.Lock()
        self._tell_lock = threading.Lock()

    # ---- ask/tell -------------------------------------------------------------------------------------------

    def ask(self, n: int | None = None) -> list[Sample]:
        """``n`` samples (default ``batch_size``) with unique, increasing ids. Thread-safe."""
        n = self.config.batch_size if n is None else n
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"ask needs a positive number of samples, got {n!r}")
        with self._lock:
            raw = self.space.sample(int(n), self._sample_rng)
            drawn_with = _flat(self.space)
            first = self._next_id
            self._next_id += int(n)
            for offset, row in enumerate(raw):
                self._pending[first + offset] = row
                self._drawn_with[first + offset] = drawn_with
        return [Sample(first + offset, self.space.decode(row)) for offset, row in enumerate(raw)]

    def values(self) -> dict[str, dict[str, Any]]:
        """The learned distribution's readable values: the running average with ``param_average``, else the
        current parameters. Thread-safe."""
        with self._lock:
            return (self._average or self.space).values()

    @property
    def pending_ids(self) -> list[int]:
        """Ids asked for and not yet told."""
        with self._lock:
            return sorted(self._pending)

    def tell(self, ids: Sequence[int], images: Sequence[np.ndarray]) -> StepStats:
        """Train on the renders of the samples ``ids`` (any order, ``images[i]`` rendered from ``ids[i]``).

        Raises TargetError for an unknown or repeated id or an unusable image, TrainingError for a NaN loss or
        NaN parameters; in every failure the optimizer is left exactly as before the call.
        """
        with self._tell_lock:
            raw, drawn_with = self._lookup(ids, len(images))
            fake = self._render_tensor(ids, images)
            saved = self._learning_state()
            try:
                stats = self._learn(raw, drawn_with, fake)
            except BaseException:
                self._restore_learning_state(saved)
                raise
            with self._lock:
                for sample_id in ids:
                    del self._pending[int(sample_id)]
                    del self._drawn_with[int(sample_id)]
            self.history.append(stats.to_dict())
            return stats

    def _lookup(self, ids: Sequence[int], n_images: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw samples of ``ids`` and the flat parameters each was drawn with."""
        if len(ids) != n_images:
            raise TargetError(f"tell got {len(ids)} ids for {n_images} images")
        if len(ids) < 2:
            raise TargetError(f"tell needs at least 2 rendered images, got {len(ids)}")
        seen: set[int] = set()
        for sample_id in ids:
            if isinstance(sample_id, bool) or not isinstance(sample_id, numbers.Integral):
                raise TargetError(f"sample ids must be integers, got {sample_id!r}")
            if sample_id in seen:
                raise TargetError(f"sample id {sample_id} appears twice in one tell")
            seen.add(int(sample_id))
        with self._lock:
            unknown = [i for i in ids if int(i) not in self._pending]
            if unknown:
                raise TargetError(f"unknown sample id(s) {unknown[:10]}: never asked for, or already told")
            raw = torch.stack([self._pending[int(i)] for i in ids])
            return raw, torch.stack([self._drawn_with[int(i)] for i in ids])

    def _render_tensor(self, ids: Sequence[int], images: Sequence[np.ndarray]) -> torch.Tensor:
        for sample_id, image in zip(ids, images, strict=True):
            if not isinstance(image, np.ndarray) or image.shape != self.image_shape:
                got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
                raise TargetError(
                    f"render of sample {sample_id} must be a numpy array of shape {self.image_shape} "
                    f"(like the targets), got {got}"
                )
        try:
            return images_to_tensor(np.stack(images), "rendered images")
        except TargetError as error:
            raise TargetError(f"{error} (sample ids {list(ids)[:10]}…)") from error

    def _learn(self, raw: torch.Tensor, drawn_with: torch.Tensor, fake: torch.Tensor) -> StepStats:
        config = self.config
        gated = config.d_gap_max is not None or config.param_start_gap is not None
        gap: float | None = None
        before: dict[str, float] | None = None
        d_updates = 0
        self.objective.blur = self._blur()
        # A discriminator that has won for a whole window only learns the targets by heart: let the parameters
        # move under the one it has until the gap opens again (diagnostics.saturated).
        paused = diagnostics.saturated(self.history, config.objective)
        for _ in range(0 if paused else config.d_steps):
            if gated:
                measured = self.objective.evaluate(fake)
                current_gap = measured["d_real"] - measured["d_sim"]
                if before is None:
                    before, gap = measured, current_gap
                if config.d_gap_max is not None and not current_gap < config.d_gap_max:
                    break
            stats = self.objective.update(fake)
            before = stats if before is None else before
            d_updates += 1
            if not all(math.isfinite(v) for v in stats.values()):
                raise TrainingError(f"the {config.objective} objective's training step gave non-finite stats {stats}")
        if before is None:
            before = self.objective.evaluate(fake)
        if gap is None and "d_real" in before:
            gap = before["d_real"] - before["d_sim"]

        rewards = self.objective.rewards(fake)
        if not torch.isfinite(rewards).all():
            raise TrainingError(f"the {config.objective} objective gave non-finite rewards")
        param_step = self._param_optimizer is not None and (
            config.param_start_gap is None or self._param_started or (gap is not None and gap > config.param_start_gap)
        )
        if param_step:
            self._param_step(raw, drawn_with, rewards)

        self.step += 1
        self.renders += len(fake)
        return StepStats(
            step=self.step,
            renders=self.renders,
            param_step=param_step,
            d_updates=d_updates,
            d_loss=before.get(self.objective.loss_stat),
            d_real=before.get("d_real"),
            d_sim=before.get("d_sim"),
            reward_mean=rewards.mean().item(),
            values=self.values(),
            objective_stats=dict(before),
        )

    def _blur(self) -> float:
        """The objective's blur at this step (``coarse_to_fine``), in pixels."""
        fine = self.objective.config.input_blur
        if not self.config.coarse_to_fine:
            return fine
        coarse = (
            self.config.coarse_to_fine
            * min(self.image_shape[-3:-1])
            * 0.5 ** (self.step / self.config.coarse_half_life)
        )
        return coarse if coarse >= 0.25 and coarse > fine else fine

    def _param_step(self, raw: torch.Tensor, drawn_with: torch.Tensor, rewards: torch.Tensor) -> None:
        assert self._param_optimizer is not None
        params = self.space.learnable()
        log_prob, drawn_spaces = self._log_prob_as_drawn(raw, drawn_with)
        features = _draw_features(self.space, raw) if self.config.estimator.baseline == "per-property" else None
        loss = self.estimator.surrogate(log_prob, rewards, self.space.entropy(), features)
        self._param_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for drawn in drawn_spaces:
                for param, grad in zip(params, (p.grad for p in drawn.learnable()), strict=True):
                    if grad is not None:
                        param.grad = grad.clone() if param.grad is None else param.grad + grad
        lr = self.config.param_lr
        if self.config.param_lr_half_life is not None:
            lr *= 0.5 ** (self._param_steps / self.config.param_lr_half_life)
        for group in self._param_optimizer.param_groups:
            group["lr"] = lr
        if not all(p.grad is None or torch.isfinite(p.grad).all() for p in params):
            raise TrainingError("the distribution parameters got a non-finite gradient")
        with self._lock:
            self._param_optimizer.step()
            self.space.project_(self.config.estimator.min_scale)
            finite = all(torch.isfinite(p).all() for p in params)
            if finite and self._average is not None:
                decay = self.config.param_average
                weight = (1.0 - decay) / (1.0 - decay ** (self._param_steps + 1))
                with torch.no_grad():
                    for average, current in zip(self._average.learnable(), params, strict=True):
                        average.lerp_(current, weight)
        if not finite:
            raise TrainingError(f"the distribution parameters became non-finite: {self.space.values()}")
        self._param_started = True
        self._param_steps += 1

    def _log_prob_as_drawn(
        self, raw: torch.Tensor, drawn_with: torch.Tensor
    ) -> tuple[torch.Tensor, list[ParameterSpace]]:
        """log p of each sample, (n, D) per property, under the parameters it was drawn with, differentiable
        w.r.t. copies of the space holding those parameters (returned, to collect their gradients).

        Samples told a step after they were asked (the Session renders batch n + 1 while batch n trains) come
        from the parameters before the last step. Scored under the current ones, the samples that moved ahead
        with μ — the well-rewarded ones — sit near the new centre and the ones left behind in its tail, so every
        step while μ travels also narrows σ: the Meta-Sim yaw fit ended at σ/σ* 0.23 that way, 1.2 without the
        lag. The score of the distribution that drew them is an unbiased gradient of that distribution, applied
        one step late (as asynchronous SGD is).
        """
        versions = torch.unique(drawn_with, dim=0)
        log_prob = torch.zeros(raw.shape)
        spaces = []
        for version in versions:
            rows = torch.nonzero((drawn_with == version).all(dim=1)).flatten()
            drawn = copy.deepcopy(self.space)
            _load_flat(drawn, version)
            log_prob = log_prob.index_put((rows,), drawn.log_prob_terms(raw[rows]))
            spaces.append(drawn)
        return log_prob, spaces

    # ---- state ----------------------------------------------------------------------------------------------

    def _learning_state(self) -> dict[str, Any]:
        """Everything ``tell`` changes, copied (the ask side — sampler, ids, pending — is not touched by tell)."""
        return copy.deepcopy(
            {
                "space": self.space.state_dict(),
                "average": self._average.state_dict() if self._average is not None else None,
                "objective": self.objective.state_dict(),
                "estimator": self.estimator.state_dict(),
                "param_optimizer": self._param_optimizer.state_dict() if self._param_optimizer else None,
                "param_started": self._param_started,
                "param_steps": self._param_steps,
                "step": self.step,
                "renders": self.renders,
            }
        )

    def _restore_learning_state(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self.space.load_state_dict(state["space"])
            if self._average is not None:
                self._average.load_state_dict(state["average"])
            if self._param_optimizer is not None:
                self._param_optimizer.zero_grad(set_to_none=True)
                self._param_optimizer.load_state_dict(state["param_optimizer"])
        self.objective.load_state_dict(state["objective"])
        self.estimator.load_state_dict(state["estimator"])
        self._param_started = state["param_started"]
        self._param_steps = state["param_steps"]
        self.step, self.renders = state["step"], state["renders"]

    def state_dict(self) -> dict[str, Any]:
        """The whole state; tensors, numbers, strings and plain containers only (``weights_only=True`` loadable).

        Structures that are not tensors (config, the space's kinds and readable values, history) are JSON strings.
        """
        with self._tell_lock:
            learning = self._learning_state()
            with self._lock:
                pending_ids = sorted(self._pending)
                ask_side = {
                    "sample_rng": self._sample_rng.get_state(),
                    "next_id": self._next_id,
                    "pending_ids": torch.tensor(pending_ids, dtype=torch.int64),
                    "pending_samples": (
                        torch.stack([self._pending[i] for i in pending_ids])
                        if pending_ids
                        else torch.zeros(0, len(self.space.labels))
                    ),
                    "pending_drawn_with": (
                        torch.stack([self._drawn_with[i] for i in pending_ids])
                        if pending_ids
                        else torch.zeros(0, len(_flat(self.space)))
                    ),
                }
            return {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "config": json.dumps(self.config.to_dict()),
                "space_structure": json.dumps(self.space.to_dict()),
                "image_shape": list(self.image_shape),
                "history": json.dumps(self.history),
                **learning,
                **ask_side,
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` of an optimizer with the same config, space labels and image shape.

        Raises ConfigError on a mismatch; then nothing has changed.
        """
        if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError("not a SceneFit optimizer state (missing format tag)")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"optimizer state version {state.get('version')!r} is not {CHECKPOINT_VERSION}")
        missing = sorted(set(_STATE_KEYS) - set(state))
        if missing:
            raise ConfigError(f"the optimizer state lacks {missing}")
        if tuple(state["image_shape"]) != self.image_shape:
            raise ConfigError(
                f"the state was saved for images of shape {tuple(state['image_shape'])}, "
                f"the targets have {self.image_shape}"
            )
        if _learning_settings(json.loads(state["config"])) != _learning_settings(self.config.to_dict()):
            raise ConfigError("the state was saved with different optimizer settings")
        # A private copy: Adam adopts loaded tensors as they are and would later step them in place.
        state = copy.deepcopy(dict(state))
        with self._tell_lock:
            saved = self._learning_state()
            try:
                self._restore_learning_state(state)
                sample_rng = torch.Generator()
                sample_rng.set_state(state["sample_rng"])
                pending_ids = [int(i) for i in state["pending_ids"].tolist()]
                pending = dict(zip(pending_ids, state["pending_samples"].clone(), strict=True))
                drawn_with = dict(zip(pending_ids, state["pending_drawn_with"].clone(), strict=True))
                if any(v.shape != _flat(self.space).shape or not torch.isfinite(v).all() for v in drawn_with.values()):
                    raise ValueError("pending_drawn_with does not hold this space's parameters")
                history = json.loads(state["history"])
            except (SceneFitError, KeyError, TypeError, ValueError, RuntimeError) as error:
                self._restore_learning_state(saved)
                raise ConfigError(f"cannot restore the optimizer state: {error}") from error
            with self._lock:
                self._sample_rng = sample_rng
                self._next_id = int(state["next_id"])
                self._pending = pending
                self._drawn_with = drawn_with
            self.history = history

    def save_checkpoint(self, path: str | Path) -> int:
        """Write :meth:`state_dict` with ``torch.save`` atomically: a temporary file renamed into place, removed
        again when writing fails (a full disk, a deleted folder), so ``path`` is always the last good checkpoint.
        Returns the step saved."""
        path = Path(path)
        temporary = path.with_name(path.name + ".tmp")
        state = self.state_dict()
        try:
            torch.save(state, temporary)
            os.replace(temporary, path)
            return int(state["step"])
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise

    @classmethod
    def load_checkpoint(cls, path: str | Path, targets: np.ndarray, device: str = "auto") -> AskTellOptimizer:
        """An optimizer resumed from :meth:`save_checkpoint` (``torch.load(weights_only=True)``) on ``device``
        (an :attr:`OptimizerConfig.device`): on the CPU the next step is exactly the one the saved optimizer would
        have taken; on a GPU, or across devices, it is up to rounding (TF32 convolutions, cuDNN's nondeterministic
        kernels). ``targets`` must be the same images."""
        return cls.from_checkpoint(read_checkpoint(path), targets, device)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, targets: np.ndarray, device: str = "auto") -> AskTellOptimizer:
        """An optimizer resumed on ``device`` from a checkpoint already read with :func:`read_checkpoint`."""
        optimizer = cls(checkpoint.space, targets, checkpoint.config.replace(device=device))
        try:
            optimizer.load_state_dict(checkpoint.state)
        except ConfigError as error:
            raise ConfigError(f"checkpoint {checkpoint.path}: {error}") from None
        return optimizer


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read and checked by :func:`read_checkpoint`: its raw state, the optimizer settings and the
    parameter space it was saved with, and the image shape (H, W, C) or clip shape (T, H, W, C) it learned on.
    The settings' ``device`` is "auto", not the saved one: the device is the resuming machine's choice."""

    path: Path
    state: Mapping[str, Any]
    config: OptimizerConfig
    space: ParameterSpace
    image_shape: tuple[int, ...]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check everything a resume relies on (format,
    the JSON fields, counters ≥ 0, the image shape); any problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        # Everything is saved on the CPU; map_location only makes sure a GPU tensor cannot stop a CPU-only resume.
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise ConfigError(f"checkpoint {path} is not a SceneFit optimizer checkpoint: {cut(str(error))}") from None
    if not isinstance(state, Mapping) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint {path} is not a SceneFit optimizer checkpoint")
    try:
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"version {quote(state.get('version'))} is not {CHECKPOINT_VERSION}")
        missing = sorted(set(_STATE_KEYS) - set(state))
        if missing:
            raise ConfigError(f"it lacks {missing}")
        parsed = {}
        for key in ("config", "space_structure", "history"):
            if not isinstance(state[key], str):
                raise ConfigError(f"its {key} is not JSON text")
            try:
                parsed[key] = json.loads(state[key])
            except (ValueError, RecursionError):
                raise ConfigError(f"its {key} is not valid JSON") from None
        if not isinstance(parsed["history"], list):
            raise ConfigError("its history is not a list")
        for name in ("step", "renders", "param_steps", "next_id"):
            _integer(name, state[name], 0)
        shape = state["image_shape"]
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape
        ):
            raise ConfigError(f"image_shape must be positive integers, got {quote(shape)}")
        if not isinstance(parsed["config"], Mapping):
            raise ConfigError("its config is not a mapping")
        config = OptimizerConfig.from_dict(_learning_settings(parsed["config"]))
        space = ParameterSpace.from_dict(parsed["space_structure"])
    except (SceneFitError, TypeError, ValueError) as error:
        raise ConfigError(f"checkpoint {path} cannot be used: {cut(str(error))}") from None
    return Checkpoint(path, state, config, space, tuple(int(v) for v in shape))
