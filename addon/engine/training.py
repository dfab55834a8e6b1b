"""The training thread: runs ``optimizer.tell`` off the main thread, which keeps rendering with Blender.

The main thread asks for samples, renders them and hands each (ids, images) batch to :meth:`TrainingThread.submit`;
a daemon thread takes batches from a bounded queue and tells them to the optimizer. A full queue makes ``submit``
block, so rendering never runs more than ``max_pending`` batches ahead of training. Progress is published as a
snapshot dict, and any exception raised in the thread is kept and re-raised to the caller: nothing is lost.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import TrainingError
from .optimizer import AskTellOptimizer, StepStats

# How often blocked waits wake up to notice a stop request or an error in the other thread.
_POLL_S = 0.02
# Submits kept for the images/s estimate: long enough to smooth render jitter, short enough to follow changes.
_RATE_WINDOW = 8
# Niceness added to the training thread: rendering is the bottleneck, so training should only use the CPU time
# Blender leaves idle (measured on 2 cores: full-run ÷ bare-render rate 0.905 → 0.967 Cycles, 0.911 → 0.998
# Workbench; bench/README.md).
DEFAULT_NICE = 19


def default_torch_threads() -> int:
    """Half the cores for torch, the rest for Blender.

    The main thread renders (Cycles/Workbench use every core they get) while this thread trains; giving torch
    all cores would make the two fight for them and slow both. Training a small discriminator on 32–128 px
    batches gains little beyond a few threads anyway. ``torch.set_num_threads`` is process-wide, which is
    harmless here because only the training thread runs torch work of any size (``ask`` merely samples).
    """
    return max(1, (os.cpu_count() or 2) // 2)


class TrainingThread:
    """A daemon thread telling submitted batches to an :class:`AskTellOptimizer`.

    ``torch_threads`` sets ``torch.set_num_threads`` when the thread starts (None: :func:`default_torch_threads`).
    ``nice`` lowers the thread's scheduling priority by that much (Linux only: elsewhere the call would renice the
    whole process, Blender included), so that rendering on the main thread is never slowed by training; a
    starved training thread cannot stall a run, it only lets ``submit`` block until a batch has been learned.
    """

    def __init__(
        self,
        optimizer: AskTellOptimizer,
        max_pending: int = 2,
        torch_threads: int | None = None,
        nice: int = DEFAULT_NICE,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {torch_threads}")
        if nice < 0:
            raise ValueError(f"nice must be 0 or more (a lower priority), got {nice}")
        self.optimizer = optimizer
        self.error: BaseException | None = None
        self._torch_threads = torch_threads or default_torch_threads()
        self._nice = nice
        self._queue: queue.Queue[tuple[list[int], list[np.ndarray]]] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scenefit-training", daemon=True)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0  # batches submitted and not yet told (queued or in progress)
        self._submits: deque[tuple[float, int]] = deque(maxlen=_RATE_WINDOW)
        self._stats: dict[str, Any] = {
            "step": optimizer.step,
            "renders": optimizer.renders,
            "d_loss": None,
            "d_real": None,
            "d_sim": None,
            "reward_mean": None,
            "param_step": False,
            "values": optimizer.values(),
            "images_per_s": 0.0,
        }

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, ids: Sequence[int], images: Sequence[np.ndarray]) -> None:
        """Queue one batch for training; blocks while the queue is full. Re-raises the thread's error."""
        if len(ids) != len(images):
            raise ValueError(f"got {len(ids)} ids for {len(images)} images")
        item = (list(ids), list(images))
        with self._lock:
            self._unfinished += 1
        try:
            while True:
                self._check_running()
                try:
                    self._queue.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
        except BaseException:
            self._finish_one()
            raise
        with self._lock:
            self._submits.append((time.perf_counter(), len(images)))
        # The thread may have failed or stopped while the put waited for room; its drain accounts for the batch.
        self._check_running()

    def snapshot(self) -> dict[str, Any]:
        """A copy of the latest statistics (step, renders, losses, D outputs, values, images/s, param_step)."""
        with self._lock:
            stats = copy.deepcopy(self._stats)
            stats["images_per_s"] = self._images_per_s()
        return stats

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted batch has been told; re-raises the thread's error. True if idle, False on
        timeout or when the thread ended (stopped) with batches left untold."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._idle:
            while self._unfinished > 0 and self.error is None and self._thread.is_alive():
                remaining = _POLL_S if deadline is None else min(_POLL_S, deadline - time.perf_counter())
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            idle = self._unfinished == 0
        self.raise_if_failed()
        return idle

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to end after the step in progress and drop queued batches. True once it has ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _check_running(self) -> None:
        self.raise_if_failed()
        if self._stop.is_set():
            raise TrainingError("the training thread was stopped; no more batches are accepted")
        if not self._thread.is_alive():
            raise TrainingError("the training thread is not running: call start() first")

    def _images_per_s(self) -> float:
        if len(self._submits) < 2:
            return 0.0
        (t0, _), (t1, _) = self._submits[0], self._submits[-1]
        images = sum(n for _, n in list(self._submits)[1:])
        return images / (t1 - t0) if t1 > t0 else 0.0

    def _finish_one(self) -> None:
        with self._idle:
            self._unfinished -= 1
            self._idle.notify_all()

    def _publish(self, stats: StepStats) -> None:
        with self._lock:
            self._stats.update(
                step=stats.step,
                renders=stats.renders,
                d_loss=stats.d_loss,
                d_real=stats.d_real,
                d_sim=stats.d_sim,
                reward_mean=stats.reward_mean,
                param_step=stats.param_step,
                values=copy.deepcopy(stats.values),
            )

    def _run(self) -> None:
        torch.set_num_threads(self._torch_threads)
        if self._nice and sys.platform.startswith("linux"):
            thread_id = threading.get_native_id()
            # A sandbox that forbids it only costs speed, never the run.
            with contextlib.suppress(OSError):
                niceness = min(19, os.getpriority(os.PRIO_PROCESS, thread_id) + self._nice)
                os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
        try:
            while not self._stop.is_set():
                try:
                    ids, images = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                try:
                    self._publish(self.optimizer.tell(ids, images))
                finally:
                    self._finish_one()
        except BaseException as error:  # kept for the caller: an exception must never die with the thread
            self.error = error
        finally:
            self._drain()

    def _drain(self) -> None:
        """Drop batches that will never be told so waiters and blocked submitters wake up."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._finish_one()
