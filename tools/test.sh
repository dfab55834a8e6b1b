#!/usr/bin/env bash
# Set up the environment, lint, build the extension and run every test (engine + bpy-module integration + the
# real Blender executable of tools/real_blender.sh, marker real_blender: `bash tools/test.sh -m real_blender`).
# With BLENDER=/path/to/blender (>= 4.2, with pytest and torch in its Python) the suite runs inside that Blender
# through pytest-blender instead of the bpy module.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .

if [[ -n "${BLENDER:-}" ]]; then
  isolated=$(mktemp -d)
  export BLENDER_USER_RESOURCES="$isolated/blender" XDG_CACHE_HOME="$isolated/cache"
  exec .venv/bin/python -m pytest -o addopts="--import-mode=importlib -p no:cacheprovider" \
    -p pytest_blender --blender-executable "$BLENDER" "$@"
fi
# pytest exits 5 when it collected no test: that is a failure here like any other non-zero code.
exec .venv/bin/python -m pytest "$@"
