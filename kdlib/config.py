"""The settings of one training run, with the seed paper's protocol as defaults.

``TrainConfig.validate()`` checks every field before any work starts, so a bad
command fails at once with one line naming the field, and leaves nothing on disk.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlib.errors import KdlibError

DATASETS = ("cifar10", "cifar100")
# Upper bounds that only a typo exceeds (a run of 10**20 epochs would "train on").
MAX_INTS = {
    "epochs": 100_000,
    "teacher_epochs": 100_000,
    "batch_size": 1_000_000,
    "eval_batch_size": 1_000_000,
    "checkpoint_every": 100_000,
    "num_workers": 1024,
    "seed": 2**63 - 1,
}
MAX_LR = 1e6  # no SGD run learns at a larger one: it is a typo (1e30 for 1e-3)


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow Ruffy & Chahal (2019)."""

    method: str = "nokd"
    student: str = "resnet8"
    teacher: str | None = None  # several, comma-separated, for multi-teacher methods
    teacher_checkpoint: str | None = None  # one per teacher, comma-separated
    teacher_epochs: int | None = None  # when no checkpoint: train the teacher first (nokd)
    dataset: str = "cifar10"
    epochs: int = 200
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    lr_milestones: tuple[float, ...] = (0.33, 0.66)  # fractions of the epochs
    lr_gamma: float = 0.1
    val_size: int = 5000
    train_limit: int | None = None
    test_limit: int | None = None  # smoke runs only: a class-balanced part of the test split
    augment: bool = True
    method_params: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = None  # None: 1000 on a GPU, 100 on a CPU (faster there)
    save_weights: bool = False  # also copy the final weights into the run directory
    device: str = "auto"
    data_dir: str | None = None
    cache_dir: str | None = None
    runs_dir: str = "runs"
    # Speed (kdlib bench measures each): the fast loop keeps the data on the device;
    # the classic one is a DataLoader with per-image Pillow augmentation, as in the paper.
    loop: str = "fast"  # fast | classic
    # auto: bf16 on a GPU and on a CPU with native bf16 (AMX, AVX512-BF16), else fp32
    precision: str = "auto"  # auto | fp32 | bf16 (resolved per host: part of the identity)
    channels_last: bool | None = None  # None: on with the fast loop, off with the classic
    compile: bool = False  # torch.compile the method's forward and loss
    num_workers: int = 4  # classic loop's DataLoader workers
    checkpoint_every: int = 10  # epochs between training checkpoints (and at the end)
    deterministic: bool = False  # deterministic kernels: bit-exact resumes on a GPU too
    grid: str | None = None  # set on the runs a grid method (kdparam, allkd) expands into

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build a config from a mapping (a YAML file, a sweep entry, a run's config.json).

        Unknown keys and values of the wrong type are errors naming the key; ranges are
        checked by ``validate``.
        """
        if not isinstance(values, dict):
            raise KdlibError(
                f"{where}: expected a mapping of settings, got {type(values).__name__}"
            )
        unknown = sorted(set(values) - set(_FIELD_TYPES))
        if unknown:
            raise KdlibError(
                f"{where}: unknown setting {unknown[0]!r}; valid: {', '.join(_FIELD_TYPES)}"
            )
        out = {}
        for key, value in values.items():
            kinds, optional = _FIELD_TYPES[key]
            ok = (value is None and optional) or (
                isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
            )
            if not ok:
                names = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
                raise KdlibError(f"{where}: {key}={value!r} must be {names}")
            if key == "lr_milestones":
                value = tuple(value)
            out[key] = value
        return cls(**out)

    @classmethod
    def from_run(cls, config: dict[str, Any]) -> TrainConfig:
        """The settings of a recorded run (its ``config.json``), to resume or repeat it."""
        return cls.from_dict({k: v for k, v in config.items() if k in _FIELD_TYPES}, "run config")

    def _check_teacher_checkpoints(self, teachers: list[str], checkpoints: list[str]) -> None:
        """Each checkpoint must fit its architecture and the dataset's class count."""
        from kdlib.data import DATASETS as SPECS
        from kdlib.errors import CheckpointError
        from kdlib.models import create_model, load_weights

        num_classes = SPECS[self.dataset].num_classes
        for name, path in zip(teachers, checkpoints, strict=True):
            if not path:  # this teacher is trained first
                continue
            try:
                load_weights(create_model(name, num_classes), path)
            except CheckpointError as e:
                raise KdlibError(
                    f"--teacher-checkpoint={path!r} does not fit --teacher={name} on "
                    f"{self.dataset}: {e}"
                ) from None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    def milestone_epochs(self) -> list[int]:
        """Epochs after which the lr is multiplied by ``lr_gamma`` (int(0.33*E), int(0.66*E))."""
        return sorted(
            {int(f * self.epochs) for f in self.lr_milestones if int(f * self.epochs) > 0}
        )

    def teacher_names(self) -> list[str]:
        """The teacher architectures (several for multi-teacher methods)."""
        return [t.strip() for t in self.teacher.split(",")] if self.teacher else []

    def teacher_checkpoints(self) -> list[str]:
        """The teacher checkpoint paths, one per teacher, or empty (teachers trained first);
        an empty entry (``a.pth,``) means that teacher is trained first."""
        if not self.teacher_checkpoint:
            return []
        return [c.strip() for c in self.teacher_checkpoint.split(",")]

    def validate(self) -> None:
        """Raise ``KdlibError`` naming the first bad field and what is allowed."""
        from kdlib.methods import GridMethod, method_class, resolve_params
        from kdlib.models import list_models

        def bad(name: str, allowed: str) -> KdlibError:
            return KdlibError(f"--{name.replace('_', '-')}={getattr(self, name)!r}: {allowed}")

        cls = method_class(self.method)
        models = list_models()
        if self.student not in models:
            raise bad("student", f"unknown model; valid: {', '.join(models)}")
        teachers, checkpoints = self.teacher_names(), self.teacher_checkpoints()
        if any(t not in models for t in teachers):
            raise bad("teacher", f"unknown model; valid: {', '.join(models)}")
        if cls.needs_teacher and not teachers:
            raise KdlibError(
                f"method {self.method!r} needs a teacher: add --teacher MODEL and "
                "--teacher-checkpoint PATH (without a checkpoint the teacher is trained first)"
            )
        if len(teachers) > 1 and not cls.multi_teacher:
            raise bad("teacher", f"method {self.method!r} takes one teacher, not {len(teachers)}")
        if checkpoints:
            if not teachers:
                raise bad("teacher_checkpoint", "given without --teacher MODEL")
            if len(checkpoints) != len(teachers):
                raise bad(
                    "teacher_checkpoint",
                    f"{len(checkpoints)} checkpoints for {len(teachers)} teachers; give one "
                    "per teacher, comma-separated, in the same order",
                )
            for path in checkpoints:  # an empty entry: that teacher is trained first
                if path and Path(path).is_dir():
                    raise KdlibError(
                        f"--teacher-checkpoint: {path!r} is a directory, not a checkpoint file"
                    )
                if path and not Path(path).is_file():
                    raise KdlibError(f"--teacher-checkpoint: no such file {path!r}")
        if self.dataset not in DATASETS:
            raise bad("dataset", f"valid: {', '.join(DATASETS)}")
        for name in ("runs_dir", "cache_dir"):  # folders kdlib writes into
            value = getattr(self, name)
            if value is not None and Path(value).exists() and not Path(value).is_dir():
                raise bad(name, "is a file; it must be a folder (or not exist yet)")
        ints = {
            "epochs": 1,
            "batch_size": 1,
            "val_size": 0,
            "seed": 0,
            "checkpoint_every": 1,
            "num_workers": 0,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an integer >= {low}")
        for name in ("train_limit", "test_limit", "teacher_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise bad(name, "an integer >= 1, or unset")
        for name, high in MAX_INTS.items():
            value = getattr(self, name)
            if isinstance(value, int) and value > high:
                raise bad(name, f"at most {high:,} (a typo?)")

        def number(name: str) -> bool:
            value = getattr(self, name)
            return (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (math.isfinite(value))
            )

        if not (number("lr") and self.lr > 0):
            raise bad("lr", "a finite number > 0")
        if self.lr > MAX_LR:
            raise bad("lr", f"at most {MAX_LR:g} (a typo?)")
        if not (number("momentum") and 0 <= self.momentum < 1):
            raise bad("momentum", "a number in [0, 1)")
        if not (number("weight_decay") and 0 <= self.weight_decay <= 1):
            raise bad("weight_decay", "a finite number in [0, 1]")
        if not (number("lr_gamma") and 0 < self.lr_gamma <= 1):
            raise bad("lr_gamma", "a number in (0, 1]")
        if not all(isinstance(f, int | float) and 0 < f < 1 for f in self.lr_milestones):
            raise bad("lr_milestones", "fractions of the epochs, each in (0, 1)")
        if self.loop not in ("fast", "classic"):
            raise bad("loop", "fast or classic")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise bad("precision", "auto, fp32 or bf16")
        if self.nesterov and self.momentum == 0:
            raise bad("momentum", "Nesterov SGD needs momentum > 0")
        if checkpoints and self.dataset in DATASETS:
            self._check_teacher_checkpoints(teachers, checkpoints)
        hparams = resolve_params(cls, self.method_params)
        cls.check_config(self, hparams)
        if issubclass(cls, GridMethod):
            for run in cls.expand(self, hparams):
                run.validate()


# Accepted Python types of each setting in files (YAML, JSON) and whether null is allowed.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "method": ((str,), False),
    "student": ((str,), False),
    "teacher": ((str,), True),
    "teacher_checkpoint": ((str,), True),
    "teacher_epochs": ((int,), True),
    "dataset": ((str,), False),
    "epochs": ((int,), False),
    "seed": ((int,), False),
    "batch_size": ((int,), False),
    "lr": ((int, float), False),
    "momentum": ((int, float), False),
    "weight_decay": ((int, float), False),
    "nesterov": ((bool,), False),
    "lr_milestones": ((list, tuple), False),
    "lr_gamma": ((int, float), False),
    "val_size": ((int,), False),
    "train_limit": ((int,), True),
    "test_limit": ((int,), True),
    "augment": ((bool,), False),
    "method_params": ((dict,), False),
    "eval_batch_size": ((int,), True),
    "save_weights": ((bool,), False),
    "device": ((str,), False),
    "data_dir": ((str,), True),
    "cache_dir": ((str,), True),
    "runs_dir": ((str,), False),
    "loop": ((str,), False),
    "precision": ((str,), False),
    "channels_last": ((bool,), True),
    "compile": ((bool,), False),
    "num_workers": ((int,), False),
    "checkpoint_every": ((int,), False),
    "deterministic": ((bool,), False),
    "grid": ((str,), True),
}
assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(TrainConfig)}
