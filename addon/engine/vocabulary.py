"""The names a run's settings take, each written once with its label and tooltip: objectives, score-function
baselines, training devices and render engines.

Torch-free, so that everything reads it: the panel's enum items (``enum_items``), the preset and run-config
validation, the JSON Schema, the batch options, and the engine (the objectives register under these names; the
optimizer asks :data:`GAP_OBJECTIVES` which of them have a discriminator).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Name:
    key: str  # what settings, presets and the batch take
    label: str  # what the panel shows
    description: str  # the panel's tooltip


OBJECTIVE_NAMES = (
    Name(
        "energy",
        "Energy distance",
        "Match the set of renders to the set of targets by their pixel distances; finds its way from far starts "
        "(the default)",
    ),
    Name("adversarial", "Adversarial", "A discriminator learns to tell renders from targets (DCGAN-style, blendtorch)"),
    Name("wgan-gp", "WGAN-GP", "A Wasserstein critic with gradient penalty scores renders (SPIRAL)"),
    Name("mmd", "MMD", "Match the set of renders to the set of targets by maximum mean discrepancy (Meta-Sim)"),
)
# The objectives that train a discriminator: only they give D(real)/D(sim) for the gap diagnostics.
GAP_OBJECTIVES = ("adversarial", "wgan-gp")

BASELINE_NAMES = (
    Name("ema", "Moving average", "Baseline: exponential moving average of past rewards (blendtorch)"),
    Name("loo", "Leave-one-out", "Baseline: mean reward of the other samples in the batch (low variance)"),
    Name(
        "per-property",
        "Per property",
        "Leave-one-out, and for each property also what the other properties' draws explain of the reward: "
        "a property that changes the image little next to another still learns its spread (the default)",
    ),
    Name("none", "None", "No baseline (plain REINFORCE, noisiest)"),
)

DEVICE_NAMES = (
    Name("auto", "Auto", "Train on the GPU when SceneFit's torch has CUDA, else on the CPU (the default)"),
    Name("cpu", "CPU", "Train on the CPU, beside Blender's rendering"),
    Name("cuda", "CUDA", "Train on the NVIDIA GPU (a run without one is refused when it starts)"),
)

RENDER_ENGINE_NAMES = (
    Name("CYCLES", "Cycles", "Path tracing, denoising off; a few samples are enough at training resolution"),
    Name("BLENDER_WORKBENCH", "Workbench", "Fastest: flat/solid shading, for shape and pose parameters"),
    Name("BLENDER_EEVEE_NEXT", "EEVEE", "Rasterized; slow without a GPU (seconds per image on a CPU-only machine)"),
)

OBJECTIVES = tuple(name.key for name in OBJECTIVE_NAMES)
BASELINES = tuple(name.key for name in BASELINE_NAMES)
DEVICES = tuple(name.key for name in DEVICE_NAMES)
RENDER_ENGINES = tuple(name.key for name in RENDER_ENGINE_NAMES)


def enum_items(names: tuple[Name, ...]) -> list[tuple[str, str, str]]:
    """``names`` as the items of a ``bpy.props.EnumProperty``."""
    return [(name.key, name.label, name.description) for name in names]
