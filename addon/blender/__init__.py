"""Everything that touches bpy. Registration walks the modules in dependency order."""

from . import preferences, presets, properties, supershape

_MODULES = (preferences, properties, supershape, presets)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
