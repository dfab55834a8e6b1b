"""Clip samples in Blender: the bouncing-ball preset, re-simulation per sample, restoring the scene's frame and
simulation, physical properties as specs, and the bad inputs of clip runs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZE = (32, 32)


def module(scenefit, name: str):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.{name}")


def ball_scene(scenefit, **options):
    """The bouncing-ball preset applied to the current scene (scene options overridden by ``options``)."""
    import bpy

    data = json.loads((ROOT / "presets" / "bouncing_ball.json").read_text())
    data["scene"]["options"].update(options)
    preset = scenefit.addon.engine.presets.preset_from_dict(data, "bouncing_ball.json")
    scene = bpy.context.scene
    module(scenefit, "scene.presets").apply_preset(preset, scene)
    return scene, preset


def clip_settings(scenefit, preset):
    return module(scenefit, "scene.clips").ClipSettings.from_dict(preset.run["clips"])


def renderer(scenefit, scene, preset, **kwargs):
    render = module(scenefit, "scene.render")
    settings = render.RenderSettings(SIZE, "BLENDER_WORKBENCH", 1)
    return module(scenefit, "scene.clips").ClipRenderer(scene, settings, clip_settings(scenefit, preset), **kwargs)


def bound(scenefit, label, path, id_type="OBJECT", id_name="Ball"):
    return scenefit.addon.blender.scene.rna.resolve(label, id_type, id_name, path)


def ball_mask(frame: np.ndarray) -> np.ndarray:
    """Where the ball is: much brighter than the dark background (the floor is seen edge-on)."""
    return frame.mean(axis=-1) > 0.4


def ball_rows(clip: np.ndarray) -> list[float]:
    """Per frame, the mean image row of the ball, top = 0."""
    return [float(np.nonzero(ball_mask(frame))[0].mean()) if ball_mask(frame).any() else np.nan for frame in clip]


# --- the preset ------------------------------------------------------------------------------------------------


def test_bouncing_ball_preset_builds_a_rigid_body_scene_with_clip_settings(scenefit):
    scene, preset = ball_scene(scenefit)
    ball = scene.objects["Ball"]
    assert scene.rigidbody_world is not None and scene.rigidbody_world.enabled
    assert ball.rigid_body.type == "ACTIVE" and ball.rigid_body.collision_shape == "SPHERE"
    assert scene.objects["Floor"].rigid_body.type == "PASSIVE"
    settings = scene.scenefit
    assert settings.use_clips and (settings.clip_frame_start, settings.clip_frame_end, settings.clip_stride) == (
        9,
        51,
        6,
    )
    (spec,) = settings.specs
    assert spec.data_path == "rigid_body.restitution" and spec.problem == ""
    assert clip_settings(scenefit, preset).frames == [9, 15, 21, 27, 33, 39, 45, 51]


# --- re-simulation per sample ----------------------------------------------------------------------------------


def test_each_sample_is_resimulated_from_the_start(scenefit):
    scene, preset = ball_scene(scenefit)
    restitution = bound(scenefit, "restitution", "rigid_body.restitution")
    clips = {}
    with renderer(scenefit, scene, preset, touched=[restitution]) as clip_renderer:
        for key, value in [("a", 0.3), ("b", 0.9), ("a again", 0.3), ("b again", 0.9)]:
            restitution.set(value)
            clips[key] = clip_renderer.render()
    assert clips["a"].shape == (8, 32, 32, 3)
    assert np.array_equal(clips["a"], clips["a again"]) and np.array_equal(clips["b"], clips["b again"])
    assert np.array_equal(clips["a"][0], clips["b"][0])  # frame 9: the ball is still falling
    rows_a, rows_b = ball_rows(clips["a"]), ball_rows(clips["b"])
    assert min(rows_b[3:]) < min(rows_a[3:]) - 5, (rows_a, rows_b)  # the bouncier ball climbs higher
    assert rows_a[0] < rows_a[1], "the ball falls between the first two frames"


def test_a_custom_property_read_by_a_driver_is_resimulated_too(scenefit):
    """The initial-velocity set-up: ["initial_velocity"][0] drives the animated phase; changing a custom property
    re-evaluates nothing by itself, so stale simulation would show here first."""
    scene, preset = ball_scene(scenefit, launch_frames=2)
    velocity = bound(scenefit, "vx", '["initial_velocity"][0]')
    clips = []
    with renderer(scenefit, scene, preset, touched=[velocity]) as clip_renderer:
        for value in (0.0, 0.8, 0.0, 0.8):
            velocity.set(value)
            clips.append(clip_renderer.render())
    assert np.array_equal(clips[0], clips[2]) and np.array_equal(clips[1], clips[3])
    # Frame 21, 0.83 s after the launch: 0.8 m/s to the right (+x, the camera looks along +y) is ~8 px.
    columns = [float(np.nonzero(ball_mask(clip[2]))[1].mean()) for clip in clips[:2]]
    assert columns[1] > columns[0] + 5, columns


def test_the_frame_and_the_simulation_are_restored(scenefit):
    scene, preset = ball_scene(scenefit)
    ball = scene.objects["Ball"]
    for frame in range(1, 31):
        scene.frame_set(frame)
    before = [tuple(ball.matrix_world.translation), scene.frame_current, ball.rigid_body.restitution]
    restitution = bound(scenefit, "restitution", "rigid_body.restitution")
    saved = scenefit.addon.blender.scene.rna.snapshot([restitution])
    with renderer(scenefit, scene, preset, touched=[restitution]) as clip_renderer:
        for value in (0.05, 0.95):
            restitution.set(value)
            clip_renderer.render()
        scenefit.addon.blender.scene.rna.restore(saved)
    assert scene.frame_current == 30
    assert [tuple(ball.matrix_world.translation), scene.frame_current, ball.rigid_body.restitution] == before
    scene.frame_set(31)  # the next frame continues the scene's own simulation
    continued = ball.matrix_world.translation.z
    for frame in range(1, 32):
        scene.frame_set(frame)
    assert ball.matrix_world.translation.z == continued


# --- bad input -------------------------------------------------------------------------------------------------


def test_a_property_that_does_not_change_the_clips_is_reported_not_identifiable(scenefit):
    import bpy

    from tests.blender_scenes import diff, scene_state

    scene, preset = ball_scene(scenefit)
    mass = bound(scenefit, "mass", "rigid_body.mass")
    restitution = bound(scenefit, "restitution", "rigid_body.restitution")
    probe_values = module(scenefit, "scene.render").probe_values
    probes = {
        "mass": (mass, probe_values({"kind": "lognormal", "mu": 0.0, "sigma": 1.0})),
        "restitution": (
            restitution,
            module(scenefit, "scene.render").probe_values(
                {"kind": "truncnormal", "mu": 0.3, "sigma": 0.1, "low": 0.0, "high": 1.0}
            ),
        ),
    }
    scene.frame_set(5)
    before = scene_state(bpy, scene)
    with pytest.raises(scenefit.addon.engine.errors.SpecError, match="not identifiable") as caught:
        with renderer(scenefit, scene, preset, touched=[mass, restitution], probes=probes):
            pass
    assert "'mass'" in str(caught.value) and "'restitution'" not in str(caught.value)
    assert diff(before, scene_state(bpy, scene)) == []
    assert scene.frame_current == 5 and scene.objects["Ball"].rigid_body.mass == 1.0


@pytest.mark.parametrize(
    "clip, message",
    [
        ({"frame_start": 200, "frame_end": 300, "stride": 10}, "outside scene"),
        ({"frame_start": 0, "frame_end": 40, "stride": 10}, "outside scene"),
    ],
)
def test_a_frame_range_outside_the_scene_is_refused_before_anything_changes(scenefit, clip, message):
    import bpy

    from tests.blender_scenes import diff, scene_state

    scene, preset = ball_scene(scenefit)
    clips = module(scenefit, "scene.clips")
    render = module(scenefit, "scene.render")
    before = scene_state(bpy, scene)
    settings = render.RenderSettings(SIZE, "BLENDER_WORKBENCH", 1)
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match=message):
        with clips.ClipRenderer(scene, settings, clips.ClipSettings(**clip)):
            pass
    assert diff(before, scene_state(bpy, scene)) == []


def test_a_simulation_cache_ending_before_the_clip_is_refused(scenefit):
    scene, preset = ball_scene(scenefit)
    scene.rigidbody_world.point_cache.frame_end = 40
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match="ends at frame 40, before the clip's last"):
        renderer(scenefit, scene, preset).check()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"frame_start": 10, "frame_end": 5}, "before the start"),
        ({"frame_start": 1, "frame_end": 5, "stride": 0}, "at least 1"),
        ({"frame_start": 1, "frame_end": 5, "stride": 8}, "single frame"),
        ({"frame_start": 1.5, "frame_end": 5}, "integer"),
        ({"start": 1}, "unknown clip setting"),
    ],
)
def test_bad_clip_settings_are_refused(scenefit, data, message):
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match=message):
        module(scenefit, "scene.clips").ClipSettings.from_dict(data)


# --- clip targets ----------------------------------------------------------------------------------------------


def load(scenefit, folder, preset, size=SIZE):
    return module(scenefit, "targets.clips").load_clip_targets(str(folder), clip_settings(scenefit, preset), 24.0, size)


def flat_frames(values, size=(20, 16)):
    """Frames of one grey level each (display values on the 8-bit lattice), (T, H, W, 3)."""
    return np.stack([np.full((size[1], size[0], 3), round(v * 255) / 255, np.float32) for v in values])


def test_clips_written_as_frame_folders_load_back_exactly(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    restitution = bound(scenefit, "restitution", "rigid_body.restitution")
    clip_targets = module(scenefit, "targets.clips")
    rendered = []
    with renderer(scenefit, scene, preset, touched=[restitution]) as clip_renderer:
        for i, value in enumerate((0.2, 0.6, 0.9)):
            restitution.set(value)
            rendered.append(clip_renderer.render())
            clip_targets.save_clip(rendered[-1], tmp_path / f"clip_{i}")
    targets, report = load(scenefit, tmp_path, preset)
    assert targets.shape == (3, 8, 32, 32, 3) and targets.dtype == np.float32
    assert np.array_equal(targets, np.stack(rendered))
    assert len(report.loaded) == 3 and report.resampled == [] and "3 target clips" in report.summary()


def test_a_full_rate_recording_is_sampled_at_the_runs_frames(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)  # frames 9, 15, …, 51: offsets 0, 6, …, 42 from the clip's start
    clip_targets = module(scenefit, "targets.clips")
    for name in ("a", "b"):
        clip_targets.save_clip(flat_frames(np.arange(45) / 100), tmp_path / name)
    targets, report = load(scenefit, tmp_path, preset, size=(16, 16))
    assert targets.shape == (2, 8, 16, 16, 3)
    expected = np.round(np.arange(0, 43, 6) / 100 * 255) / 255
    assert np.allclose(targets[0, :, 0, 0, 0], expected, atol=1 / 255)
    assert len(report.resampled) == 2


def write_video(scene, path: Path, restitution: float, frames: tuple[int, int]) -> None:
    """Simulate the ball scene with ``restitution`` and write ``frames`` as an H.264 MP4 with Blender's FFmpeg, at
    the training size and with the training render settings."""
    import bpy

    scene.objects["Ball"].rigid_body.restitution = restitution
    for frame in range(scene.rigidbody_world.point_cache.frame_start, frames[1] + 1):
        scene.frame_set(frame)  # fills the simulation cache the animation render reads
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = *SIZE, 100
    render.engine, render.dither_intensity, render.use_file_extension = "BLENDER_WORKBENCH", 0.0, False
    scene.display.render_aa = "OFF"
    scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
    if hasattr(render.image_settings, "media_type"):  # Blender 5.0: a video is a media type first
        render.image_settings.media_type = "VIDEO"
    render.image_settings.file_format = "FFMPEG"
    render.ffmpeg.format, render.ffmpeg.codec, render.ffmpeg.constant_rate_factor = "MPEG4", "H264", "PERC_LOSSLESS"
    render.filepath = str(path)
    scene.frame_start, scene.frame_end = frames
    bpy.ops.render.render(animation=True, scene=scene.name)


def test_video_clips_are_decoded_with_blenders_ffmpeg(scenefit, tmp_path):
    import bpy

    scene, preset = ball_scene(scenefit)
    restitution = bound(scenefit, "restitution", "rigid_body.restitution")
    with renderer(scenefit, scene, preset, touched=[restitution]) as clip_renderer:
        restitution.set(0.8)
        rendered = clip_renderer.render()
    folder = tmp_path / "videos"
    folder.mkdir()
    # A full-rate recording of frames 9–51 (43 frames) of the same simulation.
    write_video(scene, folder / "bounce.mp4", 0.8, (9, 51))
    counts = len(bpy.data.scenes), len(bpy.data.images), len(bpy.data.movieclips)
    targets, report = load(scenefit, folder, preset)
    assert (len(bpy.data.scenes), len(bpy.data.images), len(bpy.data.movieclips)) == counts
    assert targets.shape == (1, 8, 32, 32, 3)
    assert report.loaded == [(str(folder / "bounce.mp4"), 43)] and len(report.resampled) == 1
    assert np.abs(targets[0] - rendered).mean() < 0.02  # H.264's chroma subsampling blurs colour edges
    assert np.allclose(ball_rows(targets[0]), ball_rows(rendered), atol=1.0)


def test_a_video_blender_cannot_decode_is_named(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(scenefit.addon.engine.errors.TargetError, match=r"broken\.mp4 cannot be decoded"):
        load(scenefit, tmp_path, preset)


def test_clips_of_different_lengths_are_refused(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    clip_targets = module(scenefit, "targets.clips")
    clip_targets.save_clip(flat_frames(np.linspace(0, 1, 8)), tmp_path / "a")
    clip_targets.save_clip(flat_frames(np.linspace(0, 1, 7)), tmp_path / "b")
    with pytest.raises(scenefit.addon.engine.errors.TargetError, match=r"different lengths \(a: 8, b: 7 frames\)"):
        load(scenefit, tmp_path, preset)


def test_a_clip_with_frames_of_different_sizes_is_refused(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    clip_targets = module(scenefit, "targets.clips")
    clip_targets.save_clip(flat_frames(np.linspace(0, 1, 8)), tmp_path / "a")
    clip_targets.save_clip(flat_frames(np.linspace(0, 1, 8)), tmp_path / "b")
    scenefit.addon.blender.targets.images.save_image(flat_frames([0.5], size=(24, 16))[0], tmp_path / "b" / "0005.png")
    with pytest.raises(scenefit.addon.engine.errors.TargetError, match=r"clip .*b has frames of different sizes"):
        load(scenefit, tmp_path, preset)


def test_a_clip_too_short_for_the_frame_range_is_refused(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    module(scenefit, "targets.clips").save_clip(flat_frames(np.linspace(0, 1, 30)), tmp_path / "a")
    with pytest.raises(scenefit.addon.engine.errors.TargetError, match="has 30 frames; the run needs 8"):
        load(scenefit, tmp_path, preset)


def test_a_folder_mixing_stills_and_clips_is_refused(scenefit, tmp_path):
    scene, preset = ball_scene(scenefit)
    module(scenefit, "targets.clips").save_clip(flat_frames(np.linspace(0, 1, 8)), tmp_path / "a")
    scenefit.addon.blender.targets.images.save_image(flat_frames([0.5])[0], tmp_path / "still.png")
    with pytest.raises(scenefit.addon.engine.errors.TargetError, match=r"mixes still images \(still\.png\) and clips"):
        load(scenefit, tmp_path, preset)
    (tmp_path / "still.png").unlink()
    assert load(scenefit, tmp_path, preset)[0].shape == (1, 8, 32, 32, 3)


# --- physical properties ---------------------------------------------------------------------------------------


def add_wind(scene):
    """A wind force field blowing along +x at the ball's height."""
    import bpy

    wind = bpy.data.objects.new("Wind", None)
    scene.collection.objects.link(wind)
    wind.location = (-1.0, 0.0, 1.0)
    wind.rotation_euler = (0.0, 1.5707963, 0.0)  # wind blows along the empty's local +z
    with bpy.context.temp_override(object=wind, active_object=wind, selected_objects=[wind]):
        bpy.ops.object.forcefield_toggle()
    wind.field.type = "WIND"
    wind.field.strength = 0.0
    return wind


