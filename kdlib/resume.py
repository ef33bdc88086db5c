"""Training checkpoints: everything needed to continue a run exactly where it stopped.

Saved every ``checkpoint_every`` epochs and at the end, atomically, in the run's cache
folder: the method's trainable state (student, connectors), optimizer, lr scheduler, the
random generators (torch's global one, the loader's, any the method holds), the history
so far and the time spent. Loaded with ``weights_only=True`` like every kdlib checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlib import faults
from kdlib.errors import CheckpointError
from kdlib.io import UnreadableTorchFile, atomic_write, read_torch

FORMAT = 1


def _generators(module: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute by ``module`` or its submodules."""
    out = {}
    for name, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                out[f"{name}.{attr}" if name else attr] = value
    return out


def _trainable_state(distiller: nn.Module) -> dict[str, torch.Tensor]:
    """The distiller's state without a frozen teacher (which comes from its checkpoint)."""
    frozen = distiller.teacher is not None and distiller.freezes_teacher()
    return {
        k: v for k, v in distiller.state_dict().items() if not (frozen and k.startswith("teacher."))
    }


def save_checkpoint(
    path: Path,
    *,
    epoch: int,
    distiller: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader_generator: torch.Generator,
    history: list[dict[str, Any]],
    extra: dict[str, Any],
    wall_seconds: float,
) -> None:
    """Write the training state after ``epoch`` to ``path`` atomically."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "distiller": _trainable_state(distiller),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": loader_generator.get_state(),
            "method": {k: g.get_state() for k, g in _generators(distiller).items()},
        },
        "history": history,
        "extra": extra,
        "wall_seconds": wall_seconds,
    }
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        faults.fault_point(f"checkpoint-write:{epoch}")


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is no checkpoint yet."""
    if not path.is_file():
        return None
    try:
        state = read_torch(path)
    except UnreadableTorchFile as e:
        if e.unsafe:  # a pickle asking for Python objects: not ours, not to be run
            raise CheckpointError(f"{e}; or delete it to restart the run from scratch") from None
        raise DamagedCheckpoint(f"{path} is damaged ({_first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{path} is not a kdlib training checkpoint of format {FORMAT}")
    return state


class DamagedCheckpoint(CheckpointError):
    """A run's own training checkpoint cannot be read (truncated, overwritten): the run
    moves it aside (``set_aside``) and restarts from scratch rather than never again."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``<name>.damaged-<n>`` (kept for a look) and return
    the new path."""
    k = 1
    while (target := path.with_name(f"{path.name}.damaged-{k}")).exists():
        k += 1
    path.rename(target)
    return target


def restore_checkpoint(
    state: dict[str, Any],
    *,
    distiller: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader_generator: torch.Generator,
) -> None:
    """Put the saved state back into freshly built objects of the same run."""
    missing, unexpected = distiller.load_state_dict(state["distiller"], strict=False)
    frozen = distiller.teacher is not None and distiller.freezes_teacher()
    missing = [k for k in missing if not (frozen and k.startswith("teacher."))]
    if missing or unexpected:
        raise CheckpointError(
            f"training checkpoint does not fit this run (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    loader_generator.set_state(rng["loader"])
    generators = _generators(distiller)
    for name, gen_state in rng["method"].items():
        generators[name].set_state(gen_state)
