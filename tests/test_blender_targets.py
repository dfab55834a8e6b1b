"""Target loading: same colour pipeline and size as renders, report of skipped files, clear errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.blender_scenes import cube_scene

LEVEL = 1 / 255


@pytest.fixture
def targets(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.targets.images")


@pytest.fixture
def pipeline(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.engine.images")


@pytest.fixture
def render(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.render")


def save_render(scene, path: Path, file_format: str, color_depth: str, **extra) -> None:
    """Render and save the way a user would make targets: Blender's own file output, Standard view."""
    import bpy

    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.display.render_aa = "OFF"
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = file_format
    scene.render.image_settings.color_depth = color_depth
    for key, value in extra.items():
        setattr(scene.render.image_settings, key, value)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def test_renders_and_saved_targets_share_the_colour_pipeline(scenefit, targets, render, tmp_path):
    import bpy

    scene = cube_scene(bpy)
    scene.view_settings.view_transform = "Standard"  # renders follow the scene's colour management, as saves do
    reference = render.render_to_array(scene, render.RenderSettings((32, 32), "BLENDER_WORKBENCH", 1))
    save_render(scene, tmp_path / "a8.png", "PNG", "8")
    save_render(scene, tmp_path / "b16.png", "PNG", "16")
    save_render(scene, tmp_path / "c.exr", "OPEN_EXR", "32", exr_codec="ZIP")
    save_render(scene, tmp_path / "d.jpg", "JPEG", "8", quality=100)
    images, report = targets.load_targets(tmp_path, (32, 32), 3)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
    assert [Path(p).name for p in report.loaded] == ["a8.png", "b16.png", "c.exr", "d.jpg"]
    assert np.array_equal(images[0], reference)  # 8-bit PNG: identical
    for image in images[1:3]:  # 16-bit PNG, linear EXR: the same within one 8-bit level
        assert np.abs(image - reference).max() <= LEVEL + 1e-6
    assert np.abs(images[3] - reference).mean() < 2 * LEVEL  # JPEG is lossy even at quality 100
    assert report.skipped == [] and report.resized == []