@pytest.mark.parametrize(
    "id_type, id_name, path, values, moves",
    [
        ("OBJECT", "Ball", "rigid_body.restitution", (0.2, 0.9), True),
        ("OBJECT", "Ball", "rigid_body.linear_damping", (0.0, 0.8), True),
        ("SCENE", "Scene", "gravity[2]", (-9.81, -4.0), True),
        ("OBJECT", "Ball", "location[2]", (1.5, 2.5), True),
        ("OBJECT", "Ball", "rotation_euler[0]", (0.0, 0.5), False),  # a sphere looks the same turned
        ("OBJECT", "Wind", "field.strength", (0.0, 40.0), True),
        ("OBJECT", "Ball", "rigid_body.mass", (0.5, 5.0), False),  # falling and bouncing do not depend on mass
        ("OBJECT", "Ball", "rigid_body.friction", (0.0, 1.0), False),  # nothing slides in a vertical drop
    ],
)
def test_physical_properties_are_specs_and_change_the_simulation_when_they_should(
    scenefit, id_type, id_name, path, values, moves
):
    scene, preset = ball_scene(scenefit)
    add_wind(scene)
    prop = bound(scenefit, path, path, id_type, id_name)
    saved = prop.get()
    clips = []
    with renderer(scenefit, scene, preset, touched=[prop]) as clip_renderer:
        for value in values:
            prop.set(value)
            clips.append(clip_renderer.render())
        prop.set(saved)
    difference = np.abs(clips[0] - clips[1]).max()
    assert (difference > 2 / 255) == moves, difference


