"""The UI floor: the panels and the operators (``operators/``). Imports every floor below it."""
