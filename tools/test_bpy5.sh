#!/usr/bin/env bash
# The bpy-module integration tests against Blender 5.x (.venv-bpy5, made by tools/setup_bpy5.sh): the extension
# built and installed into an isolated user folder of bpy 5, its panels, operators, runs and batch mode.
# Arguments go to pytest; without a tests/ path the integration test files run (the real-Blender ones stay with
# tools/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup_bpy5.sh
paths=()
for arg in "$@"; do [[ $arg == tests* ]] && paths+=("$arg"); done
if [[ ${#paths[@]} -eq 0 ]]; then
  set -- "$@" tests/test_extension_lifecycle.py tests/test_ui_panels.py tests/test_ui_specs.py tests/test_ui_run.py \
    tests/test_blender_rna.py tests/test_blender_render.py tests/test_blender_session.py tests/test_presets.py \
    tests/test_blender_batch.py tests/test_blender_targets.py tests/test_dataset.py tests/test_supershape.py \
    tests/test_physics_clips.py tests/test_physics_run.py tests/test_presets_run.py tests/test_torch_vendor.py
fi
exec .venv-bpy5/bin/python -m pytest -m "not real_blender" "$@"
