"""The settings of one training run, with the seed paper's protocol as defaults, and the
one catalogue that says what each setting is.

Every ``TrainConfig`` field says once, in its ``Setting`` metadata, its group, its help,
whether it is part of the run's identity, whether it belongs to the student's training
protocol, whether it is a path, and the values it may take. The command line
(``kdlib train`` flags), file reading (types), validation (ranges, choices), the run's
identity (``kdlib.runs``), sweeps (teacher fields, paths), the run notebook's
parameters and the figures' pooling rule all derive from it, so a new setting is one
field here plus its use.

This module is torch-free and knows no registry: checks that need the methods, models or
data (a method's teacher, a checkpoint's fit) are ``kdlib.plan.check``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlib.allocator import MODES as ALLOCATOR_MODES
from kdlib.errors import KdlibError

DATASETS = ("cifar10", "cifar100")
MAX_LR = 1e6  # no SGD run learns at a larger one: it is a typo (1e30 for 1e-3)

# The groups of settings, in the order ``kdlib train --help`` shows them.
GROUPS = {
    "method": "what is distilled",
    "teacher": "where the teacher comes from",
    "protocol": "the student's training protocol (the seed paper's by default)",
    "speed": "how fast it runs (the same result, or a recorded choice)",
    "where": "where it runs and where files go",
}


@dataclass(frozen=True)
class Setting:
    """What the catalogue says of one ``TrainConfig`` field."""

    group: str
    help: str
    identity: bool = True  # part of the run's identity (its config hash)
    # Hashed even at its default. A setting added after runs were recorded says False,
    # so runs made before it existed (which ran at its default) keep their identity.
    hash_default: bool = True
    protocol: bool = False  # a method's runs and their nokd baseline must agree on it
    path: bool = False  # a path
    several: bool = False  # a comma-separated list, one entry per teacher
    writes: bool = False  # a folder kdlib writes into: must be a folder if it exists
    cli: bool = True  # a ``kdlib train`` flag (``--name-with-dashes``)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None  # beyond it only a typo goes ("at most ... (a typo?)")
    open_min: bool = False  # the minimum itself is excluded
    open_max: bool = False


def setting(default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field with its catalogue entry (``Setting``) as metadata."""
    kwargs: dict[str, Any] = {"metadata": {"setting": Setting(**meta)}}
    if isinstance(default, dict | list):
        kwargs["default_factory"] = lambda d=default: type(d)(d)
    else:
        kwargs["default"] = default
    return field(**kwargs)


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow Ruffy & Chahal (2019)."""

    method: str = setting("nokd", group="method", help="see `kdlib methods`")
    student: str = setting("resnet8", group="protocol", protocol=True, help="see `kdlib models`")
    teacher: str | None = setting(
        None,
        group="teacher",
        several=True,
        help="teacher model (several, comma-separated, for mkd and allkd)",
    )
    teacher_checkpoint: str | None = setting(
        None,
        group="teacher",
        identity=False,  # counts by its content: teacher_checkpoint_sha256
        path=True,
        several=True,
        help="its checkpoint (one per teacher, comma-separated; an empty entry, as in "
        "'a.pth,', trains that teacher first)",
    )
    teacher_epochs: int | None = setting(
        None,
        group="teacher",
        minimum=1,
        maximum=100_000,
        help="epochs when the teacher is trained first (default: the run's epochs)",
    )
    dataset: str = setting(
        "cifar10", group="protocol", protocol=True, choices=DATASETS, help="the data set"
    )
    epochs: int = setting(
        200, group="protocol", protocol=True, minimum=1, maximum=100_000, help="training epochs"
    )
    seed: int = setting(
        0,
        group="protocol",
        minimum=0,
        maximum=2**63 - 1,
        help="seeds the student's init, the batches and the augmentation",
    )
    batch_size: int = setting(
        128,
        group="protocol",
        protocol=True,
        minimum=1,
        maximum=1_000_000,
        help="training batch size",
    )
    lr: float = setting(
        0.1,
        group="protocol",
        protocol=True,
        minimum=0,
        open_min=True,
        maximum=MAX_LR,
        help="initial learning rate",
    )
    momentum: float = setting(
        0.9,
        group="protocol",
        protocol=True,
        minimum=0,
        maximum=1,
        open_max=True,
        help="SGD momentum",
    )
    weight_decay: float = setting(
        5e-4, group="protocol", protocol=True, minimum=0, maximum=1, help="SGD weight decay"
    )
    nesterov: bool = setting(True, group="protocol", protocol=True, help="Nesterov momentum")
    lr_milestones: tuple[float, ...] = setting(
        (0.33, 0.66),
        group="protocol",
        protocol=True,
        help="fractions of the epochs after which the lr is multiplied by lr_gamma, "
        "comma-separated",
    )
    lr_gamma: float = setting(
        0.1,
        group="protocol",
        protocol=True,
        minimum=0,
        open_min=True,
        maximum=1,
        help="lr factor at each milestone",
    )
    val_size: int = setting(
        5000,
        group="protocol",
        protocol=True,
        minimum=0,
        help="validation images carved from the training split",
    )
    train_limit: int | None = setting(
        None, group="protocol", protocol=True, minimum=1, help="train on a class-balanced subset"
    )
    test_limit: int | None = setting(
        None,
        group="protocol",
        minimum=1,
        help="smoke runs only: a class-balanced part of the test split",
    )
    augment: bool = setting(
        True, group="protocol", protocol=True, help="random crop and flip of the training images"
    )
    method_params: dict[str, Any] = setting(
        {},
        group="method",
        cli=False,  # -p KEY=VALUE
        help="method parameters (see `kdlib methods`)",
    )
    eval_batch_size: int | None = setting(
        None,
        group="speed",
        minimum=1,
        maximum=1_000_000,
        help="default 1000 on a GPU, 100 on a CPU",
    )
    save_weights: bool = setting(
        False, group="where", help="also copy the final weights into the run directory"
    )
    device: str = setting("auto", group="where", identity=False, help="auto, cpu, cuda")
    data_dir: str | None = setting(
        None,
        group="where",
        identity=False,
        path=True,
        help="where the data is (default $KDLIB_DATA_DIR or ./data)",
    )
    cache_dir: str | None = setting(
        None,
        group="where",
        identity=False,
        path=True,
        writes=True,
        help="prepared arrays and weights (default $KDLIB_CACHE_DIR or ~/.cache/kdlib)",
    )
    runs_dir: str = setting(
        "runs",
        group="where",
        identity=False,
        path=True,
        writes=True,
        help="where run directories go",
    )
    # Speed (kdlib bench measures each): the fast loop keeps the data on the device;
    # the classic one is a DataLoader with per-image Pillow augmentation, as in the paper.
    loop: str = setting(
        "fast", group="speed", protocol=True, choices=("fast", "classic"), help="training data path"
    )
    precision: str = setting(
        "auto",
        group="speed",
        protocol=True,
        choices=("auto", "fp32", "bf16"),
        help="auto: bf16 on a GPU and on a CPU with native bf16 (AMX, AVX512-BF16), else "
        "fp32 (resolved per host: part of the identity)",
    )
    channels_last: bool | None = setting(
        None,
        group="speed",
        protocol=True,
        help="default: on with the fast loop (GPU, and CPU), off with the classic loop",
    )
    compile: bool = setting(
        False, group="speed", protocol=True, help="torch.compile the training step"
    )
    cpu_allocator: str = setting(
        "tuned",
        group="speed",
        identity=False,  # where freed memory waits changes no result
        choices=ALLOCATOR_MODES,
        help="glibc malloc on a CPU: tuned keeps freed memory in the process (far fewer "
        "page faults; 1.3-1.7x faster epochs measured), default leaves glibc's own (in a "
        "process no earlier run tuned)",
    )
    num_workers: int = setting(
        4, group="speed", minimum=0, maximum=1024, help="classic loop's DataLoader workers"
    )
    tensorboard: str | None = setting(
        None,
        group="where",
        identity=False,
        path=True,
        writes=True,
        help="also write each run's scalars for TensorBoard into this folder (one per run)",
    )
    checkpoint_every: int = setting(
        10,
        group="where",
        identity=False,
        minimum=1,
        maximum=100_000,
        help="epochs between training checkpoints",
    )
    deterministic: bool = setting(
        False,
        group="speed",
        protocol=True,
        help="deterministic kernels: bit-exact resumes on a GPU too",
    )
    grid: str | None = setting(
        None,
        group="method",
        cli=False,
        help="set on the runs a grid method (kdparam, allkd) expands into",
    )

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
        names = setting_names()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise KdlibError(f"{where}: unknown setting {unknown[0]!r}; valid: {', '.join(names)}")
        out = {}
        for key, value in values.items():
            kinds, optional = field_types(key)
            if not _has_type(value, kinds, optional):
                names_ = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
                raise KdlibError(f"{where}: {key}={value!r} must be {names_}")
            out[key] = tuple(value) if key == "lr_milestones" else value
        return cls(**out)

    @classmethod
    def from_run(cls, config: dict[str, Any]) -> TrainConfig:
        """The settings of a recorded run (its ``config.json``), to resume or repeat it."""
        names = setting_names()
        return cls.from_dict({k: v for k, v in config.items() if k in names}, "run config")

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
        """Raise ``KdlibError`` naming the first bad field and what is allowed.

        Checks what the catalogue says of each field (type, range, choices, folders) and
        the rules between fields that need no registry; ``kdlib.plan.check`` adds the
        methods', models' and checkpoints' rules.
        """
        for name, entry in _catalogue().items():
            _check_field(self, name, entry)
        if not all(
            isinstance(x, int | float) and not isinstance(x, bool) and 0 < x < 1
            for x in self.lr_milestones
        ):
            raise _bad(self, "lr_milestones", "fractions of the epochs, each in (0, 1)")
        if self.nesterov and self.momentum == 0:
            raise _bad(self, "momentum", "Nesterov SGD needs momentum > 0")
        checkpoints = self.teacher_checkpoints()
        if checkpoints and not self.teacher:
            raise _bad(self, "teacher_checkpoint", "given without --teacher MODEL")
        if checkpoints and len(checkpoints) != len(self.teacher_names()):
            raise _bad(
                self,
                "teacher_checkpoint",
                f"{len(checkpoints)} checkpoints for {len(self.teacher_names())} teachers; "
                "give one per teacher, comma-separated, in the same order",
            )
        for path in checkpoints:  # an empty entry: that teacher is trained first
            if path and Path(path).is_dir():
                raise KdlibError(
                    f"--teacher-checkpoint: {path!r} is a directory, not a checkpoint file"
                )
            if path and not Path(path).is_file():
                raise KdlibError(f"--teacher-checkpoint: no such file {path!r}")


# ----------------------------------------------------------------------------- catalogue


@functools.cache
def _catalogue() -> dict[str, Setting]:
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(TrainConfig)}


def catalogue() -> dict[str, Setting]:
    """Every setting's catalogue entry, in field order."""
    return dict(_catalogue())


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def settings_where(**meta: Any) -> tuple[str, ...]:
    """The names of the settings whose catalogue entry has these values, e.g.
    ``settings_where(group="teacher")`` or ``settings_where(path=True)``."""
    return tuple(
        name for name, s in catalogue().items() if all(getattr(s, k) == v for k, v in meta.items())
    )


