#!/usr/bin/env bash
# The benchmarks of bench/README.md, in one go: loop efficiency (Cycles and Workbench), sample efficiency on real
# Blender renders (blendtorch's configuration vs SceneFit's default, 5 seeds each), the demo's wall clock and the
# yaw/categorical presets with the tuned default vs the default before tuning, and the six hand-built scenes with
# targets SceneFit did not render (issue #12), fitted through the Session and against lookup tables of plain renders.
# The full run takes about two hours on 2 cores (independent_targets.py about 50 minutes). --quick runs only the smoke tests (a minute, figures meaningless):
# that is all CI may run. Extra arguments after --quick are not accepted; run a script directly for its options.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
case "${1:-}" in
  "") ;;
  --quick) quick=(--quick) ;;
  *) echo "usage: bash tools/bench.sh [--quick]" >&2; exit 2 ;;
esac

bash tools/setup.sh
.venv/bin/python bench/loop_efficiency.py "${quick[@]}"
.venv/bin/python bench/sample_efficiency.py --renderer blender "${quick[@]}"
.venv/bin/python bench/wall_clock.py "${quick[@]}"
.venv/bin/python bench/preset_check.py "${quick[@]}"
.venv/bin/python bench/image_pipeline.py "${quick[@]}"
.venv/bin/python bench/independent_targets.py "${quick[@]}"
.venv/bin/python bench/objective_lookup.py "${quick[@]}"
