"""The ask/tell optimizer: ids, matching by id, bad input, rollback, checkpoints, configurations."""

from __future__ import annotations

import copy
import json
import re
import threading

import numpy as np
import pytest
import torch

from addon.engine.distributions import LogNormal, Normal, ParameterSpace
from addon.engine.errors import ConfigError, TargetError, TrainingError
from addon.engine.estimators import EstimatorConfig
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig
from tests.engine_supershape import SIZE, make_space, render, targets

pytestmark = pytest.mark.usefixtures("one_thread")


def make_optimizer(config: OptimizerConfig | None = None, **overrides) -> AskTellOptimizer:
    config = config or OptimizerConfig.default(batch_size=8)
    return AskTellOptimizer(make_space(), targets(), config.replace(**overrides))


def learning_state(optimizer: AskTellOptimizer) -> dict:
    """Everything a tell may change, copied (state dicts share live tensors), to compare exactly."""
    return copy.deepcopy(
        {
            "space": optimizer.space.state_dict(),
            "objective": optimizer.objective.state_dict(),
            "estimator": optimizer.estimator.state_dict(),
            "step": optimizer.step,
            "renders": optimizer.renders,
            "history": len(optimizer.history),
            "pending": optimizer.pending_ids,
        }
    )


def assert_same(a, b, exact: bool = True) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key], exact)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y, exact)
    else:
        assert a == b


# ---- ask ----------------------------------------------------------------------------------------------------


def test_ask_gives_unique_increasing_ids_and_decoded_values():
    optimizer = make_optimizer()
    first, second = optimizer.ask(), optimizer.ask(3)
    ids = [s.id for s in first + second]
    assert len(first) == 8 and len(second) == 3
    assert ids == sorted(set(ids))
    assert all(set(s.values) == {"m1", "m2"} and s.values["m1"] > 0 for s in first)
    assert optimizer.pending_ids == ids


def test_ask_from_many_threads_never_repeats_an_id():
    optimizer = make_optimizer()
    ids: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            got = [s.id for s in optimizer.ask(2)]
            with lock:
                ids.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 400 and len(set(ids)) == 400


# ---- tell ---------------------------------------------------------------------------------------------------


def test_tell_steps_parameters_and_records_history():
    optimizer = make_optimizer()
    before = optimizer.space.values()
    stats = optimizer.tell(*render(optimizer.ask()))
    assert stats.step == 1 and stats.renders == 8 and stats.param_step
    assert stats.values != before and stats.values == optimizer.values()  # the running average (param_average)
    assert optimizer.pending_ids == []
    assert optimizer.history[-1]["step"] == 1 and optimizer.history[-1]["renders"] == 8
    json.dumps(optimizer.history)  # history is JSON-safe


def test_parameter_learning_rate_halves_every_half_life():
    """A true half-life: the step stops shrinking by 1/t and really dies out, so long runs stay where they settled."""
    optimizer = make_optimizer(param_lr=0.1, param_lr_half_life=2.0)
    rates = []
    for _ in range(5):
        optimizer.tell(*render(optimizer.ask()))
        rates.append(optimizer._param_optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1 * 0.5 ** (k / 2.0) for k in range(5)])


def test_shuffled_tell_matches_in_order_tell():
    in_order, shuffled = make_optimizer(), make_optimizer()
    for _ in range(3):
        ids, images = render(in_order.ask())
        ids_b, images_b = render(shuffled.ask())
        assert ids == ids_b
        permutation = np.random.default_rng(len(ids)).permutation(len(ids))
        in_order.tell(ids, images)
        shuffled.tell([ids_b[i] for i in permutation], [images_b[i] for i in permutation])
    # Same samples, same images, only the order differs: equal up to float summation order.
    assert_same(in_order.space.state_dict(), shuffled.space.state_dict(), exact=False)
    # A mismatch would change the result far beyond rounding: tell with images paired to the wrong ids.
    wrong = make_optimizer()
    for _ in range(3):
        ids, images = render(wrong.ask())
        wrong.tell(ids, images[::-1])
    moved = in_order.space.state_dict()["m1"]["mu"] - wrong.space.state_dict()["m1"]["mu"]
    assert moved.abs().item() > 1e-3


