"""Check a Ray cluster before a batch ``--ray ADDRESS`` run, with the batch's own code.

``python tools/ray_check.py ADDRESS`` (``HOST:PORT`` or ``auto``, on a node of the cluster) joins the cluster as the
batch does (``addon/blender/run/ray_workers.connect``, through the bpy module and this source folder, as
scenefit_batch.py loads it) and prints the cluster's resources and how many render actors it has room for (exit 0),
or the one sentence the batch would print (exit 2).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scenefit_batch  # noqa: E402


def main(address: str) -> int:
    import bpy  # noqa: F401  (before addon_utils, which scenefit_batch.extension imports)

    package = scenefit_batch.extension().__name__
    ray_workers = importlib.import_module(f"{package}.addon.blender.run.ray_workers")
    errors = importlib.import_module(f"{package}.addon.engine.errors")
    try:
        ray_workers.connect(address)
    except errors.ClusterError as error:
        print(error, file=sys.stderr)
        return 2
    import ray

    room, pinned = ray_workers.slots(ray.nodes())
    print(ray.cluster_resources())
    print(f"render actors: room for {room}" + (f" (on the nodes with {ray_workers.WORKER_RESOURCE})" if pinned else ""))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    scenefit_batch.end_process(main(sys.argv[1]))
