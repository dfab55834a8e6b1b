"""What a run's history says about the fit itself, in words a user can act on. No bpy, no torch.

Saturation: the renders differ from the targets by something no parameter reaches (another engine, noise level,
resolution, colour management, an object missing) and the objective says so for a long stretch:

* ``adversarial``: the discriminator tells every render from every target, D(real) − D(sim) ≥
  :data:`SATURATION_GAP` on each of the last :data:`SATURATION_WINDOW` steps. Far from the targets that is normal
  for a few steps, for a whole window it is not.
* ``energy``: the renders stay as far from the targets as a different picture would — separation (the share of the
  render–target distance the parameters could still remove) ≥ :data:`SEPARATION_LIMIT` on each of the last
  :data:`SATURATION_WINDOW` steps, and fallen by less than :data:`SEPARATION_PROGRESS` across that window. A start
  far from the targets begins as high (0.9 on the independent light-and-colour scene, as high as flat white
  targets) but falls by 0.1–0.5 within 10 steps; flat white targets kept it at 0.91–0.98 for 40 steps (the
  parameters only found slightly whiter views).

It is derived from the history alone, so a resumed run sees the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

SATURATION_GAP = 0.95
SEPARATION_LIMIT = 0.7
SEPARATION_PROGRESS = 0.05
SATURATION_WINDOW = 20
_CHECK = "check engine, samples, resolution, colour management"


def saturated(history: Sequence[Mapping[str, Any]], objective: str) -> bool:
    """Whether the last :data:`SATURATION_WINDOW` steps of a run with ``objective`` were saturated (objectives
    whose scores are not probabilities or distances, ``wgan-gp`` and ``mmd``: never)."""
    recent = history[-SATURATION_WINDOW:]
    if len(recent) < SATURATION_WINDOW:
        return False
    if objective == "adversarial":
        return all(e.get("d_real") is not None and e["d_real"] - e["d_sim"] >= SATURATION_GAP for e in recent)
    if objective == "energy":
        separation = [e.get("objective_stats", {}).get("separation") for e in recent]
        if any(s is None or s < SEPARATION_LIMIT for s in separation):
            return False
        quarter = SATURATION_WINDOW // 4
        fallen = statistics.fmean(separation[:quarter]) - statistics.fmean(separation[-quarter:])
        return fallen < SEPARATION_PROGRESS
    return False


def saturation_warning(objective: str) -> str:
    """The plain-words warning for a saturated run with ``objective``."""
    if objective == "energy":
        return (
            f"the renders stay as far from the targets as a different picture would, by something the parameters "
            f"cannot change: {_CHECK} (separation ≥ {SEPARATION_LIMIT} for {SATURATION_WINDOW} steps, hardly falling)"
        )
    return (
        f"the discriminator separates renders from targets by something the parameters cannot change: {_CHECK} "
        f"(D(real) − D(sim) ≥ {SATURATION_GAP} for {SATURATION_WINDOW} steps; its training is paused while it wins)"
    )