def test_tell_of_a_subset_leaves_the_rest_pending():
    optimizer = make_optimizer()
    samples = optimizer.ask()
    optimizer.tell(*render(samples[:4]))
    assert optimizer.pending_ids == [s.id for s in samples[4:]]
    optimizer.tell(*render(samples[4:]))
    assert optimizer.pending_ids == []


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ids, images: ([*ids[:-1], 10_000], images), "unknown sample id"),
        (lambda ids, images: ([*ids[:-1], ids[0]], images), "appears twice"),
        (lambda ids, images: (ids, [*images[:-1], images[0][:16]]), "shape"),
        (lambda ids, images: (ids, [*images[:-1], images[0][..., :2]]), "shape"),
        (lambda ids, images: (ids, [*images[:-1], np.full_like(images[0], np.nan)]), "NaN"),
        (lambda ids, images: (ids, [*images[:-1], images[0] * 255]), "[0, 1]"),
        (lambda ids, images: (ids[:-1], images), "ids for"),
        (lambda ids, images: (ids[:1], images[:1]), "at least 2"),
    ],
    ids=["unknown-id", "duplicate-id", "wrong-size", "wrong-channels", "nan", "range", "count", "too-few"],
)
def test_bad_tell_raises_and_changes_nothing(corrupt, message):
    optimizer = make_optimizer()
    optimizer.tell(*render(optimizer.ask()))
    ids, images = render(optimizer.ask())
    before = learning_state(optimizer)
    with pytest.raises(TargetError, match=re.escape(message)):
        optimizer.tell(*corrupt(ids, images))
    assert_same(learning_state(optimizer), before)
    optimizer.tell(ids, images)  # the batch is still pending and usable
    assert optimizer.step == 2


def test_nan_rewards_roll_back_everything(monkeypatch):
    optimizer = make_optimizer()
    optimizer.tell(*render(optimizer.ask()))
    ids, images = render(optimizer.ask())
    before = learning_state(optimizer)
    monkeypatch.setattr(optimizer.objective, "rewards", lambda fake: torch.full((len(fake),), float("nan")))
    with pytest.raises(TrainingError, match="non-finite rewards"):
        optimizer.tell(ids, images)
    # The discriminator had already taken its step for this batch: it is restored too.
    assert_same(learning_state(optimizer), before)


def test_nan_parameters_roll_back_everything(monkeypatch):
    optimizer = make_optimizer()
    optimizer.tell(*render(optimizer.ask()))
    ids, images = render(optimizer.ask())
    before = learning_state(optimizer)

    def poison(min_scale):
        with torch.no_grad():
            optimizer.space.learnable()[0].fill_(float("nan"))

    monkeypatch.setattr(optimizer.space, "project_", poison)
    with pytest.raises(TrainingError, match="non-finite"):
        optimizer.tell(ids, images)
    assert_same(learning_state(optimizer), before)
    monkeypatch.undo()
    assert optimizer.tell(ids, images).step == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, SIZE, SIZE, 3), np.float32), "empty"),
        (np.zeros((4, SIZE, SIZE, 2), np.float32), "channels"),
        (np.full((4, SIZE, SIZE, 3), np.nan, np.float32), "NaN"),
        (np.zeros((SIZE, SIZE, 3), np.float32), "shape"),
        (np.zeros((4, SIZE, SIZE, 3), np.uint8), "floating point"),
    ],
    ids=["empty", "channels", "nan", "3d", "uint8"],
)
def test_bad_targets_raise(bad, message):
    with pytest.raises(TargetError, match=message):
        AskTellOptimizer(make_space(), bad, OptimizerConfig.default())


