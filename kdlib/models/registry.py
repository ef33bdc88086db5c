"""The one table of model names: the CLI, configs and checkpoints all refer to models by name.

Architecture modules register a factory per name with :func:`register_model`; everything
else goes through :func:`create_model`, so an unknown name fails in one place with one
helpful message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from kdlib.errors import KdlibError

Factory = Callable[[int], nn.Module]
F = TypeVar("F", bound=Factory)

_FACTORIES: dict[str, Factory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str) -> Callable[[F], F]:
    """Register ``factory(num_classes) -> nn.Module`` under ``name`` (lower case, unique)."""
    if name != name.lower() or not name:
        raise ValueError(f"model names are lower case and non-empty, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _FACTORIES:
            raise ValueError(f"model name {name!r} is registered twice")
        _FACTORIES[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return decorator


def list_models() -> list[str]:
    """All model names, in registration order (paper ResNets, 4-stage ResNets, WRNs)."""
    return list(_FACTORIES)


def _lookup(name: str) -> str:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise KdlibError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())} (see `kdlib models`)"
        )
    return key


def model_description(name: str) -> str:
    """One line saying what ``name`` is, for `kdlib models` and run records."""
    return _DESCRIPTIONS[_lookup(name)]


def create_model(name: str, num_classes: int = 10) -> nn.Module:
    """Build a freshly initialised model by name (case-insensitive)."""
    key = _lookup(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise KdlibError(f"num_classes must be a positive integer, got {num_classes!r}")
    return _FACTORIES[key](num_classes)
