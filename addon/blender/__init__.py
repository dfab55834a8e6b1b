"""Everything that touches bpy, in floors that import only downwards: scene < targets, data < run < ui.

Registration walks one list of modules in dependency order.
"""

from .data import preferences, properties
from .run import controller
from .scene import supershape
from .ui import operators, panels

_MODULES = (preferences, properties, supershape, controller, operators, panels)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