# ---- blendtorch schedule ----------------------------------------------------------------------------------------


def test_blendtorch_config_is_densityopt():
    config = OptimizerConfig.blendtorch()
    assert config.objective == "adversarial"
    assert config.objective_config().reward == "log_d"  # log D(sim) = −errS = −BCE(D(sim), 1)
    assert (config.d_lr, config.d_betas) == (5e-5, (0.5, 0.999))
    assert (config.param_lr, config.param_betas) == (5e-2, (0.7, 0.999))
    assert config.param_lr_half_life is None
    assert (config.batch_size, config.d_steps) == (64, 1)
    assert (config.d_gap_max, config.param_start_gap) == (0.95, 0.7)
    estimator = config.estimator
    assert (estimator.baseline, estimator.ema_init, estimator.ema_new_weight) == ("ema", 0.0, 0.9)
    assert not estimator.normalize_advantages and estimator.entropy_weight == 0.0


def test_blendtorch_schedule_waits_for_the_gap_and_skips_d_steps_above_it(monkeypatch):
    optimizer = make_optimizer(OptimizerConfig.blendtorch(batch_size=8))
    gaps = iter([0.5, 0.8, 0.97, 0.1])
    updates = []
    monkeypatch.setattr(
        optimizer.objective, "evaluate", lambda fake: {"d_loss": 1.0, "d_real": next(gaps), "d_sim": 0.0}
    )
    real_update = optimizer.objective.update
    monkeypatch.setattr(optimizer.objective, "update", lambda fake: updates.append(1) or real_update(fake))
    steps = [optimizer.tell(*render(optimizer.ask())) for _ in range(4)]
    # gap 0.5: D steps, parameters wait; 0.8 > 0.7: both; 0.97 ≥ 0.95: parameters only; 0.1: parameters keep going.
    assert [s.param_step for s in steps] == [False, True, True, True]
    assert [s.d_updates for s in steps] == [1, 1, 0, 1]
    assert len(updates) == 3
    assert optimizer.estimator.baseline is not None  # the moving baseline started with the first parameter step


# ---- checkpoints --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["energy", "adversarial", "wgan-gp", "mmd"])
def test_checkpoint_resume_gives_the_same_next_step(tmp_path, objective):
    # Bit for bit is the CPU's promise: on a GPU cuDNN's kernels are not deterministic (tests/test_engine_device.py).
    config = OptimizerConfig.default(objective=objective, batch_size=8, seed=5, device="cpu")
    uninterrupted = make_optimizer(config)
    for _ in range(3):
        uninterrupted.tell(*render(uninterrupted.ask()))
    leftover = uninterrupted.ask(2)  # a pending batch survives the checkpoint too
    path = tmp_path / "run.pt"
    uninterrupted.save_checkpoint(path)
    assert isinstance(torch.load(path, weights_only=True), dict)

    resumed = AskTellOptimizer.load_checkpoint(path, targets(), device="cpu")
    for optimizer in (uninterrupted, resumed):
        optimizer.tell(*render(leftover))
        optimizer.tell(*render(optimizer.ask()))

    assert_same(resumed.space.state_dict(), uninterrupted.space.state_dict())  # bit for bit
    assert_same(resumed.objective.state_dict(), uninterrupted.objective.state_dict())
    assert resumed.history == uninterrupted.history
    assert (resumed.step, resumed.renders) == (uninterrupted.step, uninterrupted.renders) == (5, 34)
    assert [s.id for s in resumed.ask(2)] == [s.id for s in uninterrupted.ask(2)]


