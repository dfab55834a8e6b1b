"""The scene floor: resolve and set properties (rna), render, clips and physics, the supershape object, the
presets' scene builders, and what differs between Blender versions (compat). Imports no other floor."""
