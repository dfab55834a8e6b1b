"""Each shipped preset gives a runnable setup: apply it, render a few targets from its truth with the data-set
generator, and run a few optimization steps through the Session; the scene is restored afterwards."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEMS = sorted(path.stem for path in (ROOT / "presets").glob("*.json"))
SIZE = 32


def test_every_shipped_preset_is_covered():
    assert {"supershape_density", "supershape_guided_dr", "object_yaw", "discrete_choice"} <= set(STEMS)


@pytest.mark.parametrize("stem", STEMS)
def test_each_preset_runs_a_few_steps_through_the_session(scenefit, stem, tmp_path):
    import bpy

    def module(name):
        return importlib.import_module(f"{scenefit.__name__}.addon.{name}")

    session_module, dataset = module("blender.session"), module("blender.dataset")
    preset = module("engine.presets").load_preset(ROOT / "presets" / f"{stem}.json")
    scene = bpy.context.scene
    module("blender.presets").apply_preset(preset, scene)
    config = session_module.RunConfig.from_scene(scene).replace(
        output_dir=str(tmp_path / "run"), steps=2, batch_size=4, resolution=(SIZE, SIZE), samples=1
    )
    clip = module("blender.clips").ClipSettings.from_dict(config.clips) if config.clips is not None else None
    before = {
        spec.label: module("blender.rna").resolve(spec.label, spec.id_type, spec.id_name, spec.data_path).get()
        for spec in config.specs
    }
    settings = module("blender.render").RenderSettings((SIZE, SIZE), config.engine, 1)
    targets = dataset.DatasetGenerator(
        scene, config.specs, tmp_path / "targets", 6, seed=1, settings=settings, distributions=preset.truth(), clip=clip
    ).run()
    assert targets.complete

    session = session_module.Session(
        scene, config.replace(targets=str(tmp_path / "targets" / "images")), truth=preset.truth()
    )
    session.start()
    while session.step():
        pass

    assert session.status == "finished" and session.optimizer.step == 2 and session.renders == 8
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "finished" and set(result["parameters"]) == {p.label for p in preset.parameters}
    assert session.report.problem is None
    assert {"parameters.png", "losses.png", "progress.gif", "targets.png"} <= {
        p.name for p in (tmp_path / "run").iterdir()
    }
    rna = module("blender.rna")
    after = {
        spec.label: rna.resolve(spec.label, spec.id_type, spec.id_name, spec.data_path).get() for spec in config.specs
    }
    assert after == before
