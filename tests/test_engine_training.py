"""The training thread: batches are told off the calling thread, stats come back, stop and errors reach the caller."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from addon.engine import synthetic
from addon.engine.distributions import LogNormal, ParameterSpace
from addon.engine.errors import TargetError, TrainingError
from addon.engine.optimizer import AskTellOptimizer, OptimizerConfig
from addon.engine.training import TrainingThread

SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_optimizer(seed: int = 0) -> AskTellOptimizer:
    truth = ParameterSpace({"m1": LogNormal(2.25, 0.1), "m2": LogNormal(2.25, 0.1)})
    raw = truth.sample(16, torch.Generator().manual_seed(7))
    targets = np.stack([synthetic.supershape(truth.decode(row), SIZE) for row in raw])
    space = ParameterSpace({"m1": LogNormal(1.2, 0.4), "m2": LogNormal(3.0, 0.4)})
    return AskTellOptimizer(space, targets, OptimizerConfig.default(batch_size=8, seed=seed))


def render(samples) -> tuple[list[int], list[np.ndarray]]:
    return [s.id for s in samples], [synthetic.supershape(s.values, SIZE) for s in samples]


@pytest.fixture
def trainer():
    started: list[TrainingThread] = []

    def start(optimizer: AskTellOptimizer, **kwargs) -> TrainingThread:
        thread = TrainingThread(optimizer, torch_threads=1, **kwargs)
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        assert thread.stop(timeout=10)


def slow_tell(optimizer: AskTellOptimizer, seconds: float, told: list | None = None):
    real_tell = optimizer.tell

    def tell(ids, images):
        time.sleep(seconds)
        stats = real_tell(ids, images)
        if told is not None:
            told.append(time.perf_counter())
        return stats

    return tell


def test_batches_are_told_and_snapshot_follows(trainer):
    optimizer = make_optimizer()
    thread = trainer(optimizer)
    first = thread.snapshot()
    assert first["step"] == 0 and first["renders"] == 0 and first["values"] == optimizer.values()
    for _ in range(3):
        thread.submit(*render(optimizer.ask()))
    assert thread.wait_idle(timeout=30)
    stats = thread.snapshot()
    assert stats["step"] == 3 and stats["renders"] == 24 and stats["param_step"]
    assert stats["values"] == optimizer.values() != first["values"]
    assert stats["d_loss"] is not None and optimizer.history[-1]["objective_stats"]["separation"] is not None
    assert stats["images_per_s"] > 0
    stats["values"]["m1"]["mu"] = 123.0  # a copy: changing it changes nothing inside
    assert thread.snapshot()["values"]["m1"]["mu"] != 123.0
    assert thread.error is None


def test_images_per_s_is_measured_from_submits(trainer):
    optimizer = make_optimizer()
    thread = trainer(optimizer)
    for _ in range(4):
        thread.submit(*render(optimizer.ask()))
        time.sleep(0.1)
    # 3 intervals of ≥ 0.1 s carried 3 batches of 8 images: at most 80 images/s, and not far below it.
    rate = thread.snapshot()["images_per_s"]
    assert 10 < rate <= 80


def test_stop_ends_within_one_step_and_drops_queued_batches(trainer, monkeypatch):
    optimizer = make_optimizer()
    told: list[float] = []
    monkeypatch.setattr(optimizer, "tell", slow_tell(optimizer, 0.5, told))
    thread = trainer(optimizer, max_pending=3)
    for _ in range(3):
        thread.submit(*render(optimizer.ask()))
    time.sleep(0.2)  # the first batch is being told; two wait in the queue
    assert thread.stop(timeout=5)
    ended = time.perf_counter()
    # Only the step in progress finished; the thread ended right after it, without touching the queued batches.
    assert len(told) == 1 and not thread.alive
    assert ended - told[0] < 0.25
    with pytest.raises(TrainingError, match="stopped"):
        thread.submit(*render(optimizer.ask()))


def test_submit_blocks_while_the_queue_is_full(trainer, monkeypatch):
    optimizer = make_optimizer()
    release = threading.Event()
    real_tell = optimizer.tell
    monkeypatch.setattr(optimizer, "tell", lambda ids, images: release.wait() and real_tell(ids, images))
    thread = trainer(optimizer, max_pending=1)
    thread.submit(*render(optimizer.ask()))  # taken by the thread, which now waits
    time.sleep(0.1)
    thread.submit(*render(optimizer.ask()))  # fills the queue
    third = threading.Thread(target=thread.submit, args=render(optimizer.ask()))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # blocked: rendering may not run ahead of training
    release.set()
    third.join(10)
    assert not third.is_alive()
    assert thread.wait_idle(timeout=30) and thread.snapshot()["step"] == 3


def test_error_in_tell_reaches_the_caller(trainer):
    optimizer = make_optimizer()
    thread = trainer(optimizer)
    ids, images = render(optimizer.ask())
    thread.submit([*ids[:-1], 99_999], images)  # an id never asked for fails inside the thread
    with pytest.raises(TargetError, match="unknown sample id"):
        thread.wait_idle(timeout=30)
    assert isinstance(thread.error, TargetError)
    assert not thread.alive
    with pytest.raises(TargetError, match="unknown sample id"):
        thread.raise_if_failed()
    with pytest.raises(TargetError, match="unknown sample id"):
        thread.submit(ids, images)


def test_error_wakes_a_blocked_submit(trainer, monkeypatch):
    optimizer = make_optimizer()
    monkeypatch.setattr(optimizer, "tell", lambda ids, images: time.sleep(0.3) or 1 / 0)
    thread = trainer(optimizer, max_pending=1)
    thread.submit(*render(optimizer.ask()))
    thread.submit(*render(optimizer.ask()))
    with pytest.raises(ZeroDivisionError):
        thread.submit(*render(optimizer.ask()))  # was blocked on the full queue when the thread failed


def test_shuffled_arrival_is_matched_by_id(trainer):
    direct, threaded = make_optimizer(seed=3), make_optimizer(seed=3)
    thread = trainer(threaded)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ids, images = render(direct.ask())
        direct.tell(ids, images)
        samples = threaded.ask()
        order = rng.permutation(len(samples))
        thread.submit(*render([samples[i] for i in order]))
        assert thread.wait_idle(timeout=30)  # the next ask must see this batch learned, as the direct one does
    for label, values in direct.space.values().items():
        for key, value in values.items():
            assert threaded.space.values()[label][key] == pytest.approx(value, rel=1e-4, abs=1e-6)


def test_invalid_arguments():
    optimizer = make_optimizer()
    with pytest.raises(ValueError, match="max_pending"):
        TrainingThread(optimizer, max_pending=0)
    with pytest.raises(ValueError, match="torch_threads"):
        TrainingThread(optimizer, torch_threads=0)
    with pytest.raises(ValueError, match="nice"):
        TrainingThread(optimizer, nice=-1)
    thread = TrainingThread(optimizer)
    with pytest.raises(TrainingError, match="start"):
        thread.submit(*render(optimizer.ask()))
    with pytest.raises(ValueError, match="ids for"):
        thread.submit([1, 2], [np.zeros((SIZE, SIZE, 3), np.float32)])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux only")
@pytest.mark.parametrize("nice", [0, 5, 19])
def test_training_thread_yields_the_cpu_to_rendering(trainer, nice):
    """Training runs at a lower priority than the calling (rendering) thread, which keeps its own."""
    optimizer = make_optimizer()
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []
    real_tell = optimizer.tell

    def tell(ids, images):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real_tell(ids, images)

    optimizer.tell = tell
    thread = trainer(optimizer, nice=nice)
    thread.submit(*render(optimizer.ask()))
    assert thread.wait_idle(timeout=30)
    assert seen == [min(19, caller + nice)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller
