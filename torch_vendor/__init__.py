"""Find torch for Blender's Python without importing it at registration time.

Three places are looked at, in order:

(a) torch is already importable in the running Python (a venv with the ``bpy`` module, or a Blender whose
    Python has torch installed);
(b) a site-packages folder under the extension's user directory, keyed by Python ABI
    (``<user dir>/site-packages-cp311``) — where :func:`pip_install_command` installs it on request;
(c) a site-packages folder the user sets in the add-on's Preferences.

The caller (the Blender layer) passes the folders in, so this module never touches bpy and is tested with
temporary folders.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TORCH_REQUIREMENT = "torch==2.13.0"
# Reports (addon/engine/reports.py) draw with these; they install beside torch rather than as manifest wheels
# because they are platform-specific and 18–25 MB per platform, and only a run (which needs torch) uses them.
REPORT_REQUIREMENTS = ("matplotlib==3.11.2", "pillow==13.0.0")


@dataclass(frozen=True)
class TorchStatus:
    """Whether torch can be imported, from where, and a sentence for the UI or the console."""

    found: bool
    source: str  # "importable", "user_dir", "preferences" or "missing"
    version: str | None
    location: Path | None
    message: str


def abi_site_dir(user_dir: Path) -> Path:
    """The ABI-keyed site-packages folder under the extension's user directory."""
    return Path(user_dir) / f"site-packages-cp{sys.version_info.major}{sys.version_info.minor}"


def _version_in(site_dir: Path) -> str | None:
    for dist in importlib.metadata.distributions(path=[str(site_dir)]):
        if dist.metadata["Name"] == "torch":
            return dist.version
    return None


def _torch_in(site_dir: Path | None) -> bool:
    return site_dir is not None and (Path(site_dir) / "torch" / "__init__.py").is_file()


def resolve(user_dir: Path | None = None, preferences_dir: Path | None = None) -> TorchStatus:
    """Tell where torch would be imported from, without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin is not None:
        location = Path(spec.origin).parent.parent
        version = _version_in(location)
        return TorchStatus(True, "importable", version, location, f"torch {version} found in {location}")
    candidates = []
    if user_dir is not None:
        candidates.append(("user_dir", abi_site_dir(user_dir)))
    if preferences_dir:
        candidates.append(("preferences", Path(preferences_dir)))
    for source, site_dir in candidates:
        if _torch_in(site_dir):
            version = _version_in(site_dir)
            return TorchStatus(True, source, version, site_dir, f"torch {version} found in {site_dir}")
    looked = ", ".join(str(site_dir) for _, site_dir in candidates) or "no extra folder"
    return TorchStatus(
        False,
        "missing",
        None,
        None,
        f"torch is not importable by this Python ({sys.version.split()[0]}) and not in {looked}. "
        f"Install it with: {' '.join(pip_install_command(abi_site_dir(user_dir or Path('<user dir>'))))} ; "
        "or set a site-packages folder that has torch in SceneFit's preferences.",
    )


def activate(status: TorchStatus) -> None:
    """Make a found torch importable (puts its folder on ``sys.path``); raises if none was found."""
    if not status.found:
        raise ModuleNotFoundError(status.message)
    if status.source != "importable" and str(status.location) not in sys.path:
        sys.path.append(str(status.location))


def pip_install_command(target: Path, python: str = sys.executable) -> list[str]:
    """The pip command that installs the pinned torch and the report libraries into ``target``.

    numpy is pinned to the running Python's own version: otherwise pip resolves the newest numpy into ``target``
    and torch/matplotlib would be built against an ABI that Blender's numpy does not have.
    """
    try:
        numpy_pin = [f"numpy=={importlib.metadata.version('numpy')}"]
    except importlib.metadata.PackageNotFoundError:
        numpy_pin = []
    return [
        python,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--target",
        str(target),
        TORCH_REQUIREMENT,
        *REPORT_REQUIREMENTS,
        *numpy_pin,
    ]


def start_install(user_dir: Path, python: str = sys.executable) -> subprocess.Popen:
    """Install the pinned torch into the ABI-keyed user folder in a subprocess; poll the returned process.

    The caller decides whether online access is allowed (``bpy.app.online_access``) and never waits on it
    from the UI thread.
    """
    target = abi_site_dir(user_dir)
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        pip_install_command(target, python), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
