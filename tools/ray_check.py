"""Connect to a Ray cluster, or say in one sentence why not: the message the future batch ``--ray ADDRESS`` prints.

``connect(address)`` returns once ``ray.init(address=…)`` has joined the cluster (``address`` is ``HOST:PORT`` or
``auto``); otherwise it raises ``RayUnavailable`` whose text names the address and the reason: Ray not installed
(with the pinned extra to install), nothing listening at that host and port, no answer within the timeout, or
Ray's own refusal. A plain TCP connection is tried first because ``ray.init`` keeps retrying an address that does
not answer for up to a minute before it gives up. ``python tools/ray_check.py ADDRESS`` prints the sentence, or
the cluster's resources, and exits 2 or 0.
"""

from __future__ import annotations

import socket
import sys

REQUIREMENT = "ray==2.60.0"  # the pin of requirements-ray.txt (a test keeps the two the same)


class RayUnavailable(Exception):
    pass


def _probe(address: str, timeout_s: float) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r} is not HOST:PORT or 'auto'.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except TimeoutError:
        raise RayUnavailable(
            f"The Ray cluster at {address} is unreachable: no answer within {timeout_s:g} s."
        ) from None
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise RayUnavailable(f"The Ray cluster at {address} is unreachable: {reason}.") from None


def connect(address: str, timeout_s: float = 5.0) -> None:
    try:
        import ray
    except ImportError as error:
        raise RayUnavailable(
            f"Ray is needed for --ray {address} but is not installed in {sys.executable}: "
            f"pip install -r requirements-ray.txt ({REQUIREMENT}); the extension itself never needs it."
        ) from error
    if address != "auto":
        _probe(address, timeout_s)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RayUnavailable(f"Ray could not join the cluster at {address}: {first_line}") from None


if __name__ == "__main__":
    try:
        connect(sys.argv[1])
    except RayUnavailable as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    import ray

    print(ray.cluster_resources())
    ray.shutdown()
