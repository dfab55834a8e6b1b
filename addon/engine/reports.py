"""Reports for people who would rather look than read: parameter and loss plots, image grids, a progress GIF.

Input is a run's ``history`` (``AskTellOptimizer.history``: one dict per step with ``step``, ``renders``,
``values`` {label: distribution values}, ``d_loss``/``d_real``/``d_sim`` (None where the objective has none),
``reward_mean``) and images in the shared convention (float32 (H, W, C), C in {3, 4},
[0, 1], display-referred). matplotlib (object API on the Agg canvas: no pyplot, no global backend switch) and
Pillow are imported only when a report is drawn; without them a :class:`ReportError` says what to install.
Nothing here imports bpy or torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ReportError

# What Blender's Python needs for reports: installed next to torch (see torch_vendor), not bundled as wheels.
REQUIREMENTS = ("matplotlib==3.11.2", "pillow==13.0.0")

PURPLE = (128, 0, 128)  # first GIF frame, as in blendtorch's densityopt figure
GREEN = (0, 160, 0)  # last GIF frame
NEUTRAL = (64, 64, 64)  # frames in between
BACKGROUND = (255, 255, 255)
BORDER = 6


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ModuleNotFoundError as error:
        raise ReportError(
            f"image reports need Pillow, which this Python cannot import: pip install {REQUIREMENTS[1]} "
            "(into the same site-packages folder as torch)"
        ) from error
    return Image, ImageDraw


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as error:
        raise ReportError(
            f"plots need matplotlib, which this Python cannot import: pip install {REQUIREMENTS[0]} "
            "(into the same site-packages folder as torch)"
        ) from error
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


# --- images ----------------------------------------------------------------------------------------------------


def to_uint8(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(N, H, W, 3) uint8 from float images in [0, 1] or uint8 ones; RGBA is composited over mid grey."""
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] not in (3, 4) or batch.shape[0] == 0:
        raise ReportError(f"images must be (N, H, W, 3|4) with N ≥ 1, got shape {batch.shape}")
    if batch.dtype == np.uint8 and batch.shape[-1] == 3:
        return batch
    batch = batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8 else batch.astype(np.float32)
    if batch.shape[-1] == 4:
        alpha = batch[..., 3:]
        batch = batch[..., :3] * alpha + 0.5 * (1.0 - alpha)
    return (np.clip(np.nan_to_num(batch), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_grid(images: np.ndarray | Sequence[np.ndarray], cells: int | None = None, pad: int = 2) -> np.ndarray:
    """One (H, W, 3) uint8 picture of the images on an as-square-as-possible grid of ``cells`` (default: one per
    image; more keeps the picture's size fixed while fewer images come in)."""
    batch = to_uint8(images)
    n, h, w, _ = batch.shape
    cells = max(cells or n, n)
    columns = math.ceil(math.sqrt(cells))
    rows = math.ceil(cells / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), BACKGROUND, np.uint8)
    for i, image in enumerate(batch):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return grid


def comparison(targets: np.ndarray, samples: np.ndarray, caption: str, max_images: int = 16) -> np.ndarray:
    """Targets (left) next to samples (right), each a grid of at most ``max_images``, with a caption below."""
    Image, ImageDraw = _pil()
    left = image_grid(to_uint8(targets)[:max_images], cells=max_images)
    right = image_grid(to_uint8(samples)[:max_images], cells=max_images)
    gap, caption_height = 12, 16
    height = max(left.shape[0], right.shape[0])
    picture = np.full((height + caption_height, left.shape[1] + gap + right.shape[1], 3), BACKGROUND, np.uint8)
    picture[: left.shape[0], : left.shape[1]] = left
    picture[: right.shape[0], left.shape[1] + gap :] = right
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    draw.text((2, height + 2), "targets", fill=(0, 0, 0))
    draw.text((left.shape[1] + gap + 2, height + 2), caption, fill=(0, 0, 0))
    return np.asarray(image)


def bordered(picture: np.ndarray, colour: tuple[int, int, int], width: int = BORDER) -> np.ndarray:
    h, w, _ = picture.shape
    framed = np.empty((h + 2 * width, w + 2 * width, 3), np.uint8)
    framed[:] = colour
    framed[width : width + h, width : width + w] = picture
    return framed


def write_gif(frames: Sequence[np.ndarray], path: Path | str, duration_ms: int = 250) -> Path:
    """An endlessly looping GIF: purple border on the first frame, green on the last, grey in between."""
    Image, _ = _pil()
    if not frames:
        raise ReportError("a progress GIF needs at least one frame")
    shape = frames[0].shape
    if any(frame.shape != shape for frame in frames):
        raise ReportError(f"GIF frames must all have one shape, got {sorted({f.shape for f in frames})}")
    colours = [NEUTRAL] * len(frames)
    colours[0] = PURPLE
    colours[-1] = GREEN if len(frames) > 1 else PURPLE
    images = [Image.fromarray(bordered(frame, colour)) for frame, colour in zip(frames, colours, strict=True)]
    path = Path(path)
    # disposal=1 and optimize=False keep every frame whole, so readers (and tests) see exactly what was drawn.
    with _whole_or_none(path):
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0, optimize=False, disposal=1
        )
    return path


