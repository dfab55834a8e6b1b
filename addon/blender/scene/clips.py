"""Clip samples: one sample is a short animation, simulated from its start and rendered frame by frame.

With clips on, a run's "image" is a clip (T, H, W, C): the frames ``frame_start, frame_start + stride, …,
≤ frame_end`` of the scene. Physics has no random access, so for every sample :class:`ClipRenderer` marks the
simulation caches outdated, goes back to where the simulation starts (the rigid-body cache's start frame, or the
clip's first frame when that is earlier) and steps every frame in order with ``scene.frame_set`` — rigid bodies,
cloth and keyframed or driven motion then all evaluate for the sampled values; nothing cached from an earlier
sample is reused. Frames of the clip are rendered as they pass. Everything runs on the main thread.

Before the first sample, each learned property is probed across its range (the bounds of a truncated normal,
μ ± 3σ otherwise, every choice of a categorical): when the clips do not change at all, the property cannot be
learned from clips and the run refuses to start, naming it. When the run ends the scene is left at the frame it
was on, re-simulated with its own values, so its caches hold its own simulation again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import bpy
import numpy as np

from ...engine.errors import ConfigError
from . import rna
from .render import RenderOverride, RenderSettings


@dataclass(frozen=True)
class ClipSettings:
    """The frames a clip sample is made of: ``frame_start`` to ``frame_end`` (inclusive) every ``stride`` frames."""

    frame_start: int = 1
    frame_end: int = 57
    stride: int = 8

    def __post_init__(self) -> None:
        for name in ("frame_start", "frame_end", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"clip setting {name} must be an integer frame number, got {value!r}")
        if self.stride < 1:
            raise ConfigError(f"clip stride must be at least 1 frame, got {self.stride}")
        if self.frame_end < self.frame_start:
            raise ConfigError(f"clip frames {self.frame_start}–{self.frame_end}: the end is before the start")
        if len(self.frames) < 2:
            raise ConfigError(
                f"clip frames {self.frame_start}–{self.frame_end} every {self.stride} give a single frame: a clip "
                "needs at least 2 (use still images otherwise)"
            )

    @property
    def frames(self) -> list[int]:
        """The rendered frames, in order."""
        return list(range(self.frame_start, self.frame_end + 1, self.stride))

    @property
    def length(self) -> int:
        """T, the number of frames in a clip."""
        return len(self.frames)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipSettings:
        if not isinstance(data, Mapping):
            raise ConfigError(f"clip settings must be a mapping, got {data!r}")
        unknown = sorted(set(data) - {"frame_start", "frame_end", "stride"})
        if unknown:
            raise ConfigError(f"unknown clip setting(s) {unknown}; known: frame_start, frame_end, stride")
        return cls(**data)


def point_caches(scene: bpy.types.Scene) -> list[tuple[str, Any]]:
    """(description, point cache) of every simulation the scene steps: its rigid-body world, cloth and soft-body
    modifiers and particle systems."""
    caches: list[tuple[str, Any]] = []
    world = scene.rigidbody_world
    if world is not None and world.enabled and world.point_cache is not None:
        caches.append(("the rigid-body world's cache (Scene ▸ Rigid Body World ▸ Cache)", world.point_cache))
    for obj in scene.objects:
        for modifier in obj.modifiers:
            cache = getattr(modifier, "point_cache", None)
            if cache is not None:
                caches.append((f"the cache of {obj.name!r}'s {modifier.name!r} modifier", cache))
        for system in obj.particle_systems:
            caches.append((f"the cache of {obj.name!r}'s particle system {system.name!r}", system.point_cache))
    return caches


def simulation_start(scene: bpy.types.Scene, clip: ClipSettings) -> int:
    """The frame every sample is simulated from: the earliest cache start, or the clip's first frame."""
    return min([clip.frame_start, *(cache.frame_start for _, cache in point_caches(scene))])


