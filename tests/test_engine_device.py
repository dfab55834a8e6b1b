"""The training device: "auto" takes CUDA exactly when torch has it, "cuda" without a GPU is refused in a sentence,
objective states and checkpoints hold CPU tensors so that a run resumes on any device. The CUDA tests run where
torch has a GPU (bench/README.md, "Training on a GPU") and are skipped elsewhere."""

from __future__ import annotations

import json

import pytest
import torch

from addon.engine.errors import ConfigError
from addon.engine.objectives import ObjectiveConfig, make_objective
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig, read_checkpoint
from addon.engine.vocabulary import OBJECTIVES
from tests.engine_supershape import SIZE, make_space, render, targets

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())")


pytestmark = pytest.mark.usefixtures("one_thread")


def tensors(state) -> list[torch.Tensor]:
    """Every tensor in a nested state dict."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for value in state.values() for t in tensors(value)]
    if isinstance(state, list | tuple):
        return [t for value in state for t in tensors(value)]
    return []


def image_batch(n: int, seed: int) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) images in [-1, 1] as the objectives take them."""
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("has_cuda, expected", [(True, "cuda"), (False, "cpu")])
def test_auto_takes_cuda_exactly_when_torch_has_it(monkeypatch, has_cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    assert OptimizerConfig(device="auto").torch_device() == torch.device(expected)
    assert OptimizerConfig().device == "auto"


def test_cpu_is_the_cpu_even_with_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert OptimizerConfig(device="cpu").torch_device() == torch.device("cpu")


def test_cuda_without_a_gpu_is_refused_naming_the_setting_and_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda' was asked for, but this torch has no CUDA GPU .*'auto'"):
        OptimizerConfig(device="cuda")


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:0", None, 0])
def test_an_unknown_device_is_refused(device):
    with pytest.raises(ConfigError, match=r"device must be one of \('auto', 'cpu', 'cuda'\)"):
        OptimizerConfig(device=device)


def test_the_device_survives_the_config_round_trip():
    config = OptimizerConfig.default(device="cpu")
    assert OptimizerConfig.from_dict(json.loads(json.dumps(config.to_dict()))).device == "cpu"


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_cpu_checkpoint_holds_cpu_tensors_and_resumes(tmp_path, objective):
    optimizer = AskTellOptimizer(
        make_space(), targets(), OptimizerConfig.default(objective=objective, batch_size=8, device="cpu")
    )
    for _ in range(2):
        optimizer.tell(*render(optimizer.ask()))
    assert optimizer.device == torch.device("cpu")
    path = tmp_path / "run.pt"
    optimizer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert tensors(saved) and all(t.device.type == "cpu" for t in tensors(saved))

    resumed = AskTellOptimizer.load_checkpoint(path, targets(), device="cpu")
    batch = optimizer.ask()
    assert [s.id for s in resumed.ask()] == [s.id for s in batch]
    assert resumed.tell(*render(batch)).to_dict() == optimizer.tell(*render(batch)).to_dict()


def test_a_checkpoint_saved_for_cuda_reads_on_any_machine(tmp_path, monkeypatch):
    """The saved device is the machine's, not the run's: a GPU run's checkpoint reads with device "auto"."""
    optimizer = AskTellOptimizer(make_space(), targets(), OptimizerConfig.default(batch_size=8, device="cpu"))
    optimizer.tell(*render(optimizer.ask()))
    state = optimizer.state_dict()
    state["config"] = json.dumps({**json.loads(state["config"]), "device": "cuda"})
    torch.save(state, tmp_path / "gpu.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    checkpoint = read_checkpoint(tmp_path / "gpu.pt")
    assert checkpoint.config.device == "auto"
    resumed = AskTellOptimizer.from_checkpoint(checkpoint, targets(), device="cpu")
    assert resumed.step == 1 and resumed.device == torch.device("cpu")


# ---- on a CUDA GPU ------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_an_objective_on_cuda_keeps_its_tensors_there_and_answers_on_the_cpu(objective):
    config = ObjectiveConfig(input_blur=1.0)
    built = {
        device: make_objective(objective, image_batch(12, 0), config, torch.Generator().manual_seed(3), device)
        for device in ("cpu", "cuda")
    }
    on_gpu = built["cuda"]
    assert on_gpu.targets.device.type == "cuda"
    networks = [getattr(on_gpu, name) for name in ("net", "features") if hasattr(on_gpu, name)]
    assert all(p.device.type == "cuda" for net in networks for p in net.parameters())
    fake = image_batch(8, 1)
    for objective_on in built.values():
        objective_on.update(fake)
    rewards = {device: objective_on.rewards(fake) for device, objective_on in built.items()}
    assert rewards["cuda"].device.type == "cpu"
    # Same initial networks and target minibatches on both devices: the same numbers up to rounding, which for the
    # networks is TF32's (cuDNN convolutions use it by default since Ampere; measured on an H200: 2.4e-3 relative).
    torch.testing.assert_close(rewards["cuda"], rewards["cpu"], rtol=1e-2, atol=1e-3)
    assert all(t.device.type == "cpu" for t in tensors(on_gpu.state_dict()))


@needs_cuda
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_cuda_checkpoint_holds_cpu_tensors_and_resumes_on_the_cpu_and_the_gpu(tmp_path, objective):
    config = OptimizerConfig.default(objective=objective, batch_size=8, device="cuda")
    optimizer = AskTellOptimizer(make_space(), targets(), config)
    assert optimizer.device.type == "cuda"
    for _ in range(3):
        optimizer.tell(*render(optimizer.ask()))
    path = tmp_path / "run.pt"
    optimizer.save_checkpoint(path)
    assert all(t.device.type == "cpu" for t in tensors(torch.load(path, weights_only=True)))

    batch = optimizer.ask()
    expected = optimizer.tell(*render(batch))
    for device in ("cpu", "cuda"):
        resumed = AskTellOptimizer.load_checkpoint(path, targets(), device=device)
        assert resumed.device.type == device
        assert [s.id for s in resumed.ask()] == [s.id for s in batch]
        stats = resumed.tell(*render(batch))
        assert stats.step == expected.step == 4
        # Not bit for bit: TF32 convolutions and cuDNN's nondeterministic kernels (rel. 1.6e-3 measured on an H200).
        assert stats.reward_mean == pytest.approx(expected.reward_mean, rel=1e-2, abs=1e-3)
        for label, values in expected.values.items():
            for key, value in values.items():
                assert stats.values[label][key] == pytest.approx(value, rel=1e-2, abs=1e-3), (device, label, key)
