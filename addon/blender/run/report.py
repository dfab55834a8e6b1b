"""The report of a run, written into its output folder next to result.json: targets next to the current renders
every few batches (``samples_<batch>.png``, frames of ``progress.gif``), and at the end the parameter plot (with
the truth when known), the loss / D(real) / D(sim) curves and the GIF (see ``engine.reports``).

Reports are for looking at, never a reason for a run to fail: without matplotlib or Pillow in Blender's Python,
or when a file cannot be written, the run goes on and :attr:`RunReport.problem` says why there is no report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.errors import ReportError

FRAMES = 32  # snapshots per run: enough for a smooth GIF, few enough to cost nothing next to the renders


class RunReport:
    """Snapshots every ``max(1, batches // FRAMES)`` batches (and the last one); ``finish`` draws the plots."""

    def __init__(
        self,
        folder: Path,
        targets: np.ndarray,
        batches: int,
        truth: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        from ...engine.reports import Reporter

        self.every = max(1, batches // FRAMES)
        self.batches = batches
        self.problem: str | None = None
        self.files: dict[str, Path] = {}
        self._reporter = Reporter(folder, _stills(targets), truth)
        self.latest: np.ndarray | None = None  # the last rendered batch (stills), for the Run panel's pictures

    @property
    def targets(self) -> np.ndarray:
        """The targets shown in the report (uint8 stills, at most 16)."""
        return self._reporter.targets

    def batch(self, index: int, images: Sequence[np.ndarray], renders: int) -> None:
        """Batch ``index`` (1-based, of this run) was rendered: keep it as the latest, snapshot it when due."""
        self.latest = _stills(np.stack(images[:16]))
        if self.problem is not None or (index % self.every and index != self.batches):
            return
        try:
            self._reporter.snapshot(index, _stills(np.stack(images)), renders)
        except (ReportError, OSError) as error:
            self.problem = f"no report: {error}"

    def finish(self, history: Sequence[Mapping[str, Any]]) -> None:
        if self.problem is not None:
            return
        try:
            self.files = self._reporter.finish(history)
        except (ReportError, OSError) as error:
            self.problem = f"no report: {error}"


def _stills(images: np.ndarray) -> np.ndarray:
    # Clips (N, T, H, W, C) are shown by their middle frame.
    return images[:, images.shape[1] // 2] if images.ndim == 5 else images