def test_checkpoint_resume_continues_the_blendtorch_schedule(tmp_path):
    uninterrupted = make_optimizer(OptimizerConfig.blendtorch(batch_size=8, param_start_gap=0.0, seed=1))
    for _ in range(2):
        uninterrupted.tell(*render(uninterrupted.ask()))
    uninterrupted.save_checkpoint(tmp_path / "run.pt")
    resumed = AskTellOptimizer.load_checkpoint(tmp_path / "run.pt", targets())
    assert resumed.estimator.baseline == uninterrupted.estimator.baseline
    for optimizer in (uninterrupted, resumed):
        optimizer.tell(*render(optimizer.ask()))
    assert_same(resumed.space.state_dict(), uninterrupted.space.state_dict())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("step", -5, "step must be an integer ≥ 0, got -5"),
        ("renders", 1.5, "renders must be an integer ≥ 0"),
        ("config", "{not json", "its config is not valid JSON"),
        ("config", "[" * 200_000, "its config is not valid JSON"),
        ("space_structure", 7, "its space_structure is not JSON text"),
        ("history", "{}", "its history is not a list"),
        ("image_shape", [32, -1, 3], "image_shape must be positive integers"),
    ],
)
def test_a_damaged_checkpoint_is_refused_with_one_message(tmp_path, key, value, message):
    optimizer = make_optimizer()
    state = optimizer.state_dict()
    state[key] = value
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        AskTellOptimizer.load_checkpoint(tmp_path / "bad.pt", targets())
    assert str(caught.value).startswith(f"checkpoint {tmp_path / 'bad.pt'} cannot be used")


def test_a_failed_checkpoint_write_leaves_the_last_good_one_and_no_temporary_file(tmp_path, monkeypatch):
    optimizer = make_optimizer()
    optimizer.save_checkpoint(tmp_path / "run.pt")
    good = (tmp_path / "run.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, path):
        real_save(obj, path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    optimizer.tell(*render(optimizer.ask()))
    with pytest.raises(OSError, match="No space left"):
        optimizer.save_checkpoint(tmp_path / "run.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"] and (tmp_path / "run.pt").read_bytes() == good


def test_checkpoint_errors(tmp_path):
    optimizer = make_optimizer()
    optimizer.save_checkpoint(tmp_path / "run.pt")
    with pytest.raises(ConfigError, match="not found"):
        AskTellOptimizer.load_checkpoint(tmp_path / "missing.pt", targets())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a SceneFit optimizer checkpoint"):
        AskTellOptimizer.load_checkpoint(tmp_path / "junk.pt", targets())
    with pytest.raises(ConfigError, match="shape"):
        AskTellOptimizer.load_checkpoint(tmp_path / "run.pt", targets()[:, :16, :16])
    other = make_optimizer(seed=9)
    before = learning_state(other)
    with pytest.raises(ConfigError, match="different optimizer settings"):
        other.load_state_dict(optimizer.state_dict())
    assert_same(learning_state(other), before)


# ---- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        OptimizerConfig.default(),
        OptimizerConfig.blendtorch(),
        OptimizerConfig.default(objective="mmd", d_steps=0, feature_extractor="pixels"),
        OptimizerConfig.default(objective="wgan-gp", objective_options={"gp_weight": 5.0, "base_width": 16}),
    ],
    ids=["default", "blendtorch", "mmd", "wgan-gp"],
)
def test_config_round_trip(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert OptimizerConfig.from_dict(data) == config
    assert OptimizerConfig.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"objective": "gan"}, "unknown objective"),
        ({"batch_size": 1}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"d_steps": -1}, "d_steps"),
        ({"param_lr": 0.0}, "param_lr"),
        ({"d_lr": float("nan")}, "d_lr"),
        ({"d_betas": (0.5, 1.0)}, "d_betas"),
        ({"param_betas": (0.5,)}, "param_betas"),
        ({"param_lr_half_life": -1.0}, "param_lr_half_life"),
        ({"seed": -3}, "seed"),
        ({"objective": "mmd", "d_gap_max": 0.9}, "d_gap_max"),
        ({"objective_options": {"lr": 0.1}}, "objective_options"),
        ({"objective_options": {"reward": "bogus"}}, "reward"),
        ({"feature_extractor": ""}, "feature_extractor"),
        ({"estimator": {"baseline": "loo"}}, "EstimatorConfig"),
        ({"momentum": 0.9}, "unknown optimizer setting"),
    ],
)
def test_bad_config_raises_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        OptimizerConfig.default(**overrides)


