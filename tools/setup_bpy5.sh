#!/usr/bin/env bash
# Create (or update) .venv-bpy5: the development environment of requirements-dev.txt with Blender 5.x as the
# bpy module instead of 4.5 LTS (bpy 5.0.1 is the newest built for Python 3.11), for running the bpy-module
# integration tests against Blender 5:   bash tools/test_bpy5.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

BPY5=${BPY5:-5.0.1}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || { echo "setup_bpy5.sh needs Python 3.11 (set PYTHON=...)" >&2; exit 2; }
[[ -x .venv-bpy5/bin/python ]] || "$python" -m venv .venv-bpy5
# Everything pinned in requirements-dev.txt except bpy; numpy left to what bpy $BPY5 asks for.
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
grep -v -E '^(bpy|numpy)==' requirements-dev.txt >"$requirements"
.venv-bpy5/bin/python -m pip install --quiet --disable-pip-version-check "bpy==$BPY5" -r "$requirements"
.venv-bpy5/bin/python -c 'import bpy; print("bpy", bpy.app.version_string)'
