"""Render the active camera to a float32 array, with the render settings a run needs overridden and restored.

Images leave Blender the way a target made by the user's own render script would: through the scene's own colour
management (view transform, look, exposure, display — targets were made with them, photos look like them), with
no dither, 8 bits per channel, written as uncompressed TGA to tmpfs and parsed with numpy. A render made at a
``render_size`` larger than the training size then goes through the targets' own crop and area resize
(``engine.images.to_display``). Measured at 64×64 on 2 cores, reading back costs ~0.2 ms (EXR through
bpy.data.images: ~1 ms, and a linear→sRGB conversion on top); the render itself dominates.

Before the first render, every probed property is rendered across its range (:meth:`RenderOverride.__enter__`, or
render workers through ``run.sampler.WorkerProbe``): one whose renders do not change at all cannot be learned from
images and stops the run, named (:func:`raise_if_insensitive`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...engine.errors import RenderError, SceneFitError, SpecError
from ...engine.images import to_display
from ...engine.vocabulary import RENDER_ENGINES
from . import compat, devices, rna

# In a settings plan: save and restore this setting without changing it.
_KEEP: Any = object()
_WORKBENCH_AA = ((1, "OFF"), (5, "5"), (8, "8"), (11, "11"), (16, "16"), (32, "32"))


@dataclass(frozen=True)
class RenderSettings:
    """What a training render needs. ``samples`` means Cycles samples, Workbench anti-aliasing samples (1 = off)
    or EEVEE samples, depending on the engine."""

    resolution: tuple[int, int] = (64, 64)  # (width, height) in pixels
    engine: str = "CYCLES"
    samples: int = 8
    channels: int = 3  # 3: opaque RGB (the world is the background); 4: RGBA with a transparent film
    # (width, height) Blender renders at before the targets' crop and resize to ``resolution``; None: ``resolution``
    render_size: tuple[int, int] | None = None

    @property
    def rendered(self) -> tuple[int, int]:
        return self.render_size or self.resolution


def temp_root() -> Path:
    """tmpfs when there is one (renders never touch a disk), else the system's temp folder."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


TEMP_PREFIX = "scenefit-render-"  # + the process id + "-": the folder of a killed process is known for stale


def make_temp_folder() -> Path:
    """A new render folder named after this process, after removing the folders of processes that no longer exist
    (a run killed with SIGKILL cannot remove its own)."""
    root = temp_root()
    # POSIX only: on Windows os.kill(pid, 0) would end that process instead of asking whether it exists.
    for folder in root.glob(f"{TEMP_PREFIX}*-*") if os.name == "posix" else ():
        pid = folder.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process (PermissionError): keep its folder
    return True