def test_config_from_dict_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown optimizer setting"):
        OptimizerConfig.from_dict({"batch": 4})
    with pytest.raises(ConfigError, match="estimator"):
        OptimizerConfig.from_dict({"estimator": {"baseline": "median"}})
    with pytest.raises(ConfigError, match="mapping"):
        OptimizerConfig.from_dict([("batch_size", 4)])


def test_fixed_parameters_are_sampled_but_not_learned():
    space = ParameterSpace({"m1": LogNormal(2.25, 0.1, fixed=True), "m2": Normal(9.0, 1.0, fixed=True)})
    optimizer = AskTellOptimizer(space, targets(), OptimizerConfig.default(batch_size=4))
    before = space.state_dict()
    stats = optimizer.tell(*render(optimizer.ask()))
    assert not stats.param_step and stats.d_updates == 1
    assert_same(space.state_dict(), before)


def test_estimator_settings_reach_the_sigma_floor():
    config = OptimizerConfig.default(batch_size=4, estimator=EstimatorConfig(min_scale=0.39))
    optimizer = make_optimizer(config)
    for _ in range(3):
        optimizer.tell(*render(optimizer.ask()))
    assert all(v["sigma"] >= 0.39 for v in optimizer.space.values().values())


def test_state_dict_has_exactly_the_checked_keys():
    from addon.engine.optimizer import _STATE_KEYS

    optimizer = make_optimizer()
    assert sorted(optimizer.state_dict()) == sorted(_STATE_KEYS)
    state = optimizer.state_dict()
    del state["sample_rng"]
    with pytest.raises(ConfigError, match="sample_rng"):
        make_optimizer().load_state_dict(state)


def test_coarse_to_fine_blur_starts_at_a_sixteenth_of_the_image_and_halves_every_half_life():
    optimizer = make_optimizer()  # 32 px targets, SceneFit's default
    assert optimizer.config.coarse_to_fine == pytest.approx(1 / 16)
    half_life = optimizer.config.coarse_half_life
    blurs = []
    for step in (0, half_life, 2 * half_life, 3 * half_life):
        optimizer.step = int(step)
        blurs.append(optimizer._blur())
    assert blurs == pytest.approx([2.0, 1.0, 0.5, 0.25])
    optimizer.step = int(4 * half_life)
    assert optimizer._blur() == 0.0  # under a quarter pixel: the objective's own input_blur (0) holds
    optimizer.step = 0
    samples = optimizer.ask()
    optimizer.tell(*render(samples))
    assert optimizer.objective.blur == pytest.approx(2.0)
    assert make_optimizer(OptimizerConfig.blendtorch(batch_size=8))._blur() == 0.0  # blendtorch: never blurred


# ---- samples told a step late ------------------------------------------------------------------------------


