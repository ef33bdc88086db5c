"""The one interface every distillation method plugs into, and the method registry.

A method is a ``Distiller``: an ``nn.Module`` wrapping the student (and, if it needs one,
a frozen teacher) whose ``forward(images, labels)`` returns the student's logits and a
dict of named, already-weighted loss terms. The training loop sums the terms, so a new
method never touches the loop. Methods are found by name through ``register_method``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from kdlib.errors import KdlibError


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of a method: its default, meaning and allowed range."""

    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    allowed: str = ""

    def parse(self, method: str, name: str, value: Any) -> Any:
        """Convert ``value`` (possibly a CLI string) to the default's type and check it."""
        kind = type(self.default)
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                parsed: Any = value.lower() in ("true", "1", "yes")
            elif kind is float and isinstance(value, bool):
                raise ValueError(value)
            else:
                parsed = kind(value)
        except (TypeError, ValueError):
            raise KdlibError(
                f"method {method!r}: parameter {name}={value} is not a {kind.__name__}"
                + (f" (allowed: {self.allowed})" if self.allowed else "")
            ) from None
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise KdlibError(
                f"method {method!r}: parameter {name}={value} is not a finite number"
                + (f" (allowed: {self.allowed})" if self.allowed else "")
            )
        if self.check is not None and not self.check(parsed):
            raise KdlibError(
                f"method {method!r}: parameter {name}={value} is out of range "
                f"(allowed: {self.allowed})"
            )
        return parsed


@dataclass
class TrainContext:
    """What a method may need to know about the run it is part of (given to ``setup``)."""

    epochs: int
    steps_per_epoch: int
    num_classes: int
    mean: torch.Tensor  # (3,) per-channel mean of pixels in [0, 1], on the device
    std: torch.Tensor
    device: torch.device
    seed: int
    train_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]  # for init phases (AB)
    # A training checkpoint will restore the state after ``setup``: an init phase that
    # only produces state (AB's) is skipped rather than repeated.
    resuming: bool = False


# A method the seed paper's code ran differently from its authors' definition has a
# ``variant`` parameter: "original" (the default: the method as its authors defined it)
# or "seed" (what the seed paper's code, karanchahal/distiller, computed).
VARIANTS = ("original", "seed")


def variant_param(seed_does: str) -> Param:
    """The ``variant`` parameter of a method; ``seed_does`` says what the seed did."""
    return Param(
        "original",
        f"original: as its authors defined it; seed: as the seed paper's code ran it ({seed_does})",
        lambda v: v in VARIANTS,
        " or ".join(VARIANTS),
    )


