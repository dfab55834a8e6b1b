"""A stand-in for ``bpy.types.UILayout`` that checks every call against Blender's own description of UILayout.

The bpy module cannot give a real layout (opening a panel or popup there crashes), so panels' ``draw()`` run
against this: each method must exist on UILayout with the keywords and enum values passed, each ``prop`` must
name a property the data has, each ``operator`` an operator that exists with the settings assigned to it, each
attribute set one UILayout has. A typo in a draw function fails here as it would in Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_CHILDREN = {"row", "column", "box", "split", "grid_flow", "column_flow", "panel_prop"}


@dataclass
class Call:
    name: str
    args: tuple
    kwargs: dict
    properties: dict = field(default_factory=dict)  # settings assigned to an operator's properties


class OperatorSettings:
    """What ``layout.operator()`` returns: accepts only the operator's own properties (and valid enum values)."""

    def __init__(self, idname: str, call: Call) -> None:
        import bpy

        module, name = idname.split(".")
        operator = getattr(getattr(bpy.ops, module), name)
        object.__setattr__(self, "_rna", operator.get_rna_type())
        object.__setattr__(self, "_call", call)

    def __setattr__(self, name: str, value: Any) -> None:
        prop = self._rna.properties.get(name)
        assert prop is not None, f"operator {self._rna.identifier} has no property {name!r}"
        if prop.type == "ENUM" and not prop.is_enum_flag:
            assert value in prop.enum_items.keys(), f"{value!r} is not an item of {self._rna.identifier}.{name}"
        self._call.properties[name] = value


class RecordingLayout:
    """Records calls (``calls()`` walks children too) and asserts they would work on a real UILayout."""

    def __init__(self) -> None:
        object.__setattr__(self, "_calls", [])
        object.__setattr__(self, "_children", [])

    def calls(self) -> list[Call]:
        found = list(self._calls)
        for child in self._children:
            found += child.calls()
        return found

    def texts(self) -> list[str]:
        return [call.kwargs.get("text", "") for call in self.calls()]

    def __setattr__(self, name: str, value: Any) -> None:
        import bpy

        assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no attribute {name!r}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        import bpy

        function = bpy.types.UILayout.bl_rna.functions.get(name)
        assert function is not None, f"UILayout has no method {name!r}"
        parameters = {p.identifier: p for p in function.parameters if not p.is_output}

        def method(*args: Any, **kwargs: Any) -> Any:
            assert len(args) <= len(parameters), f"{name}() takes at most {len(parameters)} positional arguments"
            named = dict(zip(parameters, args, strict=False)) | kwargs
            for key, value in named.items():
                assert key in parameters, f"UILayout.{name}() has no parameter {key!r}"
                prop = parameters[key]
                if prop.type == "ENUM" and not prop.is_enum_flag:
                    assert value in prop.enum_items.keys(), f"{name}({key}={value!r}): not a valid item"
            for key, prop in parameters.items():
                if prop.is_required:
                    assert key in named, f"UILayout.{name}() needs {key!r}"
            call = Call(name, args, kwargs)
            self._calls.append(call)
            _check(name, named)
            if name in _CHILDREN:
                child = RecordingLayout()
                self._children.append(child)
                return child
            if name == "operator":
                return OperatorSettings(named["operator"], call)
            return None

        return method


def _has_property(data: Any, name: str) -> bool:
    return data.bl_rna.properties.get(name) is not None


def _check(name: str, named: dict[str, Any]) -> None:
    """What the RNA signature cannot say: the properties and types named must exist."""
    import bpy

    if name in ("prop", "prop_search", "operator_menu_enum"):
        target = named["operator"] if name == "operator_menu_enum" else named["data"]
        if name == "operator_menu_enum":
            module, op = target.split(".")
            rna = getattr(getattr(bpy.ops, module), op).get_rna_type()
            assert rna.properties.get(named["property"]) is not None, f"{target} has no property {named['property']!r}"
        else:
            assert _has_property(target, named["property"]), f"{target!r} has no property {named['property']!r}"
    if name == "prop_search":
        assert _has_property(named["search_data"], named["search_property"])
    if name == "operator":
        module, op = named["operator"].split(".")
        getattr(getattr(bpy.ops, module), op).get_rna_type()  # KeyError for an operator that does not exist
    if name == "template_list":
        assert hasattr(bpy.types, named["listtype_name"]), f"no UIList {named['listtype_name']}"
        assert _has_property(named["dataptr"], named["propname"])
        assert _has_property(named["active_dataptr"], named["active_propname"])
    if name == "progress":
        assert 0.0 <= named.get("factor", 0.0) <= 1.0
