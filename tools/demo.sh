#!/usr/bin/env bash
# The main job: set up .venv, then the supershape demo headless (build the scene from the supershape_density preset,
# render 64 targets from its ground truth, fit m1/m2, write the report). Arguments go to tools/demo.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo.py "$@"