class MethodSpec:
    """What every method declares: name, one-line description, teacher needs, parameters.

    ``seed_defaults``: parameters whose default is another one in the ``variant=seed``
    (e.g. AB's 10 initialisation epochs); a value given explicitly still wins.

    ``revision``: raised whenever what a method computes changes while its parameters do
    not (a fixed bug), so runs made before are not taken for runs of the new one. It is
    part of a run's identity from 1 on (``method_revision``); 0 adds nothing, so the
    identities of methods never revised stay as they were.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    multi_teacher: ClassVar[bool] = False  # accepts several teachers (--teacher a,b,c)
    params: ClassVar[dict[str, Param]] = {}
    seed_defaults: ClassVar[dict[str, Any]] = {}
    revision: ClassVar[int] = 0

    @classmethod
    def revision_for(cls, hparams: dict[str, Any]) -> int:
        """The ``revision`` of what the method computes with these (resolved) parameters.

        A fix that changed one variant only raises the revision of that variant, so the
        runs of the other keep their identity."""
        return cls.revision

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        """Cross-field checks run before any work (e.g. compatible architectures).

        Raise ``KdlibError`` naming the bad field. ``cfg`` is the ``TrainConfig``.
        """


class Distiller(MethodSpec, nn.Module):
    """Base class of all methods: student + optional frozen teacher -> logits, named losses.

    Hooks a method may override, all optional: ``setup`` (once, on the device, before the
    optimizer is built: create connectors, run an init phase), ``on_epoch_start``
    (schedules such as a warm-up), ``teacher_stage`` (a run that must produce the teacher
    first, as in TAKD), ``record`` (extra facts for the run's config).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__()
        if self.needs_teacher and teacher is None:
            raise KdlibError(
                f"method {self.name!r} needs a teacher: pass --teacher MODEL "
                "(and --teacher-checkpoint PATH, or the teacher is trained first)"
            )
        self.hparams = resolve_params(type(self), hparams)
        self.student = student
        self.teacher = teacher
        if teacher is not None and self.freezes_teacher():
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

    def freezes_teacher(self) -> bool:
        """Whether the teacher is fixed (eval mode, no gradient). Methods may make it a choice."""
        return True

    def setup(self, ctx: TrainContext) -> None:
        """Called once by the loop after moving to the device, before the optimizer exists."""
        self.ctx = ctx

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the loop before each epoch (1-based)."""

    @classmethod
    def teacher_stage(cls, cfg: Any, hparams: dict[str, Any]) -> Any | None:
        """A ``TrainConfig`` whose trained student becomes this run's teacher, or None."""
        return None

    def record(self) -> dict[str, Any]:
        """Facts about how the method ran, stored in the run's config (``method_record``)."""
        return {"teacher_frozen": self.teacher is not None and self.freezes_teacher()}

    def train(self, mode: bool = True) -> Distiller:
        """Switch the student (and any connectors) to ``mode``; a frozen teacher stays in eval."""
        super().train(mode)
        if self.teacher is not None and self.freezes_teacher():
            self.teacher.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates: everything with a gradient (never a frozen teacher)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits (no graph is built)."""
        assert self.teacher is not None
        return self.teacher(images)

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """The teacher's ``(logits, feats)`` from ``forward(x, features=True)``, no graph."""
        assert self.teacher is not None
        return self.teacher(images, features=True)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the student's logits and the weighted loss terms for one batch."""
        raise NotImplementedError


class GridMethod(MethodSpec):
    """A study that is a set of runs of another method (e.g. KD over a T x lambda grid)."""

    @classmethod
    def expand(cls, cfg: Any, hparams: dict[str, Any]) -> list[Any]:
        """The ``TrainConfig`` of each run of the grid; each records ``grid=cls.name``."""
        raise NotImplementedError


Method = type[Distiller] | type[GridMethod]
_METHODS: dict[str, Method] = {}


def register_method(cls: Method) -> Method:
    """Class decorator: make a ``Distiller`` or ``GridMethod`` available under ``cls.name``."""
    if not cls.name or not cls.description:
        raise ValueError(f"{cls.__name__} needs a name and a one-line description")
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of all registered methods."""
    return sorted(_METHODS)


def method_class(name: str) -> Method:
    """The method class registered as ``name``; a clear error for unknown names."""
    try:
        return _METHODS[name]
    except KeyError:
        raise KdlibError(
            f"unknown method {name!r}; valid methods: {', '.join(list_methods())} "
            "(see `kdlib methods`)"
        ) from None


def resolve_params(cls: type[MethodSpec], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``cls`` overridden by ``given``; unknown names and bad values are errors."""
    unknown = sorted(set(given) - set(cls.params))
    if unknown:
        valid = ", ".join(cls.params) or "none"
        raise KdlibError(
            f"method {cls.name!r} has no parameter {unknown[0]!r}; its parameters: {valid}"
        )
    out = {k: p.default for k, p in cls.params.items()}
    for key, value in given.items():
        out[key] = cls.params[key].parse(cls.name, key, value)
    if out.get("variant") == "seed":
        out.update({k: v for k, v in cls.seed_defaults.items() if k not in given})
    return out


def create_method(
    name: str, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any
) -> Distiller:
    """Build method ``name`` around ``student`` (and ``teacher``)."""
    cls = method_class(name)
    if not issubclass(cls, Distiller):
        raise KdlibError(f"method {name!r} is a grid of runs; run it with `kdlib train`")
    return cls(student, teacher, **hparams)
