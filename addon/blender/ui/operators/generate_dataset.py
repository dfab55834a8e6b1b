"""Generate Data Set: a dialog (count, seed, which distributions, folder), then the images rendered a slice per
timer tick with a progress bar (Esc keeps what was written, labelled); a plain loop in scripts and batch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import bpy

from ....engine.errors import SceneFitError
from ...run.dataset import Dataset, DatasetGenerator, scene_dataset_config, source_distributions
from .base import SceneFitOperator, load_shipped_preset, preset_items

SOURCE_ITEMS = [
    (
        "LEARNED",
        "Learned",
        "The distributions the last run wrote back onto the data-blocks (custom property 'scenefit')",
    ),
    ("INITIAL", "Initial", "The random properties' distributions as set in the list"),
    ("TRUTH", "Preset truth", "The ground truth of a preset (its scene must be the one set up here)"),
]


class SCENEFIT_OT_generate_dataset(SceneFitOperator, bpy.types.Operator):
    """Render a data set from the random properties' distributions: images plus a labels file (CSV and JSON)
    recording every sampled value"""

    bl_idname = "scenefit.generate_dataset"
    bl_label = "Generate Data Set"
    bl_options = {"REGISTER"}

    count: bpy.props.IntProperty(name="Images", description="How many images to render", default=64, min=1)
    seed: bpy.props.IntProperty(name="Seed", description="Seed of the sampled values (same seed, same data set)", min=0)
    source: bpy.props.EnumProperty(
        name="Distribution", description="Which distributions to sample", items=SOURCE_ITEMS, default="LEARNED"
    )
    preset: bpy.props.EnumProperty(
        name="Preset", description="Preset whose ground truth to sample", items=preset_items()
    )
    directory: bpy.props.StringProperty(
        name="Output",
        description="Folder for images/ and the labels (empty: 'dataset' in the run's output folder)",
        subtype="DIR_PATH",
    )
    overwrite: bpy.props.BoolProperty(
        name="Overwrite", description="Replace a data set already in the output folder", default=False
    )

    _generator: DatasetGenerator | None = None
    _timer: Any = None

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, _context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "count")
        layout.prop(self, "seed")
        layout.prop(self, "source")
        if self.source == "TRUTH":
            layout.prop(self, "preset")
        layout.prop(self, "directory")
        layout.prop(self, "overwrite")

    def run(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        progress = getattr(context.window_manager, "scenefit_progress", None)
        if progress is not None and progress.running:
            self.report({"ERROR"}, "A SceneFit run is in progress: stop it before generating a data set")
            return {"CANCELLED"}
        config, settings = scene_dataset_config(scene)
        folder = bpy.path.abspath(self.directory) if self.directory else str(Path(config.output_dir) / "dataset")
        preset = load_shipped_preset(self.preset) if self.source == "TRUTH" else None
        distributions = source_distributions(self.source.lower(), config.specs, preset)
        generator = DatasetGenerator(
            scene,
            config.specs,
            folder,
            self.count,
            self.seed,
            settings,
            distributions,
            self.source.lower(),
            self.overwrite,
            config.clip,
            config.workers,
        )
        generator.start()
        self._generator = generator
        if context.window is None or bpy.app.background:  # scripts and batch: no event loop to tick a timer
            return self._run_to_end()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, self.count)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            dataset = self._end(context).stop()
            done = f"{len(dataset.rows)} of {self.count} images"
            self.report({"WARNING"}, f"Data set cancelled: {done} (labelled) in {dataset.folder}")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        deadline = time.perf_counter() + 0.1  # keep the interface responsive between slices
        try:
            while self._generator.step():
                if time.perf_counter() >= deadline:
                    context.window_manager.progress_update(len(self._generator.rows))
                    return {"RUNNING_MODAL"}
        except SceneFitError as error:
            self._end(context)
            self.report({"ERROR"}, f"Data set stopped: {error}")
            return {"CANCELLED"}
        self._end(context)
        self._report_done(self._generator.result())
        return {"FINISHED"}

    def _run_to_end(self) -> set[str]:
        try:
            while self._generator.step():
                pass
        except SceneFitError as error:
            self.report({"ERROR"}, f"Data set stopped: {error}")
            return {"CANCELLED"}
        self._report_done(self._generator.result())
        return {"FINISHED"}

    def _end(self, context: bpy.types.Context) -> DatasetGenerator:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        return self._generator

    def _report_done(self, dataset: Dataset) -> None:
        self.report(
            {"INFO"},
            f"Data set: {len(dataset.rows)} images and labels in {dataset.folder} ({dataset.seconds:.1f} s)",
        )
