"""Generate a data set: render N images of the scene with its random properties drawn from a distribution, and
write a labels file recording every sampled value per image.

The distribution is the scene's (its specs as they are), the learned one (written back onto the owning
data-blocks by a run, or read from a run's ``result.json``) or a preset's ground truth; the same seed gives the
same data set. Output folder layout::

    images/00000.png …         8-bit PNG, display-referred (exactly what a training render gives)
    images/00000/0001.png …    with clips on: one sub-folder of frames per sample (a folder of target clips)
    labels.csv                 image, sample, one column per label (scene values: numbers, booleans, enum items)
    labels.json                the same rows plus the distribution, seed, source and render settings

Every image is rendered by a :class:`sampler.Sampler` with the run's settings (snapshot first, exact restore
afterwards, whatever happens), so re-applying a row's values and rendering gives that row's image again — in this
process, or with ``workers`` > 1 by render workers (:mod:`workers`) on a snapshot of the scene; either way image n
holds sample n's values.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from ...engine.errors import ConfigError, SceneFitError, SpecError
from ..data import preferences
from ..data.properties import WRITEBACK_KEY
from ..scene import rna
from ..scene.clips import ClipSettings
from ..scene.render import RenderSettings, probe_values
from ..targets.clips import save_clip
from ..targets.images import save_image
from .config import RunConfig, SpecConfig, engine_distribution
from .sampler import Sampler, bind
from .workers import InProcess, WorkerPool, open_renderer

WORKER_WAIT_S = 0.05  # how long a step waits for the workers' next images (the UI stays live meanwhile)
FORMAT = "scenefit-dataset"
VERSION = 1
IMAGES = "images"
LABELS_CSV = "labels.csv"
LABELS_JSON = "labels.json"
SOURCES = ("initial", "learned", "truth")


@dataclass
class Dataset:
    """What :meth:`DatasetGenerator.run` wrote. ``rows``: one dict per image with ``image`` (path relative to
    ``folder``), ``sample`` (its id) and ``values`` (label → scene value)."""

    folder: Path
    rows: list[dict[str, Any]]
    seconds: float
    complete: bool

    @property
    def images(self) -> list[Path]:
        return [self.folder / row["image"] for row in self.rows]


# --- distributions -----------------------------------------------------------------------------------------------


def learned_distributions(specs: Sequence[SpecConfig]) -> dict[str, dict[str, Any]]:
    """Label → distribution a run wrote back onto each spec's data-block (``owner["scenefit"][label]``), in the
    form specs use (categorical choices as scene values). :class:`SpecError` names a spec that has none."""
    distributions = {}
    for spec in specs:
        owner = rna.find_id(spec.label, spec.id_type, spec.id_name)
        stored = owner.get(WRITEBACK_KEY)
        entry = stored.get(spec.label) if stored is not None and hasattr(stored, "get") else None
        if entry is None:
            raise SpecError(
                f"{spec.label!r}: no learned distribution on {spec.id_type.lower()} {spec.id_name!r} "
                f"(custom property {WRITEBACK_KEY!r}); run Optimize first or pick another source"
            )
        entry = entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)
        distributions[spec.label] = _from_writeback(spec, entry)
    return distributions


def _from_writeback(spec: SpecConfig, entry: Mapping[str, Any]) -> dict[str, Any]:
    distribution = {k: v for k, v in entry.items() if k not in ("path", "distribution")}
    distribution["kind"] = entry.get("distribution")
    probs = distribution.get("probs")
    if isinstance(probs, Mapping):
        # Stored by choice (custom properties hold no lists of text): map the keys back to the spec's choices.
        choices = spec.distribution.get("choices") or list(probs)
        by_text = {str(choice): choice for choice in choices}
        unknown = [key for key in probs if key not in by_text]
        if unknown:
            raise SpecError(f"{spec.label!r}: learned choices {unknown} are not among the spec's {list(choices)}")
        distribution["choices"] = [by_text[key] for key in probs]
        distribution["probs"] = list(probs.values())
    return distribution


def result_distributions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Label → learned distribution from a run's ``result.json`` (spec form: categorical choices are scene
    values). :class:`ConfigError` names the file when it is missing or not a SceneFit result."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read the run result {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"run result {path} is not valid JSON: {error}") from None
    parameters = document.get("parameters") if isinstance(document, dict) else None
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"{path} is not a SceneFit result.json (no 'parameters')")
    skip = ("distribution", "id", "path")
    return {
        label: {"kind": values["distribution"], **{k: v for k, v in values.items() if k not in skip}}
        for label, values in parameters.items()
    }


# --- generation --------------------------------------------------------------------------------------------------


class DatasetGenerator:
    """Renders a data set one image per :meth:`step` (the UI calls it from a timer, scripts through :meth:`run`);
    with ``workers`` > 1 a step saves the images the workers finished meanwhile (possibly none).

    ``distributions`` (label → distribution in spec form) replaces the specs' own for the labels it names; every
    spec's label must be covered by one or the other. Nothing is touched before :meth:`start` has validated
    everything; after it the scene is restored exactly by :meth:`finish` or :meth:`stop`, however they end.
    """

    def __init__(
        self,
        scene: bpy.types.Scene,
        specs: Sequence[SpecConfig],
        folder: str | Path,
        count: int,
        seed: int = 0,
        settings: RenderSettings | None = None,
        distributions: Mapping[str, Mapping[str, Any]] | None = None,
        source: str = "initial",
        overwrite: bool = False,
        clip: ClipSettings | None = None,
        workers: int = 1,
        ray: str = "",
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"a data set needs a positive number of images, got {count!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"the data set's seed must be an integer ≥ 0, got {seed!r}")
        if not specs:
            raise ConfigError("no random properties: a data set needs at least one spec to sample")
        self.scene = scene
        self.specs = list(specs)
        self.folder = Path(folder)
        self.count = count
        self.seed = seed
        self.settings = settings or RenderSettings()
        self.distributions = {label: dict(d) for label, d in (distributions or {}).items()}
        self.source = source
        self.overwrite = overwrite
        self.clip = clip  # clip mode: each "image" is a clip, written as a sub-folder of frames (clip_targets)
        self.workers = workers  # RunConfig.workers: 1 renders in this process
        self.ray = ray  # RunConfig.ray: a Ray cluster's actors render
        self.rows: list[dict[str, Any]] = []  # in sample order
        self._draws: list[dict[str, Any]] = []
        self._space: dict[str, dict[str, Any]] = {}
        self._sampler: Sampler | None = None  # restored when the data set ends (entered unless workers render)
        self._renderer: InProcess | WorkerPool | None = None  # while rendering
        self._started_at = 0.0
        self._seconds = 0.0

    @property
    def running(self) -> bool:
        return self._renderer is not None

    def start(self) -> None:
        """Resolve the specs, sample every image's values and prepare the folder (raising before anything in the
        scene changes), then start rendering: the random properties snapshotted, the render settings overridden."""
        unknown = sorted(set(self.distributions) - {spec.label for spec in self.specs})
        if unknown:
            raise ConfigError(
                f"the {self.source} distribution names {unknown}, which are not among the scene's random properties "
                f"{[spec.label for spec in self.specs]}"
            )
        bound = bind(self.specs)
        engine_space, choices = {}, {}
        for spec, (label, prop) in zip(self.specs, bound.items(), strict=True):
            engine_space[label], choices[label] = engine_distribution(
                prop, self.distributions.get(label, spec.distribution)
            )
        self._draws = self._sample(engine_space, choices)
        sampler = Sampler(self.scene, bound, self.settings, self.clip)
        # Every sampled property must change the pictures, or its labels would describe identical images.
        sampler.probe(
            {label: (prop, probe_values(engine_space[label], choices[label])) for label, prop in bound.items()}
        )
        self._prepare_folder()
        self._sampler = sampler
        self._renderer = open_renderer(sampler, self.specs, self.workers, self.ray)
        for index, values in enumerate(self._draws):
            self._renderer.submit(index, values)
        self._started_at = time.perf_counter()

    def step(self) -> bool:
        """Render and save the next image; returns whether images remain. Errors restore the scene and propagate."""
        if not self.running:
            return False
        try:
            for index, rendered in self._renderer.collect(timeout=WORKER_WAIT_S):
                if self.clip is None:
                    image = f"{IMAGES}/{index:05d}.png"
                    save_image(rendered, self.folder / image)
                else:
                    image = f"{IMAGES}/{index:05d}"
                    save_clip(rendered, self.folder / image)
                self.rows.append({"image": image, "sample": index, "values": self._draws[index]})
            self.rows.sort(key=lambda row: row["sample"])  # workers finish in any order
        except BaseException:
            self.stop()
            raise
        if len(self.rows) == self.count:
            self.finish()
            return False
        return True

    def finish(self) -> Dataset:
        """Restore the scene and write the labels of the images rendered so far."""
        problems = self._restore()
        self._write_labels()
        if problems:
            raise SceneFitError("data set written, but the scene was not fully restored: " + "; ".join(problems))
        return self.result()

    def stop(self) -> Dataset:
        """End early (cancelled, or an error): restore the scene and label the images that were rendered."""
        self._restore()
        self._write_labels()
        return self.result()

    def run(self) -> Dataset:
        self.start()
        while self.step():
            pass
        return self.result()

    def result(self) -> Dataset:
        seconds = time.perf_counter() - self._started_at if self.running else self._seconds
        return Dataset(self.folder, list(self.rows), seconds, len(self.rows) == self.count)

    # ---- internals ------------------------------------------------------------------------------------------

    def _sample(
        self, engine_space: Mapping[str, dict[str, Any]], choices: Mapping[str, list | None]
    ) -> list[dict[str, Any]]:
        from .... import torch_vendor

        try:
            torch_vendor.activate(preferences.torch_status())
        except ModuleNotFoundError as error:
            raise SceneFitError(str(error)) from None
        import torch

        from ...engine.distributions import ParameterSpace

        try:
            space = ParameterSpace.from_dict(engine_space)
        except SceneFitError as error:
            raise SpecError(f"the {self.source} distribution: {error}") from None
        self._space = space.to_dict()
        raw = space.sample(self.count, torch.Generator().manual_seed(self.seed))
        draws = []
        for row in raw:
            decoded = space.decode(row)
            draws.append({label: _scene_value(value, choices[label]) for label, value in decoded.items()})
        return draws

    def _prepare_folder(self) -> None:
        images = self.folder / IMAGES
        existing = [p for p in (images, self.folder / LABELS_CSV, self.folder / LABELS_JSON) if p.exists()]
        if existing and not self.overwrite:
            raise ConfigError(
                f"{self.folder} already holds a data set ({existing[0].name}); choose another folder or overwrite it"
            )
        try:
            if images.exists():
                shutil.rmtree(images)
            for name in (LABELS_CSV, LABELS_JSON):
                (self.folder / name).unlink(missing_ok=True)
            images.mkdir(parents=True)
        except OSError as error:
            raise ConfigError(f"cannot prepare the data set folder {self.folder}: {error.strerror}") from None

    def _restore(self) -> list[str]:
        if self._renderer is None:
            return []
        self._seconds = time.perf_counter() - self._started_at
        problems = self._sampler.restore()
        self._sampler = None
        self._renderer.close()
        self._renderer = None
        return problems

    def _write_labels(self) -> None:
        labels = [spec.label for spec in self.specs]
        with (self.folder / LABELS_CSV).open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["image", "sample", *labels])
            for row in self.rows:
                writer.writerow([row["image"], row["sample"], *(_csv_value(row["values"][label]) for label in labels)])
        document = {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "seed": self.seed,
            "count": len(self.rows),
            "requested": self.count,
            "distribution": self._space,
            "parameters": {
                spec.label: {"id_type": spec.id_type, "id_name": spec.id_name, "data_path": spec.data_path}
                for spec in self.specs
            },
            "render": {
                "resolution": list(self.settings.resolution),
                "engine": self.settings.engine,
                "samples": self.settings.samples,
                "channels": self.settings.channels,
                "clips": self.clip.to_dict() if self.clip is not None else None,
            },
            "samples": self.rows,
        }
        (self.folder / LABELS_JSON).write_text(json.dumps(document, indent=1))


def _scene_value(value: Any, choices: list | None) -> Any:
    return choices[int(value)] if choices is not None else value


def _csv_value(value: Any) -> str:
    # repr keeps every bit of a float, so a row re-applied gives the same scene value.
    return repr(value) if isinstance(value, float) else str(value)


def read_labels(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a data set's ``labels.json``: ``image``, ``sample`` and ``values`` (label → scene value)."""
    path = Path(folder) / LABELS_JSON
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read the data set labels {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"data set labels {path} are not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a SceneFit data set labels file")
    return document["samples"]


