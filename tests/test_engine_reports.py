"""Reports: plots of the history, target/sample grids, the progress GIF and its border colours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon.engine import reports
from addon.engine.errors import ReportError

ROOT = Path(__file__).resolve().parent.parent
TRUTH = {
    "m1": {"kind": "lognormal", "mu": 2.25, "sigma": 0.1},
    "shape": {"kind": "categorical", "probs": [0.0, 1.0, 0.0], "choices": [0, 1, 2]},
    "visible": {"kind": "bernoulli", "p": 0.8},
}


def make_history(steps: int = 12) -> list[dict]:
    history = []
    for step in range(steps):
        t = step / (steps - 1)
        history.append(
            {
                "step": step,
                "renders": 64 * (step + 1),
                "param_step": step > 1,
                "d_loss": 1.4 - 0.5 * t,
                "d_real": 0.9 - 0.4 * t,
                "d_sim": None if step < 2 else 0.1 + 0.4 * t,
                "reward_mean": -0.7 + 0.2 * t,
                "values": {
                    "m1": {"mu": 1.2 + 1.05 * t, "sigma": 0.4 - 0.3 * t},
                    "shape": {"probs": [1 / 3 - t / 3, 1 / 3 + 2 * t / 3, 1 / 3 - t / 3], "choices": [0, 1, 2]},
                    "visible": {"p": 0.5 + 0.3 * t},
                },
            }
        )
    return history


def images(n: int, size: int = 24, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def gif_frames(path: Path) -> list[np.ndarray]:
    frames = []
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")).astype(int))
    return frames


def test_to_uint8_scales_clips_and_composites_alpha():
    rgba = np.array([[[[1.0, 0.0, 0.0, 0.5], [2.0, -1.0, np.nan, 1.0]]]], np.float32)
    out = reports.to_uint8(rgba)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(out[0, 0, 0], [191, 64, 64])  # (0.75, 0.25, 0.25): half red over mid grey
    np.testing.assert_array_equal(out[0, 0, 1], [255, 0, 0])
    as_bytes = np.array([[[[255, 0, 0, 128]]]], np.uint8)
    np.testing.assert_allclose(reports.to_uint8(as_bytes)[0, 0, 0], [191, 64, 64], atol=1)
    with pytest.raises(ReportError, match="shape"):
        reports.to_uint8(np.zeros((2, 8, 8, 2), np.float32))


def test_image_grid_places_every_image():
    batch = np.zeros((5, 4, 6, 3), np.float32)
    for i in range(5):
        batch[i] = i / 4
    grid = reports.image_grid(batch, cells=9, pad=1)
    assert grid.shape == (3 * 5 + 1, 3 * 7 + 1, 3)
    # image i sits at row i // 3, column i % 3
    for i in range(5):
        r, c = divmod(i, 3)
        assert grid[1 + r * 5, 1 + c * 7, 0] == round(i / 4 * 255)
    assert (grid[1 + 1 * 5 + 2, 1 + 2 * 7 + 2] == reports.BACKGROUND).all(), "unused cells stay background"


def test_parameter_figure_has_one_panel_per_label_and_draws_the_truth():
    figure = reports.parameter_figure(make_history(), TRUTH)
    axes = {ax.get_title().split(" —")[0]: ax for ax in figure.axes}
    assert set(axes) == {"m1", "shape", "visible"}
    mu_line = axes["m1"].lines[0].get_ydata()
    assert mu_line[0] == pytest.approx(1.2) and mu_line[-1] == pytest.approx(2.25)
    constant_lines = [line.get_ydata()[0] for line in axes["m1"].lines if len(set(line.get_ydata())) == 1]
    assert 2.25 in constant_lines, "the target μ is drawn"
    assert len(axes["shape"].lines) == 3 + 3, "one curve and one target line per choice"
    assert any(list(line.get_ydata()) == [0.8, 0.8] for line in axes["visible"].lines)


def test_parameter_figure_draws_a_truncated_normals_own_mean():
    from addon.engine.distributions import TruncatedNormal

    start, end = TruncatedNormal(1.29, 0.5, 0.0, 1.0), TruncatedNormal(0.3, 0.1, 0.0, 1.0)
    history = [{"step": i, "values": {"r": d.values()}} for i, d in enumerate((start, end))]
    truth = {"r": {"kind": "truncnormal", "mu": 1.2, "sigma": 0.3, "low": 0.0, "high": 1.0}}
    (axes,) = reports.parameter_figure(history, truth).axes
    assert list(axes.lines[0].get_ydata()) == pytest.approx([start.mean.item(), end.mean.item()])
    target = TruncatedNormal(1.2, 0.3, 0.0, 1.0).mean.item()
    assert [line.get_ydata()[0] for line in axes.lines[1:]] == pytest.approx([target]), "the truth's own mean"


def test_loss_figure_skips_missing_values():
    figure = reports.loss_figure(make_history())
    losses, outputs, reward = figure.axes
    assert [line.get_label() for line in losses.lines] == ["discriminator loss"]
    assert [line.get_label() for line in outputs.lines] == ["D(real)", "D(sim)"]
    assert np.isnan(outputs.lines[1].get_ydata()[:2]).all() and not np.isnan(outputs.lines[1].get_ydata()[2:]).any()
    assert reward.lines[0].get_ydata()[-1] == pytest.approx(-0.5)


def test_mmd_history_without_discriminator_outputs_still_plots():
    history = [{**entry, "d_real": None, "d_sim": None} for entry in make_history()]
    losses, outputs, _ = reports.loss_figure(history).axes
    assert len(losses.lines) == 1 and not outputs.lines


def test_plots_refuse_an_empty_history(tmp_path):
    with pytest.raises(ReportError, match="no parameter values"):
        reports.plot_parameters([{"step": 0}], tmp_path / "p.png")
    with pytest.raises(ReportError, match="empty"):
        reports.plot_losses([], tmp_path / "l.png")


def test_reporter_writes_every_file_and_a_gif_with_coloured_borders(tmp_path):
    targets = images(20, channels=4, seed=1)
    reporter = reports.Reporter(tmp_path / "out", targets, truth=TRUTH, max_images=9)
    for step in range(0, 50, 10):
        path = reporter.snapshot(step, images(7, seed=step), renders=64 * step)
        assert path.is_file() and path.stat().st_size > 0
    files = reporter.finish(make_history())
    assert set(files) == {"samples", "targets", "parameters", "losses", "progress"}
    for path in files.values():
        assert path.parent == tmp_path / "out" and path.stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "out").glob("samples_*.png")) == [
        f"samples_{s:05d}.png" for s in range(0, 50, 10)
    ]
    with Image.open(files["parameters"]) as plot:
        assert plot.size[0] >= 600

    frames = gif_frames(files["progress"])
    assert len(frames) == 5
    edge = reports.BORDER // 2
    for frame, colour in zip(frames, [reports.PURPLE] + [reports.NEUTRAL] * 3 + [reports.GREEN], strict=True):
        for y, x in ((edge, edge), (edge, -edge), (-edge, frame.shape[1] // 2), (frame.shape[0] // 2, -edge)):
            assert np.abs(frame[y, x] - colour).max() <= 8, f"border {frame[y, x]} is not {colour}"
    inner = reports.BORDER + 2
    assert np.abs(frames[0][inner:-inner, inner:-inner] - frames[-1][inner:-inner, inner:-inner]).mean() > 5


def test_reporter_thins_frames_but_keeps_the_first_and_latest(tmp_path):
    reporter = reports.Reporter(tmp_path, images(4), max_images=4, max_frames=4)
    for step in range(7):
        reporter.snapshot(step, images(4, seed=step))
    kept = [step for step, _ in reporter.frames]
    assert len(kept) <= 4 and kept[0] == 0 and kept[-1] == 6
    assert len(gif_frames(reporter.finish([])["progress"])) == len(kept)


def test_missing_libraries_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ReportError, match="matplotlib==.*torch"):
        reports.plot_losses(make_history(), tmp_path / "l.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ReportError, match="pillow=="):
        reports.write_gif([np.zeros((4, 4, 3), np.uint8)], tmp_path / "x.gif")


def test_importing_reports_loads_neither_torch_bpy_nor_the_plotting_libraries():
    code = (
        "import sys; import addon.engine.reports; "
        "print(sorted(m for m in ('torch', 'bpy', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
