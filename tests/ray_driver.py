"""The Ray driver of tests/test_ray_cluster.py, run inside the head node's namespace.

``python tests/ray_driver.py ADDRESS BLEND OUT YAW…``: joins the cluster, ships the .blend
(``ray.put``) and tests/ray_render.py (by value) to one actor that needs the ``scenefit_worker`` resource, so it
runs on the worker node, renders each yaw there and saves the images and the node IP of each render to OUT (.npz).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402

from tests import ray_render  # noqa: E402
from tests.ray_cluster import WORKER_RESOURCE  # noqa: E402


@ray.remote(num_cpus=1, resources={WORKER_RESOURCE: 1})
class Renderer:
    def __init__(self, blend: bytes):
        self.blend = blend

    def render(self, yaw: float) -> tuple[np.ndarray, str]:
        return ray_render.render_yaw(self.blend, yaw), ray.util.get_node_ip_address()


def main(address: str, blend: Path, out: Path, yaws: list[float]) -> None:
    ray.init(address=address, log_to_driver=False)
    try:
        ray.cloudpickle.register_pickle_by_value(ray_render)
        renderer = Renderer.remote(ray.put(blend.read_bytes()))
        results = ray.get([renderer.render.remote(yaw) for yaw in yaws], timeout=240)
        np.savez(out, images=np.stack([image for image, _ in results]), nodes=np.array([ip for _, ip in results]))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), [float(yaw) for yaw in sys.argv[4:]])