def test_clips_of_a_scene_that_is_not_the_active_one_are_refused(scenefit):
    import bpy

    scene, preset = ball_scene(scenefit)
    other = bpy.data.scenes.new("Other")
    other.camera = scene.camera
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match="make 'Other' the active scene"):
        renderer(scenefit, other, preset).check()


def test_a_baked_simulation_is_refused_and_kept(scenefit):
    import bpy

    scene, preset = ball_scene(scenefit)
    cache = scene.rigidbody_world.point_cache
    cache.frame_end = 60
    with bpy.context.temp_override(scene=scene):
        bpy.ops.ptcache.bake_all(bake=True)
    assert cache.is_baked
    with pytest.raises(scenefit.addon.engine.errors.ConfigError, match="is baked: every sample would replay"):
        renderer(scenefit, scene, preset).check()
    assert cache.is_baked


def test_cloth_is_resimulated_per_sample_too(scenefit):
    """A cloth sheet falling through air: its modifier's point cache is re-simulated like the rigid-body world's."""
    import bpy

    scene, preset = ball_scene(scenefit)
    bpy.ops.mesh.primitive_grid_add(
        x_subdivisions=6, y_subdivisions=6, size=0.6, location=(0.6, 0.0, 1.8), rotation=(1.5707963, 0.0, 0.0)
    )  # upright, facing the camera
    sheet = bpy.context.object
    sheet.name = "Sheet"
    sheet.modifiers.new("Cloth", "CLOTH")
    sheet.modifiers["Cloth"].point_cache.frame_end = 60
    damping = bound(scenefit, "air", 'modifiers["Cloth"].settings.air_damping', id_name="Sheet")
    clips = []
    with renderer(scenefit, scene, preset, touched=[damping]) as clip_renderer:
        for value in (1.0, 10.0, 1.0):
            damping.set(value)
            clips.append(clip_renderer.render())
    assert np.array_equal(clips[0], clips[2])
    assert np.abs(clips[0] - clips[1]).max() > 0.2
