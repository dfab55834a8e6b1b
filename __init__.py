"""SceneFit: learn the distributions of scene properties from target images."""

from .addon.blender import register, unregister

__all__ = ["register", "unregister"]
