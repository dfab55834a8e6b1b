"""What a run writes back, read back: a truncated normal's own mean and std in the custom property and
result.json, and *Apply Mean* and data sets reading that form."""

from __future__ import annotations

import importlib

import pytest

from tests.blender_scenes import YAW_PATH, cube_scene


def test_a_truncated_normal_is_written_back_with_its_own_moments_and_read_back(scenefit):
    import bpy

    def module(name: str):
        return importlib.import_module(f"{scenefit.__name__}.addon.{name}")

    writeback, results, rna = (
        module("blender.run.writeback"),
        module("blender.run.results"),
        module("blender.scene.rna"),
    )
    dataset, config_module = module("blender.run.dataset"), module("blender.run.config")
    cube_scene(bpy)
    bound = rna.resolve("yaw", "OBJECT", "Cube", YAW_PATH)
    learned = module("engine.distributions").TruncatedNormal(1.29, 0.5, 0.0, 1.0)  # parent μ outside [0, 1]
    parameters = {"yaw": writeback.Parameter(bound, "truncnormal")}
    writeback.write_custom_properties(parameters, {"yaw": learned.values()})

    stored = bpy.data.objects["Cube"]["scenefit"]["yaw"].to_dict()
    mean, std = learned.mean.item(), learned.stddev.item()
    assert stored == pytest.approx(
        {"path": YAW_PATH, "distribution": "truncnormal", "mean": mean, "std": std}
        | {"parent_mu": 1.29, "parent_sigma": 0.5, "low": 0.0, "high": 1.0}
    )
    assert 0.0 < mean < 1.0 and mean == pytest.approx(0.7051, abs=1e-4)
    document = writeback.result_document(parameters, {"yaw": learned.values()}, [], 0, 0.0, "finished", {})
    assert document["parameters"]["yaw"] == {"id": "Object:Cube", **stored}

    assert results.mean_value(bound, stored) == pytest.approx(mean)  # Apply Mean: the truncated mean
    spec = config_module.SpecConfig("yaw", "OBJECT", "Cube", YAW_PATH, {"kind": "normal", "mu": 0.0, "sigma": 1.0})
    again = dataset.learned_distributions([spec])["yaw"]  # --source learned starts from it
    assert module("engine.distributions").distribution_from_dict(again).values() == pytest.approx(learned.values())
