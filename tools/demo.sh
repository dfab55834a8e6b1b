#!/usr/bin/env bash
# Set up the environment, then run the main job headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/python tools/build.py
