"""The one render loop: a sample's scene values in, its image out, for one scene.

:func:`bind` resolves a run's specs to the scene properties they randomize. A :class:`Sampler` holds those
properties and the training render settings; entered (``with``, or :meth:`Sampler.__enter__` and
:meth:`Sampler.restore` for a loop spread over timer ticks) it snapshots the properties and overrides the render
settings (:class:`render.RenderOverride`, or :class:`clips.ClipRenderer` for clip samples), and
``render(sample_id, values)`` applies one sample's values as one change and renders it. On leaving, the scene is
restored exactly — the properties first, then the render settings and the frame, re-simulated with the scene's own
values — whichever way the block ends.

Runs, data sets, truth targets and the benches all render through a Sampler: it is the seam where render workers
plug in as back-ends, which is why every image belongs to a sample id. This back-end renders in-process, in call
order; bpy is touched only on the caller's (main) thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bpy
import numpy as np

from ...engine.errors import RenderError, SceneFitError, SpecError, quote
from ..data.properties import MAX_LABEL
from ..scene import rna
from ..scene.clips import ClipRenderer, ClipSettings
from ..scene.render import RenderOverride, RenderSettings, raise_if_insensitive

Probes = Mapping[str, tuple[rna.BoundProperty, Sequence[rna.Value]]]


class PropertySpec(Protocol):
    """What :func:`bind` reads of a spec: ``session.SpecConfig`` is one (not imported: the session uses this
    module)."""

    label: str
    id_type: str
    id_name: str
    data_path: str


def bind(specs: Iterable[PropertySpec]) -> dict[str, rna.BoundProperty]:
    """label → the scene property each spec randomizes (labels stripped), in the specs' order. :class:`SpecError`
    names a label that is empty, too long or repeated, a spec that does not resolve, or a property that two specs
    randomize; nothing in the scene changes."""
    bound: dict[str, rna.BoundProperty] = {}
    seen: dict[tuple[int, str], str] = {}
    for spec in specs:
        label = spec.label.strip()
        if not label or len(label) > MAX_LABEL:
            raise SpecError(f"spec label {quote(spec.label)} must be 1–{MAX_LABEL} characters")
        if label in bound:
            raise SpecError(f"two specs are labelled {quote(label)}; labels must be unique")
        prop = rna.resolve(label, spec.id_type, spec.id_name, spec.data_path)
        key = (prop.owner.as_pointer(), prop.data_path)
        if key in seen:
            raise SpecError(f"{prop.culprit}: the same property is already randomized by {seen[key]!r}")
        seen[key] = label
        bound[label] = prop
    return bound


class Sampler:
    """Renders samples of ``scene``: ``bound`` (label → property, see :func:`bind`) are the properties a sample
    sets, ``settings`` the training render settings, ``clip`` (None: still images) the frames of a clip sample.

    >>> with Sampler(scene, bind(specs), RenderSettings((64, 64), "BLENDER_WORKBENCH")) as sampler:
    ...     image = sampler.render(0, {"yaw": 0.5})  # (64, 64, 3) float32 in [0, 1]
    """

    def __init__(
        self,
        scene: bpy.types.Scene,
        bound: Mapping[str, rna.BoundProperty],
        settings: RenderSettings,
        clip: ClipSettings | None = None,
    ) -> None:
        self.scene = scene
        self.bound = dict(bound)
        self.settings = settings
        self.clip = clip
        self.renderer = self._renderer()
        self._saved: list[tuple[rna.BoundProperty, rna.Value]] = []
        self._entered = False
        self._suspended: tuple[list[tuple[rna.BoundProperty, rna.Value]], list[tuple[Any, str, Any]]] | None = None

    def check(self) -> None:
        """Raise when the scene cannot be rendered as asked (no camera, a bad setting, a clip outside the frame
        range…), before anything changes."""
        self.renderer.check()

    def probe(self, probes: Probes) -> None:
        """Raise :class:`SpecError` naming each probed property (label → (property, values)) whose renders are the
        same at all of its values: it could not be learned from images. The render settings are overridden for
        the check only, and every property is put back."""
        with self._renderer(probes):
            pass

    def probe_elsewhere(self, probes: Probes) -> WorkerProbe:
        """The same check for render workers to render (:class:`WorkerProbe`): this scene is only read, here. A
        change of it, even one put back, would restart the interface's progressive 3D Viewport redraws: eight
        software-GL redraws of the cores the workers render with (bench/README.md, "The interactive run")."""
        scene_values = {label: bound.get() for label, bound in self.bound.items()}
        probed = {label: (bound.culprit, list(values)) for label, (bound, values) in probes.items() if len(values) > 1}
        samples = [(label, {**scene_values, label: value}) for label, (_, values) in probed.items() for value in values]
        return WorkerProbe(samples, probed, self.renderer.identical, self.renderer.renders_are)

    def __enter__(self) -> Sampler:
        """Snapshot the bound properties and override the render settings (a failure leaves the scene as it was)."""
        if self._entered:
            raise SceneFitError("this sampler is already rendering")
        saved = rna.snapshot(list(self.bound.values()))
        self.renderer.__enter__()
        self._saved, self._entered = saved, True
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        problems = self.restore()
        if problems and error_type is None:
            raise SceneFitError("the scene was not fully restored: " + "; ".join(problems))

    def render(self, sample_id: int, values: Mapping[str, rna.Value]) -> np.ndarray:
        """The image of sample ``sample_id``: ``values`` (label → scene value; labels left out keep the value they
        have) applied, then rendered — (H, W, C) float32 in [0, 1], or a clip (T, H, W, C)."""
        if not self._entered:
            raise RenderError(f"sample {sample_id} asked for outside the sampler's with block")
        self.apply(values)
        return self.renderer.render()

    def apply(self, values: Mapping[str, rna.Value]) -> None:
        """Set a sample's scene values as one change (each owner tagged for the depsgraph by :mod:`rna`)."""
        rna.assign((self.bound[label], value) for label, value in values.items())

    def restore(self) -> list[str]:
        """Put the bound properties back, then the render settings (and a clip's frame, re-simulated with the
        restored values); returns one message per value that could not be put back. Safe to call twice."""
        if not self._entered:
            return []
        self._entered, self._suspended = False, None
        problems = rna.restore(self._saved)
        problems += self.renderer.restore()
        self._saved = []
        return problems

    def suspend(self) -> None:
        """Put the scene's own values and render settings back for a moment, e.g. while the .blend is saved (the
        file then holds them, not a sample); :meth:`resume` brings the sample and the training settings back."""
        if not self._entered or self._suspended is not None:
            return
        current = rna.snapshot([prop for prop, _ in self._saved])
        overridden = [(owner, name, getattr(owner, name)) for owner, name, _ in self.renderer.saved]
        rna.restore(self._saved)
        _set_all(self.renderer.saved)
        self._suspended = (current, overridden)

    def resume(self) -> None:
        """Undo :meth:`suspend`."""
        if self._suspended is None:
            return
        current, overridden = self._suspended
        self._suspended = None
        _set_all(overridden)
        rna.restore(current)

    def _renderer(self, probes: Probes | None = None) -> RenderOverride:
        if self.clip is None:
            return RenderOverride(self.scene, self.settings, probes)
        return ClipRenderer(self.scene, self.settings, self.clip, self.bound.values(), probes)


