"""Loading and saving model weights safely, with errors that say what does not fit.

Checkpoints are always read with ``torch.load(..., weights_only=True)``: a file that needs
arbitrary pickled Python objects is refused rather than unpickled, because unpickling can
run code. Prefixes added by ``nn.DataParallel`` (``module.``) and ``torch.compile``
(``_orig_mod.``) are stripped, so weights move freely between wrapped and plain models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdlib.errors import CheckpointError
from kdlib.io import UnreadableTorchFile, atomic_write, read_torch
from kdlib.models.registry import create_model, list_models

#: Keys under which training scripts commonly nest the state dict, tried in this order.
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
_LEADING_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5  # how many key names an error message lists


def _clean_key(key: str) -> str:
    """Drop DataParallel/torch.compile prefixes (also a compiled submodule's ``._orig_mod.``)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _LEADING_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped = True
    return key.replace("._orig_mod.", ".")


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:_SHOW]
        return f"a dict with keys {', '.join(map(repr, keys))}{', ...' if len(obj) > _SHOW else ''}"
    return f"a {type(obj).__name__}"


def _extract_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds no state dict: expected a dict of tensors, or one nested under "
            f"{', '.join(map(repr, WRAPPER_KEYS))}; found {_describe(obj)}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{path} is not a plain state dict: {len(bad)} entries are not named tensors "
            f"(e.g. {', '.join(map(repr, bad[:_SHOW]))})"
        )
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        clean = _clean_key(key)
        if clean in state:
            raise CheckpointError(f"{path} has the key {clean!r} twice once prefixes are removed")
        state[clean] = value
    return state


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint's tensors without ever unpickling arbitrary objects.

    Accepts a bare state dict or one wrapped under ``model_state_dict``, ``state_dict`` or
    ``model`` (other entries, such as optimizer state, are ignored), and strips leading
    ``module.`` / ``_orig_mod.`` prefixes from the keys.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file")
    try:
        obj = read_torch(p)
    except UnreadableTorchFile as e:
        raise CheckpointError(str(e)) from None
    return _extract_state_dict(obj, p)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DataParallel wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def _classifier_name(model: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` (the class-count layer), if any."""
    name = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name = module_name
    return name


Shapes = dict[str, tuple[int, ...]]


def _signature(shapes: Shapes, head: str | None) -> Shapes:
    """Shapes with the classifier's class dimension blanked, to compare architectures."""
    sig = dict(shapes)
    if head is not None:
        for key in (f"{head}.weight", f"{head}.bias"):
            if key in sig:
                sig[key] = (-1, *sig[key][1:])
    return sig


def _guess_architectures(shapes: Shapes) -> list[str]:
    """Registered model names whose key names and shapes match ``shapes`` exactly."""
    classes = shapes.get("linear.weight", (10,))[0]
    matches = []
    for name in list_models():
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            candidate = create_model(name, num_classes=max(1, classes))
        if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
            matches.append(name)
    return matches


def _names(names: list[str]) -> str:
    return " / ".join(f"`{n}`" for n in names)


def _listing(what: str, keys: list[str]) -> str:
    more = ", ..." if len(keys) > _SHOW else ""
    return f"{what} ({len(keys)}): {', '.join(keys[:_SHOW])}{more}"


def _mismatch_message(model: nn.Module, state: Mapping[str, Tensor], strict: bool) -> str | None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    wrong_shape = [k for k in own if k in theirs and own[k] != theirs[k]]
    if not wrong_shape and (not strict or not (missing or unexpected)):
        return None

    parts: list[str] = []
    head = _classifier_name(model)
    if _signature(own, head) != _signature(theirs, head):
        guesses = _guess_architectures(theirs)
        common = len(set(own) & set(theirs))
        if guesses:
            mine = _guess_architectures(own)
            model_is = f"the model is {_names(mine)}" if mine else "the model is not"
            parts.append(f"wrong architecture: the checkpoint is {_names(guesses)}, {model_is}")
        elif common < 0.5 * max(len(own), len(theirs)):
            parts.append(
                f"only {common} of the checkpoint's {len(theirs)} keys exist in the model "
                f"({len(own)} keys): it is probably from a different architecture"
            )
    w = f"{head}.weight"
    if w in own and w in theirs and own[w][0] != theirs[w][0]:
        n, m = theirs[w][0], own[w][0]
        parts.append(
            f"checkpoint has {n} classes but the model has {m} "
            f"(create the model with num_classes={n})"
        )
    if strict and missing:
        parts.append(_listing("missing keys", missing))
    if strict and unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if wrong_shape:
        shown = [f"{k} {list(theirs[k])} vs {list(own[k])}" for k in wrong_shape]
        parts.append(_listing("shape mismatches (checkpoint vs model)", shown))
    return "; ".join(parts)


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``model`` (compiled or DataParallel-wrapped is fine).

    With ``strict=False`` missing and unexpected keys are tolerated, shape mismatches never.
    Raises :class:`CheckpointError` saying what does not fit (class count, architecture,
    keys, shapes) instead of PyTorch's long RuntimeError.
    """
    state = load_state_dict(path)
    target = _unwrap(model)
    problem = _mismatch_message(target, state, strict)
    if problem:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model ({type(target).__name__}): {problem}"
        )
    target.load_state_dict(state, strict=strict)
    return model


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Atomically save the plain state dict (no wrapper prefixes), loadable anywhere."""
    target = _unwrap(model)
    state = {_clean_key(k): v.detach().cpu() for k, v in target.state_dict().items()}
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
