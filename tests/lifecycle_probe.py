"""Run in a fresh process by test_extension_lifecycle: install, enable, disable, re-enable, uninstall the zip.

Prints one JSON object with what it saw. With ``--hide-torch`` torch cannot be imported in this process.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import sys
import tempfile

isolated = tempfile.mkdtemp(prefix="scenefit-lifecycle-")
os.environ["BLENDER_USER_RESOURCES"] = os.path.join(isolated, "blender")
os.environ["XDG_CACHE_HOME"] = os.path.join(isolated, "cache")


class HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        return None


if "--hide-torch" in sys.argv:
    sys.meta_path.insert(0, HideTorch())

import bpy  # noqa: E402  (after the isolation variables and the torch hider)

addon_utils = importlib.import_module("addon_utils")  # importable only once bpy is

MODULE = "bl_ext.user_default.scenefit"


def registered_state() -> dict:
    """Names of registered RNA types and of properties on the ID types an add-on may extend."""
    extended = (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager)
    return {
        "types": sorted(name for name in dir(bpy.types) if name.lower().startswith("scenefit")),
        "props": sorted(f"{t.__name__}.{p.identifier}" for t in extended for p in t.bl_rna.properties),
        # A menu nobody appended to has no _draw_funcs yet; after append+remove it lists its own draw only.
        "menus": {
            name: len(getattr(getattr(bpy.types, name).draw, "_draw_funcs", [None]))
            for name in dir(bpy.types)
            if name.endswith("_MT_mesh_add") or name == "UI_MT_button_context_menu"
            if hasattr(getattr(bpy.types, name), "draw")
        },
    }


def leftovers(before: dict) -> dict:
    now = registered_state()
    return {key: [name for name in now[key] if name not in before[key]] for key in ("types", "props")}


report = {}
before = registered_state()
result = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
report["installed"] = sorted(result)
report["enabled_after_install"] = MODULE in bpy.context.preferences.addons
report["torch_imported_by_register"] = "torch" in sys.modules
enabled = registered_state()
report["preferences_registered"] = bpy.context.preferences.addons[MODULE].preferences is not None
report["registered_something"] = enabled != before
report["menus_extended"] = sorted(name for name, count in enabled["menus"].items() if count > before["menus"][name])

addon_utils.disable(MODULE, default_set=True)
report["enabled_after_disable"] = MODULE in bpy.context.preferences.addons
report["leftovers_after_disable"] = leftovers(before)
report["menus_restored"] = registered_state()["menus"] == before["menus"]

addon_utils.enable(MODULE, default_set=True)
report["enabled_after_reenable"] = MODULE in bpy.context.preferences.addons
report["reenabled_state_matches"] = registered_state() == enabled

repos = bpy.context.preferences.extensions.repos
user_repo = next(i for i, repo in enumerate(repos) if repo.module == "user_default")
result = bpy.ops.extensions.package_uninstall(repo_index=user_repo, pkg_id="scenefit")
report["uninstalled"] = sorted(result)
report["enabled_after_uninstall"] = MODULE in bpy.context.preferences.addons
report["files_after_uninstall"] = os.path.exists(os.path.join(repos[user_repo].directory, "scenefit"))
report["leftovers_after_uninstall"] = leftovers(before)
print("REPORT " + json.dumps(report))