@dataclass(frozen=True)
class WorkerProbe:
    """:meth:`Sampler.probe` as samples for a render back-end: ``samples`` (probed label, the scene's values with
    that one changed), ``probed`` (label → culprit, values). :meth:`check` touches no bpy: a pool's thread runs it."""

    samples: list[tuple[str, dict[str, rna.Value]]]
    probed: dict[str, tuple[str, list[rna.Value]]]
    identical: float
    renders_are: str

    def check(self, renderer: Any, stopped: Callable[[], bool], poll_s: float) -> None:
        """Render the samples with ``renderer`` (sample ids below 0: never a run's) and raise :class:`SpecError`
        as :meth:`Sampler.probe` does; returns early once ``stopped()``."""
        for index, (_, values) in enumerate(self.samples):
            renderer.submit(-1 - index, values)
        images: dict[int, np.ndarray] = {}
        while len(images) < len(self.samples):
            if stopped():
                return
            for sample_id, image in renderer.collect(timeout=poll_s):
                images[-1 - sample_id] = image
        renders: dict[str, list[np.ndarray]] = {}
        for index, (label, _) in enumerate(self.samples):
            renders.setdefault(label, []).append(images[index])
        raise_if_insensitive(self.probed, renders, self.identical, self.renders_are)


def _set_all(settings: list[tuple[Any, str, Any]]) -> None:
    for owner, name, value in settings:
        try:
            setattr(owner, name, value)
        except (TypeError, ValueError, AttributeError, ReferenceError):
            pass  # a setting that cannot be set now is restored when the sampler is left, which reports it