def check_clip_range(scene: bpy.types.Scene, clip: ClipSettings) -> None:
    """Raise :class:`ConfigError` when the clip's frames lie outside the scene's frame range or a simulation cache
    cannot give them (it ends earlier, or it is baked, which would give every sample the same motion)."""
    if clip.frame_start < scene.frame_start or clip.frame_end > scene.frame_end:
        raise ConfigError(
            f"clip frames {clip.frame_start}–{clip.frame_end} lie outside scene {scene.name!r}'s frame range "
            f"{scene.frame_start}–{scene.frame_end} (Output Properties ▸ Frame Range)"
        )
    last = clip.frames[-1]
    for what, cache in point_caches(scene):
        if cache.is_baked:
            raise ConfigError(
                f"{what} is baked: every sample would replay the bake. Delete the bake (Free Bake) to fit its "
                "parameters"
            )
        if cache.frame_end < last:
            raise ConfigError(
                f"{what} ends at frame {cache.frame_end}, before the clip's last frame {last}: the simulation "
                f"would stop there. Set the cache's End to at least {last} or end the clip earlier"
            )


class ClipRenderer(RenderOverride):
    """A :class:`RenderOverride` whose :meth:`render` gives a clip (T, H, W, C) re-simulated for the current values.

    ``touched``: the properties a run sets; their data-blocks are tagged for re-evaluation before each clip (a
    custom property read by a driver changes nothing until its data-block is re-evaluated). ``probes``: label →
    (property, values) to check on entering that each learned property changes the clips (see
    :class:`RenderOverride`). The scene's current frame is restored — and re-simulated — by :meth:`restore`.
    """

    renders_are = "rendered clips"
    identical = 1.5 / 255  # a re-simulated clip may differ by a level where a still would not

    def __init__(
        self,
        scene: bpy.types.Scene,
        settings: RenderSettings,
        clip: ClipSettings,
        touched: Iterable[rna.BoundProperty] = (),
        probes: Mapping[str, tuple[rna.BoundProperty, Sequence[rna.Value]]] | None = None,
    ) -> None:
        super().__init__(scene, settings, probes)
        self.clip = clip
        self.touched = list(touched)
        self._frame: tuple[int, float] | None = None

    def check(self) -> None:
        super().check()
        # Blender renders a scene at the active scene's frame. A context override would fix that, but a render
        # under one reads the override's Python dict while a training thread runs Python: it crashes Blender.
        if self.scene != bpy.context.scene:
            raise ConfigError(
                f"clip samples are rendered from the active scene: make {self.scene.name!r} the active scene "
                f"(it is {bpy.context.scene.name!r})"
            )
        check_clip_range(self.scene, self.clip)

    def __enter__(self) -> ClipRenderer:
        self.check()
        self._frame = (self.scene.frame_current, self.scene.frame_subframe)
        super().__enter__()
        # Kept with the overridden settings so that a run's suspend (saving mid-run) also puts the frame back.
        self.saved.append((self.scene, "frame_current", self._frame[0]))
        return self

    def render(self) -> np.ndarray:
        """Simulate from the start with the scene's current values and render the clip's frames: (T, H, W, C)."""
        scene, wanted = self.scene, set(self.clip.frames)
        self._invalidate()
        frames = []
        for frame in range(simulation_start(scene, self.clip), self.clip.frame_end + 1):
            scene.frame_set(frame)
            if frame in wanted:
                frames.append(super().render())
        return np.stack(frames)

    def restore(self) -> list[str]:
        """Put the render settings back, then re-simulate the scene's own values up to the frame it was on."""
        problems = super().restore()
        if self._frame is None:
            return problems
        frame, subframe = self._frame
        self._frame = None
        try:
            self._invalidate()
            start = simulation_start(self.scene, self.clip)
            ends = [cache.frame_end for _, cache in point_caches(self.scene)]
            for step in range(start, min([frame, *ends]) + 1):
                self.scene.frame_set(step)
            self.scene.frame_set(frame, subframe=subframe)
        except (ReferenceError, RuntimeError, ValueError) as error:
            problems.append(f"frame {frame} and its simulation not restored: {error}")
        return problems

    def _invalidate(self) -> None:
        """Make the next simulation start from scratch with the values set now."""
        for owner in {id(b.owner): b.owner for b in self.touched}.values():
            owner.update_tag()
        world = self.scene.rigidbody_world
        if world is not None and world.enabled:
            # Any rigid-body-world setting marks its cache outdated (the point cache's own settings would not).
            world.time_scale = world.time_scale
        for _, cache in point_caches(self.scene):
            if isinstance(cache.id_data, bpy.types.Object):
                cache.frame_start = cache.frame_start


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base
