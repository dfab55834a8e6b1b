"""Fit targets SceneFit did not render (issue #12): six scenes built with plain bpy, targets rendered by a plain
``bpy.ops.render.render(write_still=True)`` loop at each scene's own saved settings (tests/independent_scenes.py),
fitted with SceneFit's DEFAULT settings.

A short run must make clear progress: every μ ends at most half as far from the truth as it started (for the
categorical, the total-variation distance to the true probabilities halves), from renders that follow the samples
(in the first batches each different sample must give a different image; a run whose renders stay frozen gets no
credit for where its μ wandered). And SceneFit's own renders must change
with every learned property. On the code of issue #12 several scenes fail: that is what this file measures.
"""

from __future__ import annotations

import importlib
import math

import pytest

from tests import independent_scenes as ind

# The short version: 32 targets (the scene's own settings), 30 steps of 8 renders at 64×64 with the scene's engine.
TARGETS = 32
STEPS = 30
BATCH = 8
SEED = 0
TARGET_SEED = 12
FOLLOW_BATCHES = 5  # the first batches sample around the start: each of their samples must render differently


@pytest.fixture
def session_module(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.run.session")


def _describe(case, label, value):
    truth = case.truth[label]
    if truth["kind"] == "categorical":
        return "probs " + "/".join(f"{p:.2f}" for p in value["probs"])
    scale = math.degrees if "rotation" in next(s["data_path"] for s in case.specs if s["label"] == label) else float
    return f"μ {scale(ind.parent(value, 'mu')):.3f} σ {scale(ind.parent(value, 'sigma')):.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ind.SCENES))
def test_a_short_default_fit_makes_clear_progress(scenefit, session_module, name, tmp_path):
    import bpy

    case = ind.build(bpy, name)
    targets = tmp_path / "targets"
    ind.render_targets(bpy, case, targets, count=TARGETS, seed=TARGET_SEED)  # asserts the targets differ
    outcome = ind.run_scenefit(session_module, case, targets, tmp_path / "run", STEPS, BATCH, SEED)
    assert outcome.status == "finished" and outcome.renders == STEPS * BATCH

    start, end = ind.errors(case, case.start()), ind.errors(case, outcome.values())
    report = "; ".join(
        f"{label}: {_describe(case, label, case.start()[label])} → {_describe(case, label, outcome.values()[label])}"
        f" (truth {_describe(case, label, ind.readable(case.truth[label]))}; error {start[label]:.3f} → "
        f"{end[label]:.3f})"
        for label in case.labels
    )
    followed = outcome.follow_ratio_of(FOLLOW_BATCHES)
    follow = (
        f"renders follow the samples {followed:.2f} in the first {FOLLOW_BATCHES} batches (distinct images ÷ "
        f"distinct values per batch: {outcome.batch_distinct[:FOLLOW_BATCHES]}), {outcome.follow_ratio:.2f} overall"
    )
    progress = all(end[label] <= 0.5 * start[label] for label in case.labels)
    # A run whose renders do not follow its samples learns nothing from them, wherever its μ wanders: no credit.
    assert followed >= 0.9 and progress, f"{case.name}: {report}; {follow}"


@pytest.mark.parametrize("name", list(ind.SCENES))
def test_scenefit_renders_change_with_every_learned_property(scenefit, session_module, name, tmp_path):
    """The plain loop's renders change with each property (render_targets checks it); SceneFit's must too."""
    import bpy

    case = ind.build(bpy, name)
    targets = tmp_path / "targets"
    plain = ind.render_targets(bpy, case, targets, count=4, seed=TARGET_SEED)["sensitivity"]
    scenefit_path = ind.scenefit_sensitivity(session_module, case, targets, tmp_path / "probe")
    frozen = [label for label, change in scenefit_path.items() if change == 0]
    assert not frozen, (
        f"{case.name}: SceneFit's renders ignore {frozen} (max |Δpixel| plain {plain}, SceneFit {scenefit_path})"
    )


def test_errors_and_the_tolerance_band():
    case = ind.Case(
        "x",
        "x",
        None,
        [
            {"label": "a", "data_path": "location[0]", "distribution": {"kind": "normal", "mu": 0.0, "sigma": 1.0}},
            {"label": "c", "data_path": '["c"]', "distribution": {"kind": "categorical", "choices": [0, 1]}},
        ],
        {
            "a": {"kind": "normal", "mu": 1.0, "sigma": 0.5},
            "c": {"kind": "categorical", "choices": [0, 1], "probs": [0.2, 0.8]},
        },
        {"a": 0.1, "c": 0.1},
        {},
        "CYCLES",
        1,
    )
    assert ind.errors(case, case.start()) == pytest.approx({"a": 1.0, "c": 0.3})
    assert ind.sigma_ratio(case.truth["a"], {"mu": 1.0, "sigma": 0.6}) == pytest.approx(1.2)
    turn = 2 * math.pi
    assert ind.mu_error({"kind": "normal", "mu": 1.0}, {"mu": 1.0 - turn + 0.1}, turn) == pytest.approx(0.1)
    assert ind.mu_error({"kind": "normal", "mu": 1.0}, {"mu": 1.0 + 3 * turn - 0.2}, turn) == pytest.approx(0.2)
    assert ind.mu_error({"kind": "normal", "mu": 1.0}, {"mu": 1.0 - turn + 0.1}) == pytest.approx(turn - 0.1)

    def entry(renders, mu, p):
        return {"renders": renders, "values": {"a": {"mu": mu, "sigma": 0.5}, "c": {"probs": [p, 1 - p]}}}

    history = [entry(8, 0.5, 0.5), entry(16, 0.95, 0.25), entry(24, 1.2, 0.2), entry(32, 1.05, 0.2), entry(40, 1, 0.2)]
    assert ind.renders_to_stay(case, history, budget=100) == 32  # in at 16, out at 24 (μ 0.2 off), in from 32
    assert ind.renders_to_stay(case, history[:3], budget=100) == 100
    assert ind.renders_to_stay(case, [entry(8, 1.0, 0.35)], budget=100) == 100  # TV 0.15