def default(name: str) -> Any:
    """The default value of setting ``name``."""
    f = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


@functools.cache
def field_types(name: str) -> tuple[tuple[type, ...], bool]:
    """The Python types a setting accepts in files (YAML, JSON) and whether null is one.

    Read off the field's annotation: ``float`` takes ints too, a tuple takes a list.
    """
    hint = typing.get_type_hints(TrainConfig)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    kinds: list[type] = []
    for arg in args:
        origin = typing.get_origin(arg) or arg
        if arg is type(None):
            continue
        if origin is float:
            kinds += [int, float]
        elif origin is tuple:
            kinds += [list, tuple]
        else:
            kinds.append(origin)
    return tuple(kinds), optional


def scalar_type(name: str) -> type:
    """The one type a command-line value of ``name`` is parsed to (int, float, str, bool,
    tuple for a comma-separated list)."""
    kinds, _ = field_types(name)
    return float if float in kinds else tuple if tuple in kinds else kinds[0]


def _has_type(value: Any, kinds: tuple[type, ...], optional: bool) -> bool:
    if value is None:
        return optional
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _bad(cfg: TrainConfig, name: str, allowed: str) -> KdlibError:
    """The error naming a bad setting as the user gave it: a flag, or a file's key."""
    label = f"--{name.replace('_', '-')}" if _catalogue()[name].cli else name
    return KdlibError(f"{label}={getattr(cfg, name)!r}: {allowed}")


