"""Distillation methods: one ``Distiller`` subclass per method, found by name."""

import importlib
import pkgutil

from kdlib.methods.base import (
    Distiller,
    GridMethod,
    MethodSpec,
    Param,
    TrainContext,
    create_method,
    list_methods,
    method_class,
    register_method,
    resolve_params,
)
from kdlib.methods.kd import kd_loss

__all__ = [
    "Distiller",
    "GridMethod",
    "MethodSpec",
    "Param",
    "TrainContext",
    "create_method",
    "kd_loss",
    "list_methods",
    "method_class",
    "register_method",
    "resolve_params",
]

# Importing a method's module registers it: every module of this package is a method
# (or a helper of some), so a new method is one new file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
