"""One render actor of :class:`ray_workers.RayPool`: a Ray worker process, on any node, with the bpy module.

The nodes do not have the extension: this module travels to them by value (``ray.cloudpickle``), so at module level
it imports the standard library only. ``SceneFitActor(package, extension_id, blend, files, setup)`` unpacks the
extension (a zip of its files, from Ray's object store) into a folder of its own, registers that folder as an
extension repository of this process, enables SceneFit (its properties and update handlers belong to the scene),
writes the snapshot .blend and the scene's external files (``files``, by their paths on the driver's machine) there
and enters the :class:`sampler.Sampler` that :func:`worker.open_sampler` makes of ``setup`` — what a local worker
does. ``render(sample_id, values)`` answers as a local worker does: ``("image", sample_id, image)``, or ``("error",
sample_id, message)`` for a sample that cannot be rendered. ``stop()`` removes the folder; the pool then kills the
actor (the bpy module's own shutdown can hang).
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

REPO = "scenefit_ray"  # the repository the actor's Blender knows the extension by (bl_ext.scenefit_ray.<id>)


class SceneFitActor:
    def __init__(
        self, package: bytes, extension_id: str, blend: bytes, files: dict[str, bytes], setup: dict[str, Any]
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="scenefit-ray-"))
        try:
            repository = self.folder / REPO
            with zipfile.ZipFile(io.BytesIO(package)) as archive:
                archive.extractall(repository / extension_id)
            import bpy  # noqa: I001  (before addon_utils, which needs it)
            import addon_utils

            bpy.context.preferences.extensions.repos.new(
                name=REPO, module=REPO, custom_directory=str(repository), source="USER"
            )
            name = f"bl_ext.{REPO}.{extension_id}"
            if addon_utils.enable(name, default_set=False) is None:
                raise RuntimeError(f"cannot enable {name} from the files the run sent")
            worker = importlib.import_module(f"{name}.addon.blender.run.worker")
            self.errors = importlib.import_module(f"{name}.addon.engine.errors")
            snapshot = self.folder / "snapshot.blend"
            snapshot.write_bytes(blend)
            copies = {}
            for index, (path, content) in enumerate(sorted(files.items())):
                copy = self.folder / "external" / str(index) / os.path.basename(path)
                copy.parent.mkdir(parents=True)
                copy.write_bytes(content)
                copies[path] = str(copy)
            setup = {**setup, "snapshot": str(snapshot), "external": copies}
            self.sampler = worker.open_sampler(setup)[0].__enter__()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def ready(self) -> tuple[int, str]:
        """This actor's process id and the IP address of its node."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def render(self, sample_id: int, values: dict[str, Any]) -> tuple[str, int, Any]:
        try:
            return "image", sample_id, self.sampler.render(sample_id, values)
        except self.errors.SceneFitError as error:  # this sample cannot be rendered: the run decides what that means
            return "error", sample_id, str(error)

    def stop(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