class RenderOverride:
    """Context manager: overrides the scene's render settings for training renders and restores all of them.

    >>> with RenderOverride(scene, RenderSettings((64, 64), "BLENDER_WORKBENCH")) as renderer:
    ...     image = renderer.render()  # (64, 64, 3) float32 in [0, 1]

    ``probes``: label → (property, values) checked on entering: each property is set to each of its values in
    turn and rendered; :class:`SpecError` names those whose renders are all the same.
    """

    # What one render() gives, in messages; two of them closer than ``identical`` everywhere are the same picture
    # (display-referred, 8-bit: any change the parameters make shows as at least one level).
    renders_are = "rendered images"
    identical = 0.5 / 255

    def __init__(
        self,
        scene: bpy.types.Scene,
        settings: RenderSettings,
        probes: Mapping[str, tuple[rna.BoundProperty, Sequence[rna.Value]]] | None = None,
    ) -> None:
        self.scene = scene
        self.settings = settings
        self.probes = dict(probes or {})
        self.saved: list[tuple[Any, str, Any]] = []
        self._folder: Path | None = None
        self._path: Path | None = None

    def __enter__(self) -> RenderOverride:
        self.check()
        self._folder = make_temp_folder()
        self._path = self._folder / "render.tga"
        self.saved = [(owner, name, getattr(owner, name)) for owner, name, _ in self._plan()]
        try:
            for owner, name, value in self._plan():
                if value is not _KEEP:
                    setattr(owner, name, value)
        except (TypeError, ValueError, AttributeError) as error:
            self.restore()
            raise RenderError(f"cannot set up rendering of scene {self.scene.name!r}: {error}") from None
        try:
            self.check_sensitive()
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def restore(self) -> list[str]:
        """Put every overridden setting back (in the order that keeps dependent enums valid)."""
        problems = []
        for owner, name, value in self.saved:
            try:
                setattr(owner, name, value)
            except (TypeError, ValueError, AttributeError, ReferenceError) as error:
                problems.append(f"render setting {name} not restored: {error}")
        self.saved = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        return problems

    def check(self) -> None:
        """Raise :class:`RenderError` when this scene cannot be rendered as asked, before anything changes."""
        scene, settings = self.scene, self.settings
        if scene.camera is None:
            raise RenderError(f"scene {scene.name!r} has no active camera: add a camera and make it the scene camera")
        if settings.engine not in RENDER_ENGINES:
            raise RenderError(f"unknown render engine {settings.engine!r}; one of {', '.join(RENDER_ENGINES)}")
        if settings.engine == "CYCLES" and not hasattr(scene, "cycles"):
            raise RenderError("the Cycles add-on is disabled in this Blender: enable it or pick another engine")
        devices.check_gpu(scene, settings.engine)  # never a silent CPU render
        for what, (width, height) in (("training resolution", settings.resolution), ("render size", settings.rendered)):
            if not (4 <= width <= 4096 and 4 <= height <= 4096):
                raise RenderError(f"{what} {width}×{height} is outside 4–4096 pixels")
        if settings.samples < 1:
            raise RenderError(f"render samples must be at least 1, got {settings.samples}")
        if settings.channels not in (3, 4):
            raise RenderError(f"channels must be 3 (RGB) or 4 (RGBA), got {settings.channels}")

    def render(self) -> np.ndarray:
        """Render the scene camera; returns (height, width, channels) float32, display-referred, in [0, 1]."""
        if self._path is None:
            raise RenderError("render() called outside the RenderOverride context")
        self._path.unlink(missing_ok=True)
        try:
            with quiet_stdout():
                result = bpy.ops.render.render(write_still=True, scene=self.scene.name)
        except RuntimeError as error:
            message = str(error).strip().removeprefix("Error: ").splitlines()[0]
            raise RenderError(f"rendering scene {self.scene.name!r} failed: {message}") from None
        if result != {"FINISHED"} or not self._path.is_file():
            raise RenderError(f"rendering scene {self.scene.name!r} failed: Blender wrote no image ({result})")
        image = read_tga(self._path)
        settings = self.settings
        width, height = settings.rendered
        if image.shape != (height, width, settings.channels):
            raise RenderError(
                f"rendering scene {self.scene.name!r} gave a {image.shape} image, expected "
                f"{(height, width, settings.channels)}"
            )
        if settings.rendered == settings.resolution:
            return image
        if settings.channels == 3:
            image = np.concatenate([image, np.ones_like(image[..., :1])], axis=2)
        return to_display(image, False, settings.resolution, settings.channels)

    def check_sensitive(self) -> None:
        """Raise :class:`SpecError` naming each probed property whose renders do not change over its values (it
        could not be learned from any target); each property is put back afterwards."""
        renders: dict[str, list[np.ndarray]] = {}
        for label, (bound, values) in self.probes.items():
            if len(values) < 2:
                continue
            saved = bound.get()
            try:
                renders[label] = []
                for value in values:
                    bound.set(value)
                    renders[label].append(self.render())
            finally:
                bound.set(saved)
        probed = {label: (bound.culprit, values) for label, (bound, values) in self.probes.items()}
        raise_if_insensitive(probed, renders, self.identical, self.renders_are)

    def _plan(self) -> list[tuple[Any, str, Any]]:
        """(owner, attribute, value) in the order to set them; _KEEP marks settings saved only because changing
        another one (the file format) can reset them."""
        scene, settings = self.scene, self.settings
        r, image = scene.render, scene.render.image_settings
        width, height = settings.rendered
        plan: list[tuple[Any, str, Any]] = [
            (r, "engine", self._engine_identifier()),
            (r, "resolution_x", width),
            (r, "resolution_y", height),
            (r, "resolution_percentage", 100),
            (r, "pixel_aspect_x", 1.0),
            (r, "pixel_aspect_y", 1.0),
            (r, "use_border", False),
            (r, "use_multiview", False),
            (r, "use_compositing", False),  # File Output nodes would write files on every render
            (r, "use_sequencer", False),
            (r, "use_stamp", False),
            # Cycles keeps its scene between renders and syncs only what changed (same pixels, measured).
            (r, "use_persistent_data", settings.engine == "CYCLES"),
            (r, "dither_intensity", 0.0),  # dither noise would differ between renders of the same sample
            (r, "film_transparent", settings.channels == 4),
            (r, "filepath", str(self._path)),
            (r, "use_file_extension", True),
            (image, "file_format", "TARGA_RAW"),
            (image, "color_depth", _KEEP),
            (image, "color_mode", "RGBA" if settings.channels == 4 else "RGB"),
            (image, "quality", _KEEP),
            (image, "compression", _KEEP),
            (image, "exr_codec", _KEEP),
            (image, "color_management", "FOLLOW_SCENE"),
        ]
        if hasattr(scene, "cycles"):
            plan += [
                (scene.cycles, "samples", settings.samples if settings.engine == "CYCLES" else _KEEP),
                (scene.cycles, "use_denoising", False if settings.engine == "CYCLES" else _KEEP),
                (scene.cycles, "time_limit", 0.0 if settings.engine == "CYCLES" else _KEEP),
            ]
        aa = max((a for a in _WORKBENCH_AA if a[0] <= settings.samples), key=lambda a: a[0])[1]
        plan.append((scene.display, "render_aa", aa if settings.engine == "BLENDER_WORKBENCH" else _KEEP))
        eevee_samples = settings.samples if settings.engine == "BLENDER_EEVEE_NEXT" else _KEEP
        plan.append((scene.eevee, "taa_render_samples", eevee_samples))
        return plan

    def _engine_identifier(self) -> str:
        return compat.render_engine(self.settings.engine)


