"""The built zip installs, enables, disables, re-enables and uninstalls cleanly, with or without torch.

Each case runs in a fresh process (tests/lifecycle_probe.py): uninstalling inside the shared test process would
pull the extension from under the other integration tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("lifecycle_probe.py")


def test_zip_holds_the_extension_and_nothing_of_development(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "addon/blender/__init__.py", "torch_vendor/__init__.py"} <= set(
        names
    )
    assert any(name.startswith("presets/") and name.endswith(".json") for name in names)
    unwanted = ("tests/", "bench/", "tools/", ".venv/", ".git/", ".ci/", "dist/")
    assert not [name for name in names if name.startswith(unwanted) or "__pycache__" in name]


def test_invalid_manifest_fails_the_build_loudly(tmp_path):
    from build import extension_cli

    (tmp_path / "blender_manifest.toml").write_text('schema_version = "1.0.0"\nid = "scenefit"\n')
    result = subprocess.run(
        [*extension_cli(), "build", "--source-dir", str(tmp_path), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "missing" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("hide_torch", [False, True], ids=["with-torch", "torch-hidden"])
def test_install_enable_disable_reenable_uninstall(extension_zip, hide_torch):
    command = [sys.executable, str(PROBE), str(extension_zip)] + (["--hide-torch"] if hide_torch else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["installed"] == ["FINISHED"] and report["enabled_after_install"]
    assert report["preferences_registered"] and report["registered_something"]
    assert not report["torch_imported_by_register"], "registering must not import torch"
    assert not report["enabled_after_disable"]
    assert report["leftovers_after_disable"] == {"types": [], "props": []}
    assert report["menus_extended"] == ["UI_MT_button_context_menu", "VIEW3D_MT_mesh_add"]
    assert report["menus_restored"]
    assert report["enabled_after_reenable"] and report["reenabled_state_matches"]
    assert report["uninstalled"] == ["FINISHED"] and not report["enabled_after_uninstall"]
    assert not report["files_after_uninstall"]
    assert report["leftovers_after_uninstall"] == {"types": [], "props": []}
