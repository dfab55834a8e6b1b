"""Generate data set: N images and N label rows holding exactly the sampled values; a row re-applied renders its
image again; the scene comes back as it was; bad input fails before anything is written."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32
COUNT = 6


@pytest.fixture
def sf(scenefit):
    def module(name):
        return importlib.import_module(f"{scenefit.__name__}.addon.{name}")

    return SimpleNamespace(
        dataset=module("blender.run.dataset"),
        render=module("blender.scene.render"),
        rna=module("blender.scene.rna"),
        targets=module("blender.targets.images"),
        presets=module("blender.scene.presets"),
        config=module("blender.run.config"),
        session=module("blender.run.session"),
        engine_presets=module("engine.presets"),
        distributions=module("engine.distributions"),
        errors=module("engine.errors"),
    )


def apply(sf, stem: str):
    import bpy

    preset = sf.engine_presets.load_preset(ROOT / "presets" / f"{stem}.json")
    scene = bpy.context.scene
    sf.presets.apply_preset(preset, scene)
    return preset, scene, sf.config.RunConfig.from_scene(scene).specs


def settings(sf):
    return sf.render.RenderSettings((SIZE, SIZE), "BLENDER_WORKBENCH", 1)


def read_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_images_and_label_rows_hold_the_sampled_values(sf, tmp_path):
    import bpy
    import torch

    preset, scene, specs = apply(sf, "supershape_density")
    shape = bpy.data.objects["Supershape"].supershape
    before = (shape.m1, shape.m2, scene.render.resolution_x, scene.render.engine)

    dataset = sf.dataset.DatasetGenerator(
        scene,
        specs,
        tmp_path / "set",
        COUNT,
        seed=3,
        settings=settings(sf),
        distributions=preset.truth(),
        source="truth",
    ).run()

    assert dataset.complete and len(dataset.rows) == COUNT
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == [f"{i:05d}.png" for i in range(COUNT)]
    # The same draws as sampling the truth with the same seed, in label order.
    space = sf.distributions.ParameterSpace.from_dict(preset.truth())
    expected = [space.decode(row) for row in space.sample(COUNT, torch.Generator().manual_seed(3))]
    rows = read_csv(tmp_path / "set")
    assert list(rows[0]) == ["image", "sample", "m1", "m2"]
    assert [row["image"] for row in rows] == [f"images/{i:05d}.png" for i in range(COUNT)]
    assert [int(row["sample"]) for row in rows] == list(range(COUNT))
    assert [{"m1": float(r["m1"]), "m2": float(r["m2"])} for r in rows] == expected
    document = json.loads((tmp_path / "set" / "labels.json").read_text())
    assert [row["values"] for row in document["samples"]] == expected
    assert document["count"] == COUNT and document["seed"] == 3 and document["source"] == "truth"
    assert document["distribution"]["m1"]["mu"] == pytest.approx(2.25)
    # Truth m ~ exp(N(2.25, 0.1)): the values are spread around e^2.25 ≈ 9.5, not one repeated value.
    m1 = np.array([v["m1"] for v in expected])
    assert 7.0 < m1.min() < m1.max() < 13.0 and m1.std() > 0.1
    assert (shape.m1, shape.m2, scene.render.resolution_x, scene.render.engine) == before


def test_a_label_row_re_applied_renders_its_image(sf, tmp_path):
    _, scene, specs = apply(sf, "supershape_density")
    folder = tmp_path / "set"
    sf.dataset.DatasetGenerator(scene, specs, folder, COUNT, seed=5, settings=settings(sf)).run()
    rows = read_csv(folder)
    images, _ = sf.targets.load_targets(str(folder / "images"), (SIZE, SIZE), 3)
    assert images.shape == (COUNT, SIZE, SIZE, 3)
    bound = {spec.label: sf.rna.resolve(spec.label, spec.id_type, spec.id_name, spec.data_path) for spec in specs}
    with sf.render.RenderOverride(scene, settings(sf)) as renderer:
        for index in (4, 1):
            for label in ("m1", "m2"):
                bound[label].set(float(rows[index][label]))
            again = renderer.render()
            assert np.abs(again - images[index]).max() <= 1 / 255 + 1e-6
            others = [np.abs(again - images[i]).mean() for i in range(COUNT) if i != index]
            assert min(others) > 0.002, "every image should differ from the others (different m1, m2)"


def test_the_same_seed_gives_the_same_data_set(sf, tmp_path):
    _, scene, specs = apply(sf, "object_yaw")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        sf.dataset.DatasetGenerator(scene, specs, tmp_path / name, 3, seed=seed, settings=settings(sf)).run()
    assert read_csv(tmp_path / "a") == read_csv(tmp_path / "b") != read_csv(tmp_path / "c")


def test_a_categorical_writes_scene_values(sf, tmp_path):
    import bpy

    preset, scene, specs = apply(sf, "discrete_choice")
    dataset = sf.dataset.DatasetGenerator(
        scene, specs, tmp_path / "set", 12, seed=0, settings=settings(sf), distributions=preset.truth()
    ).run()
    shapes = [row["values"]["shape"] for row in dataset.rows]
    assert set(shapes) <= {0, 1, 2} and all(isinstance(s, int) for s in shapes)
    assert shapes.count(1) >= 6, f"truth picks the sphere 80% of the time: {shapes}"
    assert [int(row["shape"]) for row in read_csv(tmp_path / "set")] == shapes
    assert bpy.data.objects["Primitive"].modifiers["Shape"]["Socket_1"] == 0


def test_learned_distributions_come_from_the_written_back_properties(sf, tmp_path):
    import bpy

    _, scene, specs = apply(sf, "discrete_choice")
    with pytest.raises(sf.errors.SpecError, match="no learned distribution.*Optimize"):
        sf.dataset.learned_distributions(specs)
    bpy.data.objects["Primitive"]["scenefit"] = {
        "shape": {"path": specs[0].data_path, "distribution": "categorical", "probs": {"0": 0.0, "1": 0.0, "2": 1.0}}
    }
    learned = sf.dataset.learned_distributions(specs)
    assert learned == {"shape": {"kind": "categorical", "choices": [0, 1, 2], "probs": [0.0, 0.0, 1.0]}}
    dataset = sf.dataset.DatasetGenerator(
        scene, specs, tmp_path / "set", 4, settings=settings(sf), distributions=learned
    ).run()
    assert [row["values"]["shape"] for row in dataset.rows] == [2, 2, 2, 2]


def test_result_json_gives_the_learned_distributions(sf, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps(
            {
                "parameters": {
                    "m1": {"distribution": "lognormal", "id": "Object:S", "path": "x", "mu": 2.2, "sigma": 0.1}
                }
            }
        )
    )
    assert sf.dataset.result_distributions(path) == {"m1": {"kind": "lognormal", "mu": 2.2, "sigma": 0.1}}
    path.write_text("{}")
    with pytest.raises(sf.errors.ConfigError, match="not a SceneFit result"):
        sf.dataset.result_distributions(path)


def test_bad_input_fails_before_anything_is_written(sf, tmp_path):
    import bpy

    preset, scene, specs = apply(sf, "supershape_density")
    folder = tmp_path / "set"
    with pytest.raises(sf.errors.ConfigError, match="not among the scene's random properties"):
        sf.dataset.DatasetGenerator(
            scene, specs, folder, 2, distributions={"m3": {"kind": "normal", "mu": 0, "sigma": 1}}
        ).run()
    with pytest.raises(sf.errors.ConfigError, match="positive number of images"):
        sf.dataset.DatasetGenerator(scene, specs, folder, 0).run()
    bad = [specs[0], sf.config.SpecConfig("m2", "OBJECT", "Supershape", "supershape.m9", specs[1].distribution)]
    with pytest.raises(sf.errors.SpecError, match="m9"):
        sf.dataset.DatasetGenerator(scene, bad, folder, 2).run()
    scene.camera = None
    with pytest.raises(sf.errors.RenderError, match="camera"):
        sf.dataset.DatasetGenerator(scene, specs, folder, 2).run()
    assert not folder.exists()
    scene.camera = bpy.data.objects["SceneFit Camera"]

    sf.dataset.DatasetGenerator(scene, specs, folder, 2, settings=settings(sf)).run()
    with pytest.raises(sf.errors.ConfigError, match="already holds a data set"):
        sf.dataset.DatasetGenerator(scene, specs, folder, 3, settings=settings(sf)).run()
    assert len(read_csv(folder)) == 2
    sf.dataset.DatasetGenerator(scene, specs, folder, 3, settings=settings(sf), overwrite=True).run()
    assert len(read_csv(folder)) == 3 and len(list((folder / "images").iterdir())) == 3


def test_a_failing_render_restores_the_scene_and_labels_what_was_done(sf, tmp_path, monkeypatch):
    import bpy

    _, scene, specs = apply(sf, "supershape_density")
    shape = bpy.data.objects["Supershape"].supershape
    before = (shape.m1, shape.m2, scene.render.filepath, scene.render.resolution_x)
    generator = sf.dataset.DatasetGenerator(scene, specs, tmp_path / "set", 4, settings=settings(sf))
    generator.start()
    assert generator.step()
    original = sf.render.RenderOverride.render

    def broken(self):
        raise sf.errors.RenderError("boom")

    monkeypatch.setattr(sf.render.RenderOverride, "render", broken)
    with pytest.raises(sf.errors.RenderError, match="boom"):
        generator.step()
    monkeypatch.setattr(sf.render.RenderOverride, "render", original)
    assert (shape.m1, shape.m2, scene.render.filepath, scene.render.resolution_x) == before
    assert not generator.running and not generator.result().complete
    assert len(read_csv(tmp_path / "set")) == 1


def test_the_operator_generates_from_a_preset_truth(sf, tmp_path):
    import bpy

    _, scene, _ = apply(sf, "supershape_density")
    scene.scenefit.resolution_x = scene.scenefit.resolution_y = SIZE
    scene.scenefit.render_engine = "BLENDER_WORKBENCH"
    folder = tmp_path / "op"
    result = bpy.ops.scenefit.generate_dataset(
        count=3, seed=2, source="TRUTH", preset="supershape_density", directory=str(folder)
    )
    assert result == {"FINISHED"}
    rows = read_csv(folder)
    assert len(rows) == 3 and all(7.0 < float(r["m1"]) < 13.0 for r in rows)
    assert json.loads((folder / "labels.json").read_text())["render"]["resolution"] == [SIZE, SIZE]
    with pytest.raises(RuntimeError, match="no learned distribution"):
        bpy.ops.scenefit.generate_dataset(count=2, source="LEARNED", directory=str(tmp_path / "learned"))


def test_batch_generate_renders_a_preset_truth_or_a_result(sf, tmp_path, capsys):
    batch = importlib.import_module(sf.dataset.__name__.rsplit(".", 1)[0] + ".batch")
    preset = str(ROOT / "presets" / "supershape_density.json")
    common = ["--config", preset, "--build-scene", "--resolution", str(SIZE), "--samples", "1"]
    assert batch.main([*common, "--generate", "4", "--source", "truth", "--output", str(tmp_path / "truth")]) == 0
    assert "4 images (truth)" in capsys.readouterr().out
    document = json.loads((tmp_path / "truth" / "labels.json").read_text())
    assert document["seed"] == 1 and document["source"] == "truth"  # the preset's target seed
    assert len(document["samples"]) == 4 and all(7.0 < row["values"]["m2"] < 13.0 for row in document["samples"])

    result = tmp_path / "result.json"
    parameters = {label: {"distribution": "lognormal", "mu": 1.0, "sigma": 0.01} for label in ("m1", "m2")}
    result.write_text(json.dumps({"parameters": parameters}))
    args = [*common, "--generate", "3", "--source", str(result), "--seed", "4", "--output", str(tmp_path / "r")]
    assert batch.main(args) == 0
    rows = read_csv(tmp_path / "r")
    assert len(rows) == 3 and all(abs(float(row["m1"]) - np.e) < 0.1 for row in rows)

    assert batch.main([*common, "--generate", "2", "--source", "guess", "--output", str(tmp_path / "x")]) == 1
    assert "unknown data set source 'guess'" in capsys.readouterr().err