def scene_dataset_config(scene: bpy.types.Scene) -> tuple[RunConfig, RenderSettings]:
    """The scene's run (specs, output folder) and its training render settings, which a data set renders with."""
    config = RunConfig.from_scene(scene)
    return config, RenderSettings(config.resolution, config.engine, config.samples, config.channels)


def source_distributions(source: str, specs: Sequence[SpecConfig], preset: Any = None) -> dict[str, dict[str, Any]]:
    """Label → distribution to sample for a named source: ``initial`` (none: the specs' own), ``learned`` (written
    back onto the data-blocks), ``truth`` (``preset``'s ground truth) or the path of a run's ``result.json``."""
    if source == "initial":
        return {}
    if source == "learned":
        return learned_distributions(specs)
    if source == "truth":
        truth = preset.truth() if preset is not None else None
        if truth is None:
            raise ConfigError("the truth source needs a preset whose parameters all have a ground truth (--config)")
        return truth
    if source.endswith(".json"):
        return result_distributions(source)
    raise ConfigError(f"unknown data set source {source!r}: initial, learned, truth or a run's result.json")


def generate_for_run(
    scene: bpy.types.Scene, config: RunConfig, count: int, source: str, seed: int | None = None, preset: Any = None
) -> Dataset:
    """A data set with a run's specs and render settings into its output folder (batch ``--generate``). The seed
    defaults to the preset's target seed for its truth, else to the run's seed."""
    if seed is None:
        seed = preset.targets["seed"] if source == "truth" and preset is not None and preset.targets else config.seed
    settings = RenderSettings(config.resolution, config.engine, config.samples, config.channels)
    clip = config.clip
    distributions = source_distributions(source, config.specs, preset)
    name = Path(source).name if source.endswith(".json") else source
    return DatasetGenerator(
        scene,
        config.specs,
        config.output_dir,
        count,
        seed,
        settings,
        distributions,
        name,
        clip=clip,
        workers=config.workers,
        ray=config.ray,
    ).run()