def _interval(s: Setting) -> str:
    lo = "(" if s.open_min else "["
    hi = ")" if s.open_max else "]"
    return f"{lo}{s.minimum:g}, {s.maximum:g}{hi}"


def _number_rule(s: Setting, integer: bool, optional: bool) -> str:
    """What a number setting allows, in words (used in its error message)."""
    if integer:
        rule = f"an integer >= {s.minimum:g}"
    elif s.maximum is not None and s.minimum is not None and s.maximum <= 1:
        rule = f"a finite number in {_interval(s)}"
    elif s.minimum is not None:
        rule = f"a finite number {'>' if s.open_min else '>='} {s.minimum:g}"
    else:
        rule = "a finite number"
    return rule + (", or unset" if optional else "")


def _check_field(cfg: TrainConfig, name: str, s: Setting) -> None:
    value = getattr(cfg, name)
    kinds, optional = field_types(name)
    if value is None and optional:
        return
    if s.choices and value not in s.choices:
        raise _bad(cfg, name, f"valid: {', '.join(s.choices)}")
    if not _has_type(value, kinds, optional):
        if s.minimum is not None:
            raise _bad(cfg, name, _number_rule(s, float not in kinds, optional))
        names = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
        raise _bad(cfg, name, f"must be {names}")
    if s.minimum is not None or s.maximum is not None:
        integer = float not in kinds
        rule = _number_rule(s, integer, optional)
        if not integer and not math.isfinite(value):
            raise _bad(cfg, name, rule)
        if s.minimum is not None and (value <= s.minimum if s.open_min else value < s.minimum):
            raise _bad(cfg, name, rule)
        if s.maximum is not None and (value >= s.maximum if s.open_max else value > s.maximum):
            if not integer and s.maximum <= 1:  # a bounded fraction: say the interval
                raise _bad(cfg, name, rule)
            big = f"{s.maximum:,}" if integer else f"{s.maximum:g}"
            raise _bad(cfg, name, f"at most {big} (a typo?)")
    if s.writes and Path(value).exists() and not Path(value).is_dir():
        raise _bad(cfg, name, "is a file; it must be a folder (or not exist yet)")


def described_settings() -> Iterator[tuple[str, Setting, Any]]:
    """``(name, entry, default)`` of every setting, for help texts and documentation."""
    for name, s in catalogue().items():
        yield name, s, default(name)
