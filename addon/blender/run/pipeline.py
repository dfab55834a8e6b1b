"""The batch pipeline of a run: ask the optimizer for a batch, hand its samples to the render back-end, put the
images in sample order and hand each rendered batch to the training thread — and, with render workers, the same on
a thread of its own (:class:`Pump`), so that the main thread only publishes progress.

:meth:`Pipeline.advance` does that for at most a given time and says whether every batch of the run has been
learned. It touches no bpy itself: the in-process back-end (:class:`workers.InProcess`) renders inside
``collect``, so the session calls ``advance`` on the main thread then; a :class:`workers.WorkerPool` only moves
bytes over sockets, so :class:`Pump` calls ``advance`` on its own thread. Either way the batches, their order and
what the optimizer is told are the same: a seed gives one run, with or without the thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

PUMP_SLICE_S = 0.1  # how long the pump runs the pipeline between looks at a stop request


class Pipeline:
    """``steps`` batches of ``batch_size`` samples from ``optimizer``, rendered by ``renderer`` (``submit`` /
    ``collect``), told through ``training`` (``submit``, ``wait_idle``, ``raise_if_failed``). ``scene_values`` turns
    a sample's engine values into the values the renderer applies; ``on_batch(index, images, renders)`` is called
    with each rendered batch (1-based index), from the thread that runs :meth:`advance`."""

    def __init__(
        self,
        optimizer: Any,
        training: Any,
        renderer: Any,
        steps: int,
        batch_size: int,
        scene_values: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        on_batch: Callable[[int, Sequence[np.ndarray], int], None],
    ) -> None:
        self.optimizer = optimizer
        self.training = training
        self.renderer = renderer
        self.steps = steps
        self.batch_size = batch_size
        self.scene_values = scene_values
        self.on_batch = on_batch
        self.renders = 0
        self.asked = 0  # batches asked for
        self._batch: list[Any] = []
        self._images: dict[int, np.ndarray] = {}  # sample id → image, of the batch being rendered
        self._rendered: tuple[list[int], list[np.ndarray]] | None = None  # a rendered batch waiting for training
        # (time, renders) when the first and the latest batch were rendered: the steady rate leaves start-up out.
        self._first: tuple[float, int] | None = None
        self._latest: tuple[float, int] | None = None

    @property
    def images_per_s(self) -> float:
        """Images rendered per second from the end of the first batch to the end of the latest (0 before the
        second batch): the run's rate without its start-up (workers starting, the first render's warm-up)."""
        if self._first is None or self._latest is None or self._latest[0] <= self._first[0]:
            return 0.0
        return (self._latest[1] - self._first[1]) / (self._latest[0] - self._first[0])

    def advance(self, seconds: float) -> bool:
        """Work for about ``seconds`` (at least one ``collect``); True once every batch of the run has been learned.

        Batches are pipelined with a lag of exactly one: batch n+1 is drawn once batch n−1 has been learned and
        before batch n goes to training, so it renders while batch n trains and always comes from the parameters
        after batch n−1. Which batches the parameters have seen never depends on timing: a seed gives one run.
        """
        deadline = time.perf_counter() + seconds
        while True:
            self.training.raise_if_failed()
            if not self._batch:
                if not self.training.wait_idle(timeout=max(0.0, deadline - time.perf_counter())):
                    return False
                if self.asked < self.steps:
                    self._batch = self.optimizer.ask(self.batch_size)
                    self.asked += 1
                    self._images = {}
                    for sample in self._batch:
                        self.renderer.submit(sample.id, self.scene_values(sample.values))
                if self._rendered is not None:
                    self.training.submit(*self._rendered)
                    self._rendered = None
                if not self._batch:
                    return self.training.wait_idle(timeout=seconds)
            # Images arrive in any order (workers); the batch goes on in the order it was asked.
            for sample_id, image in self.renderer.collect(timeout=max(0.0, deadline - time.perf_counter())):
                self._images[sample_id] = image
                self.renders += 1
            if len(self._images) == len(self._batch):
                images = [self._images[sample.id] for sample in self._batch]
                self._rendered = ([sample.id for sample in self._batch], images)
                self._latest = (time.perf_counter(), self.renders)
                self._first = self._first or self._latest
                self.on_batch(self.asked, images, self.renders)
                self._batch, self._images = [], {}
            if time.perf_counter() >= deadline:
                return False


class Pump:
    """Runs ``pipeline`` on a daemon thread until every batch has been learned, :meth:`stop` or an error (kept and
    re-raised by :meth:`wait`), after ``probe`` (a :class:`sampler.WorkerProbe`) has passed on the pipeline's
    back-end. That back-end must not touch bpy (a :class:`workers.WorkerPool`); nothing else may use the pipeline or
    it until :meth:`stop` has returned.

    A worker the pool starts again is started from this thread; on Linux the kernel ends such a worker when this
    thread ends (``PR_SET_PDEATHSIG`` follows the thread that started it), which is when the run ends anyway.
    """

    def __init__(self, pipeline: Pipeline, probe: Any = None) -> None:
        self.pipeline = pipeline
        self.probe = probe
        self.error: BaseException | None = None
        self.finished = False  # every batch learned
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scenefit-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the pump to end; True once every batch has been learned. Re-raises
        the pump's error."""
        self._ended.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.finished

    def stop(self) -> None:
        """Ask the pump to end after its slice and wait for it (a slice is short: :data:`PUMP_SLICE_S`, or a
        worker being started again)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            if self.probe is not None:
                self.probe.check(self.pipeline.renderer, self._stop.is_set, PUMP_SLICE_S)
            while not self._stop.is_set():
                if self.pipeline.advance(PUMP_SLICE_S):
                    self.finished = True
                    return
        except BaseException as error:  # kept for the main thread: an exception must never die with the thread
            self.error = error
        finally:
            self._ended.set()