def test_a_sample_told_after_a_parameter_step_is_scored_under_the_parameters_that_drew_it():
    """The Session renders batch n + 1 while batch n trains: its samples come from the parameters before that
    step. Their score-function gradient must be the one of the distribution that drew them, not the current
    one's (which narrowed σ while μ moved)."""
    config = OptimizerConfig.default(batch_size=8, seed=3)
    late, reference = make_optimizer(config), make_optimizer(config)  # the same starting parameters
    first, stale = late.ask(), late.ask()  # both drawn from the starting parameters
    late.tell(*render(first))  # a parameter step: the parameters move on
    ids = [s.id for s in stale]
    raw, drawn_with = late._lookup(ids, len(ids))
    log_prob, drawn = late._log_prob_as_drawn(raw, drawn_with)
    got = torch.autograd.grad(log_prob.sum(), drawn[0].learnable())
    expected = torch.autograd.grad(reference.space.log_prob(raw).sum(), reference.space.learnable())
    current = torch.autograd.grad(late.space.log_prob(raw).sum(), late.space.learnable())
    assert len(drawn) == 1 and all(torch.allclose(a, b) for a, b in zip(expected, got, strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(current, got, strict=True))  # what the old code used
    late.tell(*render(stale))
    assert late.pending_ids == [] and late._drawn_with == {}


def test_samples_of_different_parameter_versions_in_one_tell_each_get_their_own_score():
    optimizer = make_optimizer(OptimizerConfig.default(batch_size=4, seed=2))
    older = optimizer.ask()
    optimizer.tell(*render(optimizer.ask()))
    newer = optimizer.ask()
    raw, drawn_with = optimizer._lookup([s.id for s in older + newer], 8)
    log_prob, drawn = optimizer._log_prob_as_drawn(raw, drawn_with)
    assert len(drawn) == 2
    assert torch.allclose(log_prob[4:], optimizer.space.log_prob_terms(raw[4:]))  # newer: the current parameters
    assert not torch.allclose(log_prob[:4], optimizer.space.log_prob_terms(raw[:4]))


def test_a_pending_sample_keeps_the_parameters_that_drew_it_across_a_checkpoint(tmp_path):
    optimizer = make_optimizer(OptimizerConfig.default(batch_size=4, seed=4))
    pending = optimizer.ask()
    optimizer.tell(*render(optimizer.ask()))
    optimizer.save_checkpoint(tmp_path / "run.pt")
    resumed = AskTellOptimizer.load_checkpoint(tmp_path / "run.pt", targets())
    ids = [s.id for s in pending]
    assert torch.equal(resumed._lookup(ids, 4)[1], optimizer._lookup(ids, 4)[1])
    state = optimizer.state_dict()
    state["pending_drawn_with"] = state["pending_drawn_with"][:, :1]
    with pytest.raises(ConfigError, match="pending_drawn_with"):
        make_optimizer(OptimizerConfig.default(batch_size=4, seed=4)).load_state_dict(state)


def test_the_default_objective_is_the_energy_distance_with_its_own_schedule():
    energy, adversarial = OptimizerConfig.default(), OptimizerConfig.default(objective="adversarial")
    assert (energy.objective, energy.param_lr_half_life, energy.param_average) == ("energy", 45.0, None)
    assert (adversarial.param_lr_half_life, adversarial.param_average) == (30.0, 0.9)
    assert OptimizerConfig.default(objective="adversarial", param_average=0.5).param_average == 0.5


def test_with_one_learned_property_the_per_property_baseline_learns_exactly_what_leave_one_out_learns():
    """The default baseline of the energy distance changes nothing for a run of one property: the same seed gives
    bit-identical parameters (so every figure measured with one property before it still holds)."""
    space = ParameterSpace({"m1": LogNormal(1.2, 0.4), "m2": LogNormal(2.25, 0.1, fixed=True)})
    learned = {}
    for baseline in ("loo", "per-property"):
        config = OptimizerConfig.default(batch_size=8, seed=3)
        config = config.replace(
            estimator=EstimatorConfig.from_dict({**config.estimator.to_dict(), "baseline": baseline})
        )
        optimizer = AskTellOptimizer(copy.deepcopy(space), targets(), config)
        pending = optimizer.ask()
        for _ in range(12):
            batch, pending = pending, optimizer.ask()
            optimizer.tell(*render(batch))
        learned[baseline] = optimizer.space.state_dict()
    assert OptimizerConfig.default().estimator.baseline == "per-property"
    for name, tensor in learned["loo"]["m1"].items():
        assert torch.equal(tensor, learned["per-property"]["m1"][name]), name
    assert not torch.equal(learned["loo"]["m1"]["mu"], space.state_dict()["m1"]["mu"])  # it did learn