def test_resize_is_an_area_average_in_linear_light(targets, pipeline, tmp_path):
    checker = np.zeros((64, 64, 3), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 255  # half white, half black
    Image.fromarray(checker).save(tmp_path / "checker.png")
    images, report = targets.load_targets(tmp_path / "checker.png", (32, 32), 3)
    expected = np.round(pipeline.linear_to_srgb(np.array(0.5)) * 255) / 255  # 188/255, not 128/255
    assert np.allclose(images, expected, atol=1e-7)
    assert report.resized == [str(tmp_path / "checker.png")]


def test_other_aspect_ratios_are_centre_cropped(targets, tmp_path):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = (10, 200, 30)  # the centre square; the sides are black
    Image.fromarray(wide).save(tmp_path / "wide.png")
    images, _ = targets.load_targets(tmp_path, (16, 16), 3)
    assert np.allclose(images[0], np.array([10, 200, 30]) / 255, atol=1e-7)


def test_alpha_composited_over_black_or_kept(targets, pipeline, tmp_path):
    pixel = np.array([200, 100, 50, 128], np.uint8)
    Image.fromarray(np.tile(pixel, (8, 8, 1))).save(tmp_path / "rgba.png")
    rgb, _ = targets.load_targets(tmp_path, (8, 8), 3)
    alpha = 128 / 255
    expected = pipeline.linear_to_srgb(pipeline.srgb_to_linear(pixel[:3] / 255) * alpha)
    assert np.abs(rgb[0] - expected).max() <= 0.5 * LEVEL + 1e-6
    rgba, _ = targets.load_targets(tmp_path, (8, 8), 4)
    assert np.allclose(rgba[0], pixel / 255, atol=1e-6)  # straight alpha kept as stored


def test_glob_grey_16bit_and_report(targets, tmp_path):
    grey = (np.arange(64 * 48).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / "flat.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    images, report = targets.load_targets(tmp_path, (64, 48), 3)
    assert images.shape == (2, 48, 64, 3)
    assert np.allclose(images[1], np.round(grey / 65535 * 255)[..., None] / 255, atol=1e-6)
    assert {Path(p).name: why for p, why in report.skipped} == {
        "notes.txt": "not an image type (.txt)",
        "sub": "folder (folders are not searched)",
    }
    assert "2 target images loaded" in report.summary() and "2 skipped" in report.summary()
    only_png, _ = targets.load_targets(str(tmp_path / "fl*.png"), (64, 48), 3)
    assert only_png.shape == (1, 48, 64, 3)


def test_bad_target_sources(targets, tmp_path):
    with pytest.raises(targets.TargetError, match=f"target folder {tmp_path / 'missing'} does not exist"):
        targets.load_targets(tmp_path / "missing")
    with pytest.raises(targets.TargetError, match=f"no target images in {tmp_path}"):
        targets.load_targets(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(targets.TargetError, match="1 other files skipped"):
        targets.load_targets(tmp_path)
    with pytest.raises(targets.TargetError, match="no files match the target pattern .*\\*.png"):
        targets.load_targets(str(tmp_path / "*.png"))
    with pytest.raises(targets.TargetError, match="no target images given"):
        targets.load_targets("")


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("cut.png", lambda data: data[: len(data) // 2], "cannot be read"),
        ("cut.jpg", lambda data: data[: len(data) // 2], "is truncated \\(no JPEG end marker\\)"),
        ("junk.png", lambda data: b"definitely not a PNG file", "cannot be read"),
    ],
)
def test_unreadable_images_name_the_file(targets, tmp_path, name, damage, message):
    good = tmp_path / f"good{Path(name).suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(good)
    bad = tmp_path / name
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(targets.TargetError, match=f"target image {bad} {message}"):
        targets.load_targets(tmp_path, (32, 32))


def test_nan_pixels_in_exr(targets, tmp_path):
    import bpy

    image = bpy.data.images.new("nan", 4, 4, float_buffer=True)
    pixels = np.ones(4 * 4 * 4, np.float32)
    pixels[5] = np.nan
    image.pixels.foreach_set(pixels)
    image.filepath_raw = str(tmp_path / "nan.exr")
    image.file_format = "OPEN_EXR"
    image.save()
    bpy.data.images.remove(image)
    with pytest.raises(targets.TargetError, match="nan.exr contains NaN or infinite"):
        targets.load_targets(tmp_path, (4, 4))


def test_reading_and_saving_images_leave_the_open_file_alone(targets, tmp_path):
    """No image is added to or removed from the file's data, so its depsgraph is not rebuilt: in the interface
    that would restart the 3D Viewport's progressive anti-aliasing (bench/README.md, "The interactive run")."""
    import bpy

    scene = cube_scene(bpy)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "b16.png")  # float buffer: set to Non-Color
    save_render(scene, tmp_path / "c.exr", "OPEN_EXR", "32")
    bpy.context.view_layer.update()
    names = sorted(image.name for image in bpy.data.images)
    updates = []

    def record(_scene, depsgraph):
        updates.append([update.id.name for update in depsgraph.updates])

    bpy.app.handlers.depsgraph_update_post.append(record)
    try:
        images, report = targets.load_targets(tmp_path, (8, 8))
        targets.save_image(images[0], tmp_path / "saved.png")
        bpy.context.view_layer.update()
    finally:
        bpy.app.handlers.depsgraph_update_post.remove(record)
    assert len(report.loaded) == 3
    assert [name for names_updated in updates for name in names_updated] == []  # the old way: every ID
    assert sorted(image.name for image in bpy.data.images) == names


def test_save_image_round_trips_exactly(targets, tmp_path):
    rng = np.random.default_rng(1)
    for channels in (3, 4):
        image = rng.integers(0, 256, (12, 20, channels)).astype(np.float32) / 255
        if channels == 4:
            image[..., 3] = 1.0  # straight alpha is kept; keep it opaque so RGB compares as stored
        targets.save_image(image, tmp_path / f"saved{channels}.png")
        loaded, _ = targets.load_targets(tmp_path / f"saved{channels}.png", (20, 12), channels)
        assert np.array_equal(loaded[0], image)
