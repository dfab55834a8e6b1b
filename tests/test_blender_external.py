"""A .blend's external files for workers on other machines (addon/blender/scene/external.py), in the bpy module:
what can be sent, pointing a snapshot's data-blocks at the copies, and naming what a machine still lacks."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def external(scenefit):
    return importlib.import_module(f"{scenefit.__name__}.addon.blender.scene.external")


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


def test_what_can_be_sent_redirected_and_what_is_missing(external, tmp_path):
    import bpy

    here = tmp_path / "here"
    single = bpy.data.images.load(str(_png(here / "tex" / "wood.png", (200, 100, 0))))
    sequence = bpy.data.images.load(str(_png(here / "seq" / "f_0001.png", (0, 0, 200))))
    sequence.source = "SEQUENCE"
    clip = bpy.data.movieclips.load(sequence.filepath)  # a clip of the same frames: a sequence too
    assert clip.source == "SEQUENCE"
    packed = bpy.data.images.load(str(_png(here / "tex" / "packed.png", (0, 200, 0))))
    packed.pack()
    bpy.data.images.new("generated", 4, 4)
    gone = bpy.data.images.load(str(_png(here / "tex" / "gone.png", (9, 9, 9))))
    os.remove(gone.filepath)  # missing here too: renders alike everywhere, nothing to send or to name
    blend = here / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    single.filepath = "//tex/wood.png"  # relative, as Blender stores paths by default

    wood, frame = str(here / "tex" / "wood.png"), str(here / "seq" / "f_0001.png")
    assert external.sendable() == [wood]
    assert external.present() == sorted([wood, frame])
    assert external.missing(external.present()) == []

    # Another machine: the snapshot in another folder, the sender's files absent, a copy of the one sent.
    (tmp_path / "there").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "there" / "snapshot.blend"), relative_remap=False)
    present, origin = [wood, frame], str(here)
    os.rename(here, tmp_path / "moved")
    copy = str(_png(tmp_path / "there" / "external" / "0" / "wood.png", (200, 100, 0)))
    external.redirect({wood: copy}, origin)
    assert bpy.path.abspath(bpy.data.images["wood.png"].filepath) == copy
    assert tuple(round(c, 2) for c in bpy.data.images["wood.png"].pixels[:3]) == (0.78, 0.39, 0.0)  # read there
    assert bpy.data.images["f_0001.png"].filepath == frame  # pointed where the sender read it
    assert external.missing(present) == [frame]
