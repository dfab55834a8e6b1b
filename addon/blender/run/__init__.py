"""The run floor: one run configuration, the sampler (the one render loop) and its workers, the session and
its interactive controller, data sets, write-back, reports and the batch entry. Imports scene, targets, data."""
