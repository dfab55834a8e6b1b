#!/usr/bin/env bash
# Create (or update) the one pinned development environment: .venv with Python 3.11, the bpy module, torch, …
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
if [[ -z "$python" ]]; then
  echo "SceneFit needs Python 3.11 (the bpy==4.5 module is built for it): set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
# Ray, the optional extra of batch `--ray` (requirements-ray.txt), belongs to the development environment so that
# the two-node cluster tests (marker ray) run wherever the suite does; the extension itself never imports it.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-ray.txt
