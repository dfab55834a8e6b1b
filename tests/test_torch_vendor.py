"""Each branch of the torch resolver, with temporary folders standing in for site-packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import torch_vendor


def fake_torch(site_dir: Path, version: str) -> Path:
    (site_dir / "torch").mkdir(parents=True)
    (site_dir / "torch" / "__init__.py").write_text("")
    dist_info = site_dir / f"torch-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    return site_dir


@pytest.fixture
def torch_not_importable(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )


def test_importable_torch_is_found_first(tmp_path):
    fake_torch(torch_vendor.abi_site_dir(tmp_path), "9.9.9")
    status = torch_vendor.resolve(tmp_path, None)
    assert status.found and status.source == "importable"
    assert status.version.startswith("2.13.0")
    assert (status.location / "torch" / "__init__.py").is_file()


def test_user_dir_keyed_by_abi(tmp_path, torch_not_importable):
    site = fake_torch(torch_vendor.abi_site_dir(tmp_path), "2.13.0")
    assert site.name == f"site-packages-cp{sys.version_info.major}{sys.version_info.minor}"
    status = torch_vendor.resolve(tmp_path, None)
    assert (status.found, status.source, status.version, status.location) == (True, "user_dir", "2.13.0", site)


def test_preferences_folder(tmp_path, torch_not_importable):
    site = fake_torch(tmp_path / "my-site", "2.13.0")
    status = torch_vendor.resolve(tmp_path / "empty-user-dir", site)
    assert (status.found, status.source, status.location) == (True, "preferences", site)


def test_user_dir_wins_over_preferences(tmp_path, torch_not_importable):
    fake_torch(torch_vendor.abi_site_dir(tmp_path / "user"), "2.13.0")
    fake_torch(tmp_path / "prefs", "2.12.0")
    assert torch_vendor.resolve(tmp_path / "user", tmp_path / "prefs").source == "user_dir"


def test_missing_says_where_it_looked_and_what_to_do(tmp_path, torch_not_importable):
    status = torch_vendor.resolve(tmp_path, tmp_path / "nowhere")
    assert not status.found and status.source == "missing" and status.location is None
    assert str(torch_vendor.abi_site_dir(tmp_path)) in status.message
    assert str(tmp_path / "nowhere") in status.message
    assert "torch==2.13.0" in status.message
    with pytest.raises(ModuleNotFoundError, match="torch is not importable"):
        torch_vendor.activate(status)


def test_activate_puts_found_folder_on_path(tmp_path, torch_not_importable, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    status = torch_vendor.resolve(None, fake_torch(tmp_path / "site", "2.13.0"))
    torch_vendor.activate(status)
    assert sys.path.count(str(tmp_path / "site")) == 1
    torch_vendor.activate(status)
    assert sys.path.count(str(tmp_path / "site")) == 1


def test_install_command_is_pinned_and_targets_the_folder(tmp_path):
    import numpy

    command = torch_vendor.pip_install_command(tmp_path, python="py")
    assert command[:7] == ["py", "-m", "pip", "install", "--no-input", "--target", str(tmp_path)]
    requirements = command[7:]
    assert "torch==2.13.0" in requirements and f"numpy=={numpy.__version__}" in requirements
    assert all("==" in requirement for requirement in requirements), "every requirement is pinned"


def test_install_command_brings_what_reports_need(tmp_path):
    from addon.engine.reports import REQUIREMENTS

    assert set(REQUIREMENTS) <= set(torch_vendor.pip_install_command(tmp_path))
