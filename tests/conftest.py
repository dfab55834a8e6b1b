"""Test harness.

Engine tests import ``addon.engine`` straight from the source tree and never import bpy. Integration tests use
the ``scenefit`` fixture: the extension is built with Blender's builder and installed as a user would, into a
Blender user folder isolated from the machine's (the variables are set before anything imports bpy).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ISOLATED = Path(tempfile.mkdtemp(prefix="scenefit-tests-"))
os.environ["BLENDER_USER_RESOURCES"] = str(ISOLATED / "blender")
os.environ["XDG_CACHE_HOME"] = str(ISOLATED / "cache")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

EXTENSION_MODULE = "bl_ext.user_default.scenefit"


@pytest.fixture(scope="session")
def extension_zip() -> Path:
    from build import build

    return build(ISOLATED / "dist")


@pytest.fixture(scope="session")
def installed(extension_zip: Path):
    """Install the built zip once per test process; yields the extension's top-level module."""
    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    yield importlib.import_module(EXTENSION_MODULE)


@pytest.fixture
def scenefit(installed):
    """The enabled extension with an empty scene holding only a camera; yields the extension's module."""
    import addon_utils
    import bpy

    if EXTENSION_MODULE not in bpy.context.preferences.addons:
        addon_utils.enable(EXTENSION_MODULE, default_set=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    yield installed


@pytest.fixture
def one_thread():
    """One torch thread for the test (deterministic and fast on a shared machine), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
