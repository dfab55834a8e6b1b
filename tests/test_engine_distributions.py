"""Distributions of the engine: densities, seeded sampling, gradients, JSON round-trip and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from addon.engine.distributions import (
    Bernoulli,
    Categorical,
    LogNormal,
    Normal,
    ParameterSpace,
    TruncatedNormal,
    distribution_from_dict,
)
from addon.engine.errors import DistributionError

torch.set_num_threads(1)


def examples():
    return [
        Normal(0.5, 2.0),
        LogNormal(1.2, 0.4),
        TruncatedNormal(0.3, 0.2, 0.0, 1.0),
        Categorical([0.2, 0.5, 0.3], choices=[1.5, 2.5, 4.0]),
        Bernoulli(0.3),
    ]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def std_normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def trapezoid(dist, low: float, high: float, n: int = 200_001) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(low, high, n, dtype=torch.float64)
    with torch.no_grad():
        return x, dist.log_prob(x).double()


def integral(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.trapezoid(y, x))


# --- densities -------------------------------------------------------------------------------------------------


def test_normal_log_prob_and_entropy_match_closed_form():
    dist = Normal(0.5, 2.0)
    x = torch.tensor([-3.0, 0.0, 0.5, 4.0])
    expected = -0.5 * ((x - 0.5) / 2.0) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(dist.log_prob(x), expected)
    assert dist.entropy().item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 4.0), rel=1e-6)


def test_lognormal_follows_torch_convention():
    dist = LogNormal(1.2, 0.4)
    x = torch.tensor([0.5, 3.3, 10.0])
    reference = torch.distributions.LogNormal(torch.tensor(1.2), torch.tensor(0.4))
    torch.testing.assert_close(dist.log_prob(x), reference.log_prob(x))
    torch.testing.assert_close(dist.entropy(), reference.entropy())
    assert dist.mean_value() == pytest.approx(math.exp(1.2 + 0.4**2 / 2), rel=1e-6)
    assert dist.values() == pytest.approx({"mu": 1.2, "sigma": 0.4})


def test_lognormal_has_no_mass_at_or_below_zero_and_keeps_gradients_finite():
    dist = LogNormal(0.0, 1.0)
    log_p = dist.log_prob(torch.tensor([-1.0, 0.0, 1.0]))
    assert log_p[:2].tolist() == [-math.inf, -math.inf]
    log_p[2].backward()
    assert all(torch.isfinite(t.grad).all() for t in dist.learnable())


def test_truncnormal_log_prob_matches_closed_form():
    mu, sigma, low, high = 0.3, 0.2, 0.0, 1.0
    dist = TruncatedNormal(mu, sigma, low, high)
    mass = std_normal_cdf((high - mu) / sigma) - std_normal_cdf((low - mu) / sigma)
    for x in (0.0, 0.1, 0.5, 1.0):
        z = (x - mu) / sigma
        expected = -0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(sigma) - math.log(mass)
        assert dist.log_prob(torch.tensor([x])).item() == pytest.approx(expected, rel=1e-5)
    assert dist.log_prob(torch.tensor([-0.01, 1.01])).tolist() == [-math.inf, -math.inf]


@pytest.mark.parametrize(
    ("mu", "sigma", "low", "high"),
    [(0.3, 0.2, 0.0, 1.0), (0.5, 10.0, 0.0, 1.0), (-0.2, 0.1, 0.0, 1.0), (-5.0, 0.5, 0.0, 1.0), (8.0, 1.0, -3.0, 2.0)],
)
def test_truncnormal_density_integrates_to_one_and_entropy_matches(mu, sigma, low, high):
    dist = TruncatedNormal(mu, sigma, low, high)
    x, log_p = trapezoid(dist, low, high)
    p = log_p.exp()
    assert integral(x, p) == pytest.approx(1.0, abs=1e-4)
    assert integral(x, -p * log_p) == pytest.approx(dist.entropy().item(), abs=1e-3)
    assert integral(x, x * p) == pytest.approx(dist.mean_value(), abs=1e-4)


@pytest.mark.parametrize(
    ("mu", "sigma", "low", "high"),
    [(1.29, 0.5, 0.0, 1.0), (0.3, 0.2, 0.0, 1.0), (0.5, 10.0, 0.0, 1.0), (-5.0, 0.5, 0.0, 1.0), (8.0, 1.0, -3.0, 2.0)],
)
def test_truncnormal_mean_and_std_are_the_truncated_distributions_own(mu, sigma, low, high):
    dist = TruncatedNormal(mu, sigma, low, high)
    x, log_p = trapezoid(dist, low, high)
    p = log_p.exp()
    mean = integral(x, x * p)
    std = math.sqrt(integral(x, (x - mean) ** 2 * p))
    assert low <= dist.mean.item() <= high
    assert dist.mean.item() == pytest.approx(mean, abs=1e-6 * (high - low))
    assert dist.stddev.item() == pytest.approx(std, rel=1e-5)
    assert dist.variance.item() == pytest.approx(std**2, rel=1e-5)
    assert dist.values()["mean"] == pytest.approx(mean, abs=1e-6) and dist.values()["std"] == pytest.approx(std)
    samples = dist.sample(100_000, gen(9)).double()
    assert samples.mean().item() == pytest.approx(dist.mean.item(), abs=5 * std / math.sqrt(len(samples)))
    assert samples.std().item() == pytest.approx(dist.stddev.item(), rel=0.02)


def test_truncnormal_moments_far_in_a_tail_and_their_gradient():
    far = TruncatedNormal(-30.0, 1.0, 0.0, 1.0)  # [0, 1] lies 30 σ above μ: nearly exponential, mean ≈ 1/30
    assert far.mean.item() == pytest.approx(1 / 30, rel=0.01) and far.stddev.item() == pytest.approx(1 / 30, rel=0.02)
    assert math.isfinite(far.values()["mean"]) and math.isfinite(far.values()["std"])
    wide = TruncatedNormal(0.5, 100.0, 0.0, 1.0)  # nearly uniform on [0, 1]
    assert wide.mean.item() == pytest.approx(0.5) and wide.stddev.item() == pytest.approx(math.sqrt(1 / 12), rel=1e-4)
    dist = TruncatedNormal(0.3, 0.2, 0.0, 1.0)
    dist.mean.backward()
    assert all(torch.isfinite(t.grad).all() for t in dist.learnable())


def test_truncnormal_reads_its_reported_form_back():
    dist = TruncatedNormal(1.29, 0.5, 0.0, 1.0)
    reported = {"kind": "truncnormal", **dist.values()}
    again = distribution_from_dict(reported)
    assert again.values() == dist.values() and again.to_dict() == dist.to_dict()
    without_moments = {k: v for k, v in reported.items() if k not in ("mean", "std")}
    assert distribution_from_dict(without_moments).values() == dist.values()
    with pytest.raises(DistributionError, match="mean=0.5 does not follow from the parameters"):
        distribution_from_dict({**reported, "mean": 0.5})
    with pytest.raises(DistributionError, match="give 'mu' or 'parent_mu'"):
        distribution_from_dict({**reported, "mu": 1.29})
    with pytest.raises(DistributionError, match=r"unknown key\(s\) \['mean'\]"):
        distribution_from_dict({"kind": "normal", "mu": 0.0, "sigma": 1.0, "mean": 0.0})


def test_categorical_and_bernoulli_log_prob_and_entropy():
    probs = [0.2, 0.5, 0.3]
    cat = Categorical(probs)
    torch.testing.assert_close(cat.log_prob(torch.tensor([0.0, 1.0, 2.0])), torch.tensor(probs).log())
    assert cat.entropy().item() == pytest.approx(-sum(p * math.log(p) for p in probs), rel=1e-6)
    bern = Bernoulli(0.3)
    torch.testing.assert_close(bern.log_prob(torch.tensor([1.0, 0.0])), torch.tensor([0.3, 0.7]).log())
    assert bern.entropy().item() == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.7)), rel=1e-6)


# --- sampling --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", examples(), ids=lambda d: d.kind)
def test_sampling_is_seeded(dist):
    first = dist.sample(64, gen(7))
    assert first.shape == (64,) and first.dtype == torch.float32 and not first.requires_grad
    assert torch.equal(first, dist.sample(64, gen(7)))
    assert not torch.equal(first, dist.sample(64, gen(8)))


def test_normal_and_lognormal_sample_moments():
    x = Normal(0.5, 2.0).sample(40_000, gen(0))
    assert x.mean().item() == pytest.approx(0.5, abs=0.04)
    assert x.std().item() == pytest.approx(2.0, rel=0.02)
    log_x = LogNormal(1.2, 0.4).sample(40_000, gen(1)).log()
    assert log_x.mean().item() == pytest.approx(1.2, abs=0.01)
    assert log_x.std().item() == pytest.approx(0.4, rel=0.02)


@pytest.mark.parametrize(
    ("mu", "sigma", "low", "high"),
    [(0.3, 0.2, 0.0, 1.0), (0.5, 10.0, 0.0, 1.0), (-5.0, 0.1, 0.0, 1.0), (60.0, 1.0, 0.0, 1.0), (0.5, 1e-3, 0.0, 1.0)],
)
def test_truncnormal_samples_stay_in_bounds_and_follow_the_density(mu, sigma, low, high):
    dist = TruncatedNormal(mu, sigma, low, high)
    x = dist.sample(40_000, gen(3))
    assert x.min().item() >= low and x.max().item() <= high
    assert torch.isfinite(dist.log_prob(x)).all()
    grid, log_p = trapezoid(dist, low, high)
    p = log_p.exp()
    std = math.sqrt(integral(grid, (grid - dist.mean_value()) ** 2 * p))
    assert x.mean().item() == pytest.approx(dist.mean_value(), abs=4 * std / math.sqrt(len(x)) + 1e-6)
    assert x.double().std().item() == pytest.approx(std, rel=0.03)


def test_categorical_and_bernoulli_frequencies_match_probs():
    probs = [0.1, 0.6, 0.3]
    x = Categorical(probs).sample(30_000, gen(4))
    freq = torch.bincount(x.long(), minlength=3).double() / len(x)
    torch.testing.assert_close(freq, torch.tensor(probs, dtype=torch.float64), atol=0.012, rtol=0)
    assert Bernoulli(0.3).sample(30_000, gen(5)).mean().item() == pytest.approx(0.3, abs=0.012)


def test_zero_probability_is_never_sampled_and_parameters_stay_finite():
    cat, bern = Categorical([0.0, 1.0]), Bernoulli(1.0)
    assert cat.sample(1000, gen(0)).eq(1).all() and bern.sample(1000, gen(0)).eq(1).all()
    assert all(torch.isfinite(t).all() for t in cat.learnable() + bern.learnable())
    assert torch.isfinite(cat.entropy()) and torch.isfinite(bern.log_prob(torch.ones(3))).all()


# --- gradients -------------------------------------------------------------------------------------------------


def test_gradients_match_analytic_score_of_normal():
    dist = Normal(0.5, 2.0)
    x = torch.tensor([1.0, -2.0, 3.0])
    dist.log_prob(x).sum().backward()
    mu_grad, log_sigma_grad = (t.grad for t in dist.learnable())
    z = (x - 0.5) / 2.0
    assert mu_grad.item() == pytest.approx((z / 2.0).sum().item(), rel=1e-5)
    assert log_sigma_grad.item() == pytest.approx((z * z - 1).sum().item(), rel=1e-5)


def test_truncnormal_gradient_matches_finite_differences():
    x = torch.tensor([0.05, 0.4, 0.9])

    def total(mu: float, sigma: float) -> float:
        return TruncatedNormal(mu, sigma, 0.0, 1.0).log_prob(x).double().sum().item()

    dist = TruncatedNormal(0.3, 0.2, 0.0, 1.0)
    dist.log_prob(x).sum().backward()
    mu_grad, log_sigma_grad = (t.grad.item() for t in dist.learnable())
    eps = 1e-3
    assert mu_grad == pytest.approx((total(0.3 + eps, 0.2) - total(0.3 - eps, 0.2)) / (2 * eps), rel=1e-3)
    fd = (total(0.3, 0.2 * math.exp(eps)) - total(0.3, 0.2 * math.exp(-eps))) / (2 * eps)
    assert log_sigma_grad == pytest.approx(fd, rel=1e-3)


@pytest.mark.parametrize("dist", examples(), ids=lambda d: d.kind)
def test_gradients_reach_learnable_parameters(dist):
    x = dist.sample(32, gen(0))
    (dist.log_prob(x).sum() + dist.entropy()).backward()
    params = dist.learnable()
    assert params and all(t.requires_grad and t.grad is not None and torch.isfinite(t.grad).all() for t in params)
    assert any(t.grad.abs().sum() > 0 for t in params)


@pytest.mark.parametrize("dist", examples(), ids=lambda d: d.kind)
def test_fixed_distributions_are_sampled_but_not_learned(dist):
    fixed = distribution_from_dict({**dist.to_dict(), "fixed": True})
    assert fixed.learnable() == []
    x = fixed.sample(16, gen(0))
    assert not fixed.log_prob(x).requires_grad and not fixed.entropy().requires_grad
    torch.testing.assert_close(fixed.log_prob(x), dist.log_prob(x).detach())


# --- readable values, JSON, projection -------------------------------------------------------------------------


@pytest.mark.parametrize("dist", examples(), ids=lambda d: d.kind)
def test_json_round_trip_is_exact(dist):
    d = json.loads(json.dumps(dist.to_dict()))
    assert d["kind"] == dist.kind and d["fixed"] is False
    again = distribution_from_dict(d)
    assert type(again) is type(dist) and again.to_dict() == dist.to_dict()
    for a, b in zip(again.learnable(), dist.learnable(), strict=True):
        assert torch.equal(a.detach(), b.detach())


def test_decode_and_mean_value_give_scene_values():
    cat = Categorical([0.2, 0.5, 0.3], choices=[False, True, False])
    assert cat.decode(1.0) is True and cat.mean_value() is True
    assert Categorical([0.7, 0.3]).decode(1.0) == 1 and Categorical([0.7, 0.3]).mean_value() == 0
    assert Bernoulli(0.3).decode(1.0) is True and Bernoulli(0.3).mean_value() is False
    trunc = TruncatedNormal(0.3, 0.2, 0.1, 1.0)
    assert trunc.decode(0.09999) == 0.1 and isinstance(Normal(0, 1).decode(torch.tensor(0.5)), float)
    assert Normal(0.5, 2.0).mean_value() == 0.5


def test_readable_values():
    trunc = TruncatedNormal(1.29, 0.5, 0.0, 1.0)  # the parent's μ lies outside the bounds; the mean cannot
    values = trunc.values()
    assert list(values) == ["mean", "std", "parent_mu", "parent_sigma", "low", "high"]
    assert values == pytest.approx(
        {"mean": trunc.mean.item(), "std": trunc.stddev.item(), "parent_mu": 1.29, "parent_sigma": 0.5}
        | {"low": 0.0, "high": 1.0}
    )
    assert 0.0 < values["mean"] < 1.0 and values["mean"] == trunc.mean_value()
    values = Categorical([0.25, 0.75], choices=[3, 5]).values()
    assert values["probs"] == pytest.approx([0.25, 0.75]) and values["choices"] == [3, 5]
    assert Bernoulli(0.3).values() == pytest.approx({"p": 0.3})


def test_project_floors_learned_scales_only():
    learned, fixed = Normal(0.0, 1e-4), LogNormal(0.0, 1e-4, fixed=True)
    tensor = learned.learnable()[1]
    learned.project_(0.01)
    fixed.project_(0.01)
    assert 0.01 <= learned.values()["sigma"] == pytest.approx(0.01) and learned.learnable()[1] is tensor
    assert fixed.values()["sigma"] == pytest.approx(1e-4)
    Normal(0.0, 1.0).project_(0.0)


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "normal", "mu": 0.0, "sigma": 0.0}, "sigma must be > 0"),
        ({"kind": "normal", "mu": 0.0, "sigma": -1.0}, "sigma must be > 0"),
        ({"kind": "lognormal", "mu": 0.0, "sigma": float("nan")}, "sigma must be a finite number"),
        ({"kind": "normal", "mu": float("inf"), "sigma": 1.0}, "mu must be a finite number"),
        ({"kind": "normal", "mu": "1", "sigma": 1.0}, "mu must be a finite number"),
        ({"kind": "normal", "mu": True, "sigma": 1.0}, "mu must be a finite number"),
        ({"kind": "normal", "mu": 0.0}, "missing key(s) ['sigma']"),
        ({"kind": "normal", "mu": 0.0, "sigma": 1.0, "sigmaa": 1.0}, "unknown key(s) ['sigmaa']"),
        ({"kind": "normal", "mu": 0.0, "sigma": 1.0, "fixed": "yes"}, "fixed must be true or false"),
        ({"kind": "gamma", "a": 1.0}, "unknown distribution kind 'gamma'"),
        ({"mu": 0.0}, "unknown distribution kind None"),
        ([0.0, 1.0], "must be a mapping"),
        ({"kind": "truncnormal", "mu": 0.5, "sigma": 1.0, "low": 1.0, "high": 1.0}, "low must be < high"),
        ({"kind": "truncnormal", "mu": 0.5, "sigma": 1.0, "low": 0.0, "high": math.inf}, "high must be a finite"),
        ({"kind": "categorical", "probs": [0.5, 0.6]}, "probs must sum to 1"),
        ({"kind": "categorical", "probs": [1.2, -0.2]}, "probs must be >= 0"),
        ({"kind": "categorical", "probs": []}, "probs must be a non-empty list"),
        ({"kind": "categorical", "probs": [0.5, float("nan")]}, "probs[1] must be a finite number"),
        ({"kind": "categorical", "probs": [0.5, 0.5], "choices": [1]}, "choices must be a list of 2"),
        ({"kind": "categorical", "probs": [0.5, 0.5], "choices": [1, "red"]}, "choices[1] must be a finite number"),
        ({"kind": "bernoulli", "p": 1.5}, "p must be in [0, 1]"),
        ({"kind": "bernoulli"}, "missing key(s) ['p']"),
    ],
)
def test_bad_input_raises_a_distribution_error_naming_the_problem(spec, message):
    with pytest.raises(DistributionError) as error:
        distribution_from_dict(spec)
    assert message in str(error.value)


def test_probs_sum_tolerance_is_one_in_a_million():
    Categorical([0.5, 0.5 + 5e-7])
    with pytest.raises(DistributionError, match="sum to 1"):
        Categorical([0.5, 0.5 + 5e-6])


# --- parameter space -------------------------------------------------------------------------------------------


def space() -> ParameterSpace:
    return ParameterSpace(
        {
            "m1": LogNormal(1.2, 0.4),
            "roughness": TruncatedNormal(0.3, 0.2, 0.0, 1.0, fixed=True),
            "shape": Categorical([0.2, 0.8], choices=[3, 7]),
            "visible": Bernoulli(0.9),
        }
    )


def test_space_samples_scores_and_decodes_jointly():
    s = space()
    x = s.sample(50, gen(11))
    assert s.labels == ["m1", "roughness", "shape", "visible"] and x.shape == (50, 4)
    assert torch.equal(x, s.sample(50, gen(11)))
    dists = list(s.distributions.values())
    expected = sum(d.log_prob(x[:, i]) for i, d in enumerate(dists))
    torch.testing.assert_close(s.log_prob(x), expected)
    torch.testing.assert_close(s.entropy(), sum(d.entropy() for d in dists))
    assert len(s.learnable()) == 2 + 0 + 1 + 1
    row = s.decode(x[0])
    assert list(row) == s.labels and row["shape"] in (3, 7) and isinstance(row["visible"], bool)
    assert 0.0 <= row["roughness"] <= 1.0
    with pytest.raises(DistributionError, match=r"shape \(n, 4\)"):
        s.log_prob(x[:, :3])


def test_space_json_round_trip_and_errors_name_the_label():
    s = space()
    again = ParameterSpace.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.to_dict() == s.to_dict() and again.values() == s.values()
    bad = s.to_dict()
    bad["m1"]["sigma"] = -1.0
    with pytest.raises(DistributionError, match=r"parameter 'm1': lognormal: sigma must be > 0"):
        ParameterSpace.from_dict(bad)
    with pytest.raises(DistributionError, match="at least one"):
        ParameterSpace({})
    with pytest.raises(DistributionError, match="expected a Distribution"):
        ParameterSpace({"x": {"kind": "normal"}})


def test_space_state_dict_loads_in_place_and_never_half_updates():
    s, other = space(), space()
    for t in other.learnable():
        t.data.add_(0.25)
    tensors = s.learnable()
    s.load_state_dict(other.state_dict())
    assert all(a is b for a, b in zip(tensors, s.learnable(), strict=True))
    assert s.to_dict() == other.to_dict()

    before = s.state_dict()
    broken = other.state_dict()
    broken["visible"]["logit"] = torch.tensor(math.nan)
    with pytest.raises(DistributionError, match="parameter 'visible'"):
        s.load_state_dict(broken)
    assert all(torch.equal(before[k][n], v) for k, d in s.state_dict().items() for n, v in d.items())


def test_space_project_floors_every_learned_scale():
    s = ParameterSpace({"a": Normal(0.0, 1e-5), "b": LogNormal(0.0, 1e-5)})
    s.project_(0.05)
    assert all(0.05 <= v["sigma"] == pytest.approx(0.05) for v in s.values().values())
