"""The fault policy of the render pools, held once: :class:`RenderPool` keeps samples going to N workers and decides
what a worker's death means; :class:`workers.WorkerPool` (local processes) and :class:`ray_workers.RayPool` (Ray
actors) only say how to start, reach, poll and end one of theirs. It imports neither bpy nor Ray.

The protocol: ``submit(sample_id, values)``, ``collect(timeout)`` → the images that arrived, as (sample id, image),
in any order; ``close()``; :attr:`RenderPool.problems`, the workers left out (and, where a back-end says so, those
started again), said once each.

The policy: each ready worker has up to :data:`QUEUED_PER_WORKER` samples sent ahead, answered oldest first. A
worker not ready within :data:`START_TIMEOUT_S`, or silent longer than :func:`image_timeout` on a sample, is
treated as dead. A dead worker is ended, its unfinished samples go back to the front of the queue (to whichever
worker is free) and it is started again. A sample that was being rendered at two deaths raises
:class:`RenderError`; so does a worker that never started when no other is left, while one that never started
when others render is left out. :meth:`RenderPool.close` lets the workers end on their own for
:data:`STOP_WAIT_S`, then ends each; it runs at interpreter exit too, so no worker outlives the run.
"""

from __future__ import annotations

import atexit
import collections
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...engine.errors import RenderError

START_TIMEOUT_S = 120.0  # from start to ready: Blender starts, enables SceneFit, opens the snapshot
MIN_IMAGE_TIMEOUT_S = 300.0  # a worker silent this long on one sample hangs (see image_timeout)
SLOWEST_FACTOR = 10  # …or silent this many times the slowest image so far, whichever is longer
QUEUED_PER_WORKER = 2  # samples sent ahead to each worker: the next one is there when an image goes out
POLL_S = 1.0  # the longest wait for answers before the workers' health is checked again
STOP_WAIT_S = 2.0  # how long close() lets the workers end on their own (a Ray actor removes its folder)

Sample = tuple[int, Mapping[str, Any]]  # (sample id, values)


def image_timeout(slowest_s: float) -> float:
    return max(MIN_IMAGE_TIMEOUT_S, SLOWEST_FACTOR * slowest_s)


@dataclass(kw_only=True)
class WorkerRecord:
    """What the policy keeps of one worker; a back-end's record adds its handles."""

    index: int
    started_at: float = field(default_factory=time.monotonic)
    pid: int | None = None  # once ready
    # (sample, ticket), oldest first; the ticket is what _send returned to match the answer with (None: its order)
    sent: collections.deque[tuple[Sample, Any]] = field(default_factory=collections.deque)
    busy_since: float = 0.0  # when it began the oldest sample in ``sent``

    @property
    def ready(self) -> bool:
        return self.pid is not None


