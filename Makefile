# Development shortcuts (excluded from the extension zip by blender_manifest.toml).
.PHONY: bench bench-quick

# All benchmarks, full size (about an hour on 2 cores); see bench/README.md.
bench:
	bash tools/bench.sh

# Smoke tests of the benchmarks only (what CI may run).
bench-quick:
	bash tools/bench.sh --quick