def write_png(picture: np.ndarray, path: Path | str) -> Path:
    Image, _ = _pil()
    path = Path(path)
    # Written during runs (snapshots): level 1 is 3× faster than the default 6 for a few % larger files.
    with _whole_or_none(path):
        Image.fromarray(picture).save(path, compress_level=1)
    return path


@contextlib.contextmanager
def _whole_or_none(path: Path | str) -> Iterator[None]:
    """A file written in the block is removed when writing fails (a full disk leaves no half picture behind)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)
        raise


# --- plots -----------------------------------------------------------------------------------------------------


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([_number(entry.get(key)) for entry in history], np.float64)


def _labels(history: Sequence[Mapping[str, Any]]) -> list[str]:
    labels: list[str] = []
    for entry in history:
        for label in entry.get("values", {}):
            if label not in labels:
                labels.append(label)
    return labels


def _plot_parameter(axes, steps: np.ndarray, values: list[Mapping[str, Any] | None], truth: Mapping | None) -> None:
    present = [v for v in values if v]
    if not present:
        return
    sample = present[0]
    # A truncated normal reports its own mean and std (its parent's μ may lie outside the bounds).
    location, scale = ("mean", "std") if "mean" in sample and "std" in sample else ("mu", "sigma")
    if location in sample and scale in sample:
        mu = np.array([_number(v.get(location)) if v else math.nan for v in values])
        sigma = np.array([_number(v.get(scale)) if v else math.nan for v in values])
        axes.plot(steps, mu, color="C0", label="μ")
        axes.fill_between(steps, mu - sigma, mu + sigma, color="C0", alpha=0.25, label="μ ± σ")
        if truth and location == "mean" and "mean" not in truth and "kind" in truth:
            from .distributions import distribution_from_dict  # torch: only for a truncated normal's truth

            truth = distribution_from_dict(truth).values()
        if truth and location in truth:
            axes.axhline(truth[location], color="C3", linestyle="--", label="target μ")
            if scale in truth:
                low, high = truth[location] - truth[scale], truth[location] + truth[scale]
                axes.axhspan(low, high, color="C3", alpha=0.08, label="target μ ± σ")
        axes.set_ylabel("μ ± σ")
    elif "probs" in sample:
        choices = sample.get("choices") or list(range(len(sample["probs"])))
        for i, choice in enumerate(choices):
            probs = np.array([_number(v["probs"][i]) if v else math.nan for v in values])
            axes.plot(steps, probs, color=f"C{i % 10}", label=f"p({choice})")
            if truth and "probs" in truth and i < len(truth["probs"]):
                axes.axhline(truth["probs"][i], color=f"C{i % 10}", linestyle="--")
        axes.set_ylim(-0.02, 1.02)
        axes.set_ylabel("probability")
    elif "p" in sample:
        axes.plot(steps, [_number(v.get("p")) if v else math.nan for v in values], color="C0", label="p")
        if truth and "p" in truth:
            axes.axhline(truth["p"], color="C3", linestyle="--", label="target p")
        axes.set_ylim(-0.02, 1.02)
        axes.set_ylabel("p")
    axes.legend(fontsize="small", loc="best")


def parameter_figure(history: Sequence[Mapping[str, Any]], truth: Mapping[str, Mapping[str, Any]] | None = None):
    """One panel per parameter: μ ± σ (normal, lognormal: of log x, truncnormal: its own mean ± std), probabilities
    (categorical) or p (bernoulli) over steps, with the target distribution dashed when ``truth`` names it."""
    labels = _labels(history)
    if not labels:
        raise ReportError("the history holds no parameter values to plot")
    truth = truth or {}
    columns = min(len(labels), 3)
    rows = math.ceil(len(labels) / columns)
    figure = _figure(4.2 * columns, 3.0 * rows)
    steps = _series(history, "step")
    for i, label in enumerate(labels):
        axes = figure.add_subplot(rows, columns, i + 1)
        values = [entry.get("values", {}).get(label) for entry in history]
        target = truth.get(label)
        _plot_parameter(axes, steps, values, target)
        kind = f" — target {target['kind']}" if target and "kind" in target else ""
        axes.set_title(f"{label}{kind}", fontsize="medium")
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    return figure


def loss_figure(history: Sequence[Mapping[str, Any]]):
    """Three panels over steps: the discriminator/critic loss (MMD² for MMD), D(real) and D(sim) (absent for MMD),
    and the mean reward of the sampled scenes (higher = more target-like)."""
    if not history:
        raise ReportError("the history is empty: nothing to plot")
    steps = _series(history, "step")
    figure = _figure(12.0, 3.2)
    panels = (
        ("loss", (("d_loss", "discriminator loss"),)),
        ("discriminator outputs", (("d_real", "D(real)"), ("d_sim", "D(sim)"))),
        ("reward", (("reward_mean", "mean reward"),)),
    )
    for i, (title, keys) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        for key, name in keys:
            series = _series(history, key)
            if np.isfinite(series).any():
                axes.plot(steps, series, label=name)
        axes.set_title(title, fontsize="medium")
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    return figure


def plot_parameters(
    history: Sequence[Mapping[str, Any]], path: Path | str, truth: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    path = Path(path)
    with _whole_or_none(path):
        parameter_figure(history, truth).savefig(path)
    return path


def plot_losses(history: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    path = Path(path)
    with _whole_or_none(path):
        loss_figure(history).savefig(path)
    return path


# --- the reporter ----------------------------------------------------------------------------------------------


class Reporter:
    """Collects snapshots during a run and writes the report files into ``output_dir``.

    ``snapshot`` (call every N steps, including the last one) writes ``samples_<step>.png`` (targets next to the
    current samples) at once and keeps the picture as a GIF frame; at most ``max_frames`` frames are kept — when
    full, every other one is dropped, keeping the first. ``finish(history)`` writes ``parameters.png``,
    ``losses.png`` and ``progress.gif`` and returns every file written so far by name.
    """

    def __init__(
        self,
        output_dir: Path | str,
        targets: np.ndarray,
        truth: Mapping[str, Mapping[str, Any]] | None = None,
        max_images: int = 16,
        max_frames: int = 64,
    ) -> None:
        if max_images < 1 or max_frames < 2:
            raise ReportError(f"max_images must be ≥ 1 and max_frames ≥ 2, got {max_images} and {max_frames}")
        self.output_dir = Path(output_dir)
        self.targets = to_uint8(targets)[:max_images]
        self.truth = dict(truth or {})
        self.max_images = max_images
        self.max_frames = max_frames
        self.frames: list[tuple[int, np.ndarray]] = []
        self.files: dict[str, Path] = {}

    def snapshot(self, step: int, images: np.ndarray | Sequence[np.ndarray], renders: int | None = None) -> Path:
        caption = f"samples, step {step}" + (f", {renders} renders" if renders is not None else "")
        picture = comparison(self.targets, to_uint8(images)[: self.max_images], caption, self.max_images)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = write_png(picture, self.output_dir / f"samples_{step:05d}.png")
        self.files["samples"] = path
        if len(self.frames) >= self.max_frames:
            self.frames = self.frames[::2]
        self.frames.append((step, picture))
        return path

    def finish(self, history: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.files["targets"] = write_png(image_grid(self.targets), self.output_dir / "targets.png")
        if history:
            self.files["parameters"] = plot_parameters(history, self.output_dir / "parameters.png", self.truth)
            self.files["losses"] = plot_losses(history, self.output_dir / "losses.png")
        if self.frames:
            self.files["progress"] = write_gif([p for _, p in self.frames], self.output_dir / "progress.gif")
        return dict(self.files)