# Not Generic over the record: typing caches a subscripted base (RenderPool[_Process]) for the life of the process,
# which keeps the extension's modules alive past its unregistering, and the bpy module then hangs at exit.
class RenderPool(ABC):
    """The policy over a back-end's workers. A back-end calls ``super().__init__()`` once what :meth:`close` needs
    exists (from then on it runs at exit), starts its workers with :meth:`_start_worker`, hands each answer to
    :meth:`_answered` and each death to :meth:`_died`, and implements the hooks below."""

    NOUN: str  # a worker in messages: "render worker 2 failed: …"
    SHORT_NOUN: str  # …and in "the run goes on with 3 worker(s)"
    SAYS_RESTARTS: bool  # whether a worker started again is said in problems

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._workers: dict[int, WorkerRecord] = {}
        self._pending: collections.deque[Sample] = collections.deque()
        self._deaths: collections.Counter[int] = collections.Counter()  # sample id → workers that died on it
        self._slowest = 0.0
        self._closed = False
        atexit.register(self.close)

    # ---- hooks ----------------------------------------------------------------------------------------------

    @abstractmethod
    def _start(self, index: int) -> WorkerRecord:
        """Start worker ``index``; it becomes ready when the back-end sets its ``pid``."""

    @abstractmethod
    def _send(self, worker: WorkerRecord, sample: Sample) -> Any:
        """Send ``sample`` to ``worker``; returns the ticket its answer comes with. OSError: it cannot be reached."""

    @abstractmethod
    def _poll(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        """Wait up to ``timeout`` seconds for the workers' messages and handle them; the images among them."""

    @abstractmethod
    def _expects_answers(self) -> bool:
        """Whether :meth:`collect` should wait on: False returns what arrived before its timeout."""

    @abstractmethod
    def _exit_reason(self, worker: WorkerRecord) -> str | None:
        """How ``worker`` ended, when it has ended unseen by :meth:`_poll`; else None."""

    @abstractmethod
    def _failure(self, worker: WorkerRecord, how: str) -> str:
        """The sentence that says ``worker`` failed (``how``), with what the back-end knows of why."""

    @abstractmethod
    def _let_stop(self, wait_s: float) -> None:
        """Ask every worker to end on its own and wait up to ``wait_s`` seconds for them."""

    @abstractmethod
    def _end(self, worker: WorkerRecord) -> None:
        """End ``worker`` now, whatever it is doing, and release what it holds."""

    # ---- protocol -------------------------------------------------------------------------------------------

    def submit(self, sample_id: int, values: Mapping[str, Any]) -> None:
        self._pending.append((sample_id, dict(values)))

    def collect(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        """The images that arrive within ``timeout`` seconds (at least one check), as (sample id, image)."""
        deadline = time.monotonic() + timeout
        arrived: list[tuple[int, np.ndarray]] = []
        while True:
            arrived += self._step(max(0.0, deadline - time.monotonic()))
            if arrived or time.monotonic() >= deadline or not self._expects_answers():
                return arrived

    def close(self) -> None:
        """End every worker, after letting them end on their own for :data:`STOP_WAIT_S`; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._let_stop(STOP_WAIT_S)
        for worker in self._workers.values():
            self._end(worker)
        self._workers.clear()

    # ---- policy ---------------------------------------------------------------------------------------------

    def _start_worker(self, index: int) -> None:
        self._workers[index] = self._start(index)

    def _step(self, timeout: float) -> list[tuple[int, np.ndarray]]:
        """Check the workers' health, send them samples, handle what they answer within ``timeout`` (at most
        :data:`POLL_S`)."""
        self._check_health()
        self._dispatch()
        return self._poll(min(timeout, POLL_S))

    def _dispatch(self) -> None:
        for worker in list(self._workers.values()):  # a worker that cannot be reached is replaced meanwhile
            while worker.ready and self._pending and len(worker.sent) < QUEUED_PER_WORKER:
                sample = self._pending.popleft()
                if not worker.sent:
                    worker.busy_since = time.monotonic()
                try:
                    ticket = self._send(worker, sample)
                except OSError:
                    worker.sent.append((sample, None))  # it was on its way: it is sent again with the rest
                    self._died(worker, "its connection broke")
                    break
                worker.sent.append((sample, ticket))

    def _check_health(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if (how := self._exit_reason(worker)) is not None:
                self._died(worker, how)
            elif not worker.ready and now - worker.started_at > START_TIMEOUT_S:
                self._died(worker, f"it did not start within {START_TIMEOUT_S:.0f} s")
            elif worker.sent and now - worker.busy_since > image_timeout(self._slowest):
                self._died(worker, f"it rendered nothing for {image_timeout(self._slowest):.0f} s (hung?)")

    def _answered(
        self, worker: WorkerRecord, answer: tuple[str, int, Any], ticket: Any = None
    ) -> tuple[int, np.ndarray]:
        """``worker``'s ``answer`` (kind, sample id, image or error message) to the oldest sample it was sent, which
        came with ``ticket``: the image, or :class:`RenderError` for an error or an answer out of order."""
        kind, sample_id, payload = answer
        (expected, _), sent_ticket = worker.sent.popleft()  # a worker answers in the order it was asked
        now = time.monotonic()
        self._slowest = max(self._slowest, now - worker.busy_since)
        worker.busy_since = now
        if sent_ticket != ticket or expected != sample_id:
            raise RenderError(f"{self.NOUN} {worker.index} answered sample {sample_id} for sample {expected}")
        if kind == "error":
            raise RenderError(payload)
        return sample_id, payload

    def _died(self, worker: WorkerRecord, how: str) -> None:
        """``worker`` is gone or hangs: end it, send its samples again, start it again — or raise."""
        self._end(worker)
        del self._workers[worker.index]
        reason = self._failure(worker, how)
        samples = [sample for sample, _ in worker.sent]
        if samples:
            sample_id = samples[0][0]
            self._deaths[sample_id] += 1
            if self._deaths[sample_id] >= 2:
                raise RenderError(f"sample {sample_id} was being rendered when two {self.NOUN}s failed; {reason}")
        self._pending.extendleft(reversed(samples))
        if not worker.ready:  # it never started: starting it again would fail again
            if not self._workers:
                raise RenderError(reason)
            self.problems.append(f"{reason}; the run goes on with {len(self._workers)} {self.SHORT_NOUN}(s)")
            return
        if self.SAYS_RESTARTS:
            self.problems.append(f"{reason}; started again, {len(samples)} sample(s) sent again")
        self._start_worker(worker.index)
