"""SceneFit's product code: ``engine`` (no bpy) and ``blender`` (everything that touches bpy)."""
