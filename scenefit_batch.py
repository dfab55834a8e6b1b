"""SceneFit batch mode, one script for both ways of running Blender headless:

    blender -b scene.blend -P scenefit_batch.py -- --targets DIR --output DIR [--config run.json] [...]
    python scenefit_batch.py scene.blend --targets DIR --output DIR [--config run.json] [...]   (bpy module)

``--help`` lists every option. If SceneFit is installed and enabled in this Blender it is used; otherwise (always
in the bpy module, which starts with factory settings) the folder holding this script is registered as a
development extension repository for this process only.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from types import ModuleType

IN_BLENDER = "bpy" in sys.modules  # the Blender executable imports bpy before running -P scripts
SOURCE = Path(__file__).resolve().parent
PACKAGE_ID = "scenefit"
DEV_REPO = "scenefit_batch"
EXTENSION_FOLDERS: list[Path] = []  # temporary folders made to register this source folder (removed at exit)


def script_arguments(argv: list[str]) -> list[str]:
    """The arguments meant for SceneFit: after ``--`` inside Blender, all but the program name otherwise."""
    if IN_BLENDER:
        return argv[argv.index("--") + 1 :] if "--" in argv else []
    return argv[1:]


def extension() -> ModuleType:
    """The enabled SceneFit extension's top-level module, enabling this source folder if none is."""
    import addon_utils
    import bpy

    for name in bpy.context.preferences.addons.keys():
        if name.endswith(f".{PACKAGE_ID}"):
            return importlib.import_module(name)
    # A repository's packages are its sub-folders named by extension id; the source folder may have any name.
    if SOURCE.name == PACKAGE_ID:
        directory = SOURCE.parent
    else:
        directory = Path(tempfile.mkdtemp(prefix="scenefit-batch-"))
        EXTENSION_FOLDERS.append(directory)
        try:
            (directory / PACKAGE_ID).symlink_to(SOURCE, target_is_directory=True)
        except OSError:  # no symlinks (Windows without the privilege): copy the package instead
            ignore = shutil.ignore_patterns(".*", "__pycache__", "dist", "tests", "tools", "bench", "wheels")
            shutil.copytree(SOURCE, directory / PACKAGE_ID, ignore=ignore)
    repos = bpy.context.preferences.extensions.repos
    repo = next((r for r in repos if r.module == DEV_REPO), None) or repos.new(
        name="SceneFit batch", module=DEV_REPO, custom_directory=str(directory), source="USER"
    )
    module_name = f"bl_ext.{repo.module}.{PACKAGE_ID}"
    if addon_utils.enable(module_name, default_set=True) is None:
        raise SystemExit(f"scenefit: error: cannot enable SceneFit from {SOURCE}")
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 finished, 1 bad input or failed run, 2 bad command line, 3 internal error (with a traceback;
    the scene is restored all the same), 130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP."""
    args = script_arguments(sys.argv if argv is None else argv)
    # From the first moment a stop signal is only noted (batch.main acts on it): Ctrl-C raised inside the bpy
    # module's start-up scripts breaks them and crashes the process.
    received: list[int] = []
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda signum, _frame: received.append(signum))
    try:
        import bpy  # noqa: F401  (the bpy module must be imported before addon_utils)

        batch = importlib.import_module(f"{extension().__name__}.addon.blender.run.batch")
        return batch.main(args, received)
    except KeyboardInterrupt:
        print("scenefit: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not bad input: show where it happened
        traceback.print_exc()
        print("scenefit: internal error (see the traceback above)", file=sys.stderr)
        return 3


def end_process(code: int) -> None:
    """Exit the bpy-module process now with ``code``, everything written and flushed.

    The bpy module's own shutdown can hang forever (a .blend whose Python drivers were blocked because auto-run of
    scripts is off never exits, with SceneFit or without): the run is over, so skip it, removing the session's
    temporary folders that it would have removed."""
    import bpy

    for folder in (Path(bpy.app.tempdir), *EXTENSION_FOLDERS):
        if folder.name.startswith(("blender_", "scenefit-batch-")):
            shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    if not IN_BLENDER and "bpy" in sys.modules:
        end_process(code)
    # Inside Blender, sys.exit sets the process exit code (-P scripts otherwise exit 0 even after an error).
    sys.exit(code)