def raise_if_insensitive(
    probed: Mapping[str, tuple[str, Sequence[rna.Value]]],
    renders: Mapping[str, Sequence[np.ndarray]],
    identical: float,
    renders_are: str,
) -> None:
    """Raise :class:`SpecError` naming each property (label → (its culprit, its probe values)) whose ``renders``
    (label → one per value; labels left out were not probed) differ by at most ``identical`` everywhere."""
    flat: list[str] = []
    for label, images in renders.items():
        culprit, values = probed[label]
        difference = max(float(np.abs(image - images[0]).max()) for image in images[1:])
        if difference <= identical:
            shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else repr(v) for v in values)
            flat.append(
                f"{culprit} does not change the {renders_are} (at {shown} they differ by at most "
                f"{difference * 255:.1f}/255)"
            )
    if flat:
        raise SpecError(
            f"not identifiable from the data, no target could teach them: {'; '.join(flat)}. Make them fixed "
            "(untick Learn) or remove them; check that the camera (and the frame range of clips) shows what they "
            "change"
        )


def probe_values(distribution: Mapping[str, Any], choices: Sequence[Any] | None = None) -> list[rna.Value]:
    """Scene values spanning a spec's starting range: [low, high] of a truncated normal, μ ± 3σ of a normal,
    exp(μ ± 3σ) of a log-normal, every choice of a categorical, both values of a Bernoulli."""
    kind = distribution.get("kind")
    if kind == "truncnormal":
        return [float(distribution["low"]), float(distribution["high"])]
    if kind == "normal":
        mu, sigma = float(distribution["mu"]), float(distribution["sigma"])
        return [mu - 3 * sigma, mu + 3 * sigma]
    if kind == "lognormal":
        mu, sigma = float(distribution["mu"]), float(distribution["sigma"])
        return [math.exp(mu - 3 * sigma), math.exp(mu + 3 * sigma)]
    if kind == "categorical":
        return list(choices if choices is not None else distribution.get("choices") or ())
    if kind == "bernoulli":
        return [False, True]
    raise SceneFitError(f"no probe values for distribution kind {kind!r}")


def learned_probes(
    parameters: Mapping[str, Any], distributions: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[rna.BoundProperty, list[rna.Value]]]:
    """A run's probes: label → (property, :func:`probe_values`) for every learned (not fixed) parameter.
    ``parameters``: label → object with ``bound`` and ``choices`` (a session's parameters)."""
    return {
        label: (parameter.bound, probe_values(distributions[label], parameter.choices))
        for label, parameter in parameters.items()
        if not distributions[label].get("fixed", False)
    }


def scene_output_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """The (width, height) the scene's own render settings give (resolution × percentage)."""
    r = scene.render
    scale = r.resolution_percentage / 100
    return max(1, round(r.resolution_x * scale)), max(1, round(r.resolution_y * scale))


def render_to_array(scene: bpy.types.Scene, settings: RenderSettings) -> np.ndarray:
    """One render with the settings overridden for just this call (a run's sampler keeps one
    :class:`RenderOverride`)."""
    with RenderOverride(scene, settings) as renderer:
        return renderer.render()


def read_tga(path: Path) -> np.ndarray:
    """Parse an uncompressed true-colour TGA (what Blender's TARGA_RAW writes) into float32 (H, W, C) in [0, 1]."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size < 18 or data[2] != 2 or data[1] != 0:
        raise RenderError(f"{path}: not an uncompressed true-colour TGA")
    id_length = int(data[0])
    width, height = int(data[12]) | int(data[13]) << 8, int(data[14]) | int(data[15]) << 8
    channels = int(data[16]) // 8
    start = 18 + id_length
    size = width * height * channels
    if channels not in (3, 4) or data.size < start + size:
        raise RenderError(f"{path}: truncated or unsupported TGA ({channels * 8} bits, {width}×{height})")
    pixels = data[start : start + size].reshape(height, width, channels)
    if not data[17] & 0x20:  # origin bottom-left: flip so that row 0 is the top
        pixels = pixels[::-1]
    order = [2, 1, 0, 3][:channels]  # stored as BGR(A)
    return pixels[..., order].astype(np.float32) / np.float32(255)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence Blender's per-render status lines ("Saved: …/render.tga", "Time: …"), in the UI as in background
    mode: a run renders thousands of images, and batch prints one line per step (the workers' snapshot is saved
    quietly too).

    They are written by C code straight to file descriptor 1, so sys.stdout cannot catch them; errors still
    arrive as exceptions and on stderr.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # Windows has no process-wide C library handle to flush
        return None
