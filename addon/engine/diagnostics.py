"""What a run's history says about the fit itself, in words a user can act on. No bpy, no torch.

Saturation: an adversarial discriminator that tells every render from every target for a long stretch
(D(real) − D(sim) ≥ :data:`SATURATION_GAP` on each of the last :data:`SATURATION_WINDOW` steps) is no longer
comparing what the parameters change. Far from the targets that is normal for a few steps — the logit reward
still ranks the renders — but for a whole window it means the renders differ from the targets by something no
parameter reaches (another engine, noise level, resolution, colour management, an object missing). It is
derived from the history alone, so a resumed run sees the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SATURATION_GAP = 0.95
SATURATION_WINDOW = 20
SATURATION_WARNING = (
    "the discriminator separates renders from targets by something the parameters cannot change: check engine, "
    f"samples, resolution, colour management (D(real) − D(sim) ≥ {SATURATION_GAP} for {SATURATION_WINDOW} "
    "steps; its training is paused while it wins)"
)


def saturated(history: Sequence[Mapping[str, Any]], objective: str) -> bool:
    """Whether the last :data:`SATURATION_WINDOW` steps of an ``adversarial`` run all had a saturated
    discriminator (other objectives' scores are not probabilities: never)."""
    recent = history[-SATURATION_WINDOW:]
    return (
        objective == "adversarial"
        and len(recent) == SATURATION_WINDOW
        and all(e.get("d_real") is not None and e["d_real"] - e["d_sim"] >= SATURATION_GAP for e in recent)
    )
