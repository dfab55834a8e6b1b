"""Add ▸ Mesh ▸ Supershape: a new supershape object at the 3D cursor."""

from __future__ import annotations

import bpy
from bpy_extras import object_utils

from ...scene import supershape
from .base import SceneFitOperator


class SCENEFIT_OT_add_supershape(SceneFitOperator, bpy.types.Operator, object_utils.AddObjectHelper):
    """Add a supershape: a mesh driven by two superformulas whose parameters can be animated and randomized"""

    bl_idname = "scenefit.add_supershape"
    bl_label = "Supershape"
    bl_options = {"REGISTER", "UNDO"}

    resolution: bpy.props.IntVectorProperty(
        name="Resolution",
        description="Longitude × latitude samples",
        size=2,
        min=supershape.MIN_RESOLUTION,
        max=2000,
        default=supershape.DEFAULT_RESOLUTION,
    )

    def run(self, context: bpy.types.Context) -> set[str]:
        mesh = bpy.data.meshes.new("Supershape")
        obj = object_utils.object_data_add(context, mesh, operator=self)
        try:
            supershape.make_supershape(obj, supershape.validated_resolution(self.resolution), {})
        except BaseException:
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)
            raise
        return {"FINISHED"}
