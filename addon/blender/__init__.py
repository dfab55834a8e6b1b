"""Everything that touches bpy. Registration walks the modules in dependency order."""

from . import (
    dataset,
    panels,
    preferences,
    presets,
    properties,
    results,
    run,
    spec_ops,
    supershape,
    target_check,
    torch_setup,
)

_MODULES = (
    preferences,
    properties,
    supershape,
    presets,
    torch_setup,
    target_check,
    run,
    results,
    spec_ops,
    dataset,
    panels,
)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
