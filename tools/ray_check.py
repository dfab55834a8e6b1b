"""Connect to a Ray cluster, or say in one sentence why not: the message the future batch ``--ray ADDRESS`` prints.

``connect(address)`` returns once ``ray.init(address=…)`` has joined the cluster (``address`` is ``HOST:PORT`` or
``auto``, resolved as Ray resolves it); otherwise it raises ``RayUnavailable`` whose text names the address and the
reason: Ray not installed (with the pinned extra to install), no cluster found for ``auto``, nothing listening at
that host and port, no answer within the timeout, or Ray's own refusal. A plain TCP connection is tried first
because ``ray.init`` keeps retrying an address that does not answer for up to a minute before it gives up. ``python
tools/ray_check.py ADDRESS`` prints the sentence, or the cluster's resources, and exits 2 or 0.
"""

from __future__ import annotations

import socket
import sys

REQUIREMENT = "ray==2.60.0"  # the pin of requirements-ray.txt (a test keeps the two the same)


class RayUnavailable(Exception):
    pass


def _probe(address: str, timeout_s: float, label: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r} is not HOST:PORT or 'auto'.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except TimeoutError:
        raise RayUnavailable(f"The Ray cluster at {label} is unreachable: no answer within {timeout_s:g} s.") from None
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise RayUnavailable(f"The Ray cluster at {label} is unreachable: {reason}.") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _resolve_auto() -> str:
    """The HOST:PORT ``ray.init(address="auto")`` would pick: RAY_ADDRESS, the last ``ray start`` of this machine,
    else the one GCS server process running on it (in any network namespace: the address may not be reachable)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die  # pinned by requirements-ray.txt

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as error:
        raise RayUnavailable(f"--ray auto found no Ray cluster to join: {_first_line(error)}") from None


def connect(address: str, timeout_s: float = 5.0) -> None:
    try:
        import ray
    except ImportError as error:
        raise RayUnavailable(
            f"Ray is needed for --ray {address} but is not installed in {sys.executable}: "
            f"pip install -r requirements-ray.txt ({REQUIREMENT}); the extension itself never needs it."
        ) from error
    target = _resolve_auto() if address == "auto" else address
    label = f"auto ({target})" if address == "auto" else address
    _probe(target, timeout_s, label)
    try:
        ray.init(address=target, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayUnavailable(f"Ray could not join the cluster at {label}: {_first_line(error)}") from None


if __name__ == "__main__":
    try:
        connect(sys.argv[1])
    except RayUnavailable as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    import ray

    print(ray.cluster_resources())
    ray.shutdown()
