"""The one planner from a request to its runs: ``plan(cfg)`` -> the runs, prerequisites first.

A request (``kdlib train``, a sweep row, the run notebook, a Slurm job) may need several
runs: each cell of a grid method (kdparam, allkd), a teacher trained first where no
checkpoint is given, TAKD's teacher assistant. Methods only *declare* what they need
(``GridMethod.expand``, ``Distiller.teacher_stage``); the expansion lives here, once, and
every entrance trains the same ordered list. A planned run names where each of its
teachers comes from, so training never plans: it finds a prerequisite's finished run
in the registry by its identity.

``check`` is the whole validation of a request before any work: the catalogue's rules
(``TrainConfig.validate``) and those that need the registries (methods, models, data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from kdlib.config import TrainConfig, settings_where
from kdlib.data import DATASETS as DATASET_SPECS
from kdlib.errors import CheckpointError, KdlibError
from kdlib.methods import GridMethod, method_class, resolve_params
from kdlib.models import create_model, list_models, load_weights
from kdlib.tensorboard import check_available


@dataclass(frozen=True)
class TeacherSource:
    """Where one teacher of a run comes from: a checkpoint file, or a planned run that
    trains it first (``run``: that run's settings; its student is this teacher)."""

    model: str
    checkpoint: str | None = None
    run: TrainConfig | None = None


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: its settings, why it is there, and where its teachers come from.

    ``role``: ``run`` (asked for: the request itself or a cell of its grid), ``teacher``
    (a teacher trained first) or ``assistant`` (TAKD's teacher assistant).
    """

    cfg: TrainConfig
    role: str = "run"
    teachers: tuple[TeacherSource, ...] = ()

    def key(self) -> str:
        """Equal for the same settings, however they were reached (plans share teachers)."""
        return run_key(self.cfg)

    def needs(self) -> list[str]:
        """The keys of the planned runs that must finish before this one (its teachers)."""
        return [run_key(t.run) for t in self.teachers if t.run is not None]


def run_key(cfg: TrainConfig) -> str:
    """A run's settings as one string: equal settings, equal keys."""
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def check(cfg: TrainConfig) -> None:
    """Raise ``KdlibError`` naming the first bad setting of the request ``cfg``."""
    cls = method_class(cfg.method)
    models = list_models()
    if cfg.student not in models:
        raise KdlibError(f"--student={cfg.student!r}: unknown model; valid: {', '.join(models)}")
    teachers = cfg.teacher_names()
    if any(t not in models for t in teachers):
        raise KdlibError(f"--teacher={cfg.teacher!r}: unknown model; valid: {', '.join(models)}")
    if cls.needs_teacher and not teachers:
        raise KdlibError(
            f"method {cfg.method!r} needs a teacher: add --teacher MODEL and "
            "--teacher-checkpoint PATH (without a checkpoint the teacher is trained first)"
        )
    if len(teachers) > 1 and not cls.multi_teacher:
        raise KdlibError(
            f"--teacher={cfg.teacher!r}: method {cfg.method!r} takes one teacher, "
            f"not {len(teachers)}"
        )
    cfg.validate()
    if cfg.tensorboard:
        check_available()
    _check_teacher_checkpoints(cfg)
    hparams = resolve_params(cls, cfg.method_params)
    cls.check_config(cfg, hparams)
    if issubclass(cls, GridMethod):
        for cell in cls.expand(cfg, hparams):
            check(cell)


def _check_teacher_checkpoints(cfg: TrainConfig) -> None:
    """Each checkpoint must fit its architecture and the dataset's class count."""
    num_classes = DATASET_SPECS[cfg.dataset].num_classes
    for name, path in zip(cfg.teacher_names(), cfg.teacher_checkpoints(), strict=False):
        if not path:  # this teacher is trained first
            continue
        try:
            load_weights(create_model(name, num_classes), path)
        except CheckpointError as e:
            raise KdlibError(
                f"--teacher-checkpoint={path!r} does not fit --teacher={name} on {cfg.dataset}: {e}"
            ) from None


def without_unused_teacher(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` without its teacher settings when the method uses no teacher (nokd,
    uda_nokd): such a run neither loads nor evaluates one, and the teacher is no part of
    its identity or run id (a sweep row with a teacher in its base gives the same run)."""
    cls = method_class(cfg.method)
    if issubclass(cls, GridMethod) or cls.needs_teacher or not cfg.teacher:
        return cfg
    return replace(cfg, **{name: None for name in settings_where(group="teacher")})


def teacher_run(cfg: TrainConfig, name: str) -> TrainConfig:
    """The run that trains teacher ``name`` of ``cfg`` first (no checkpoint given): plain
    training (nokd) of that architecture with the student's protocol, for
    ``teacher_epochs`` (default: the run's epochs)."""
    return replace(
        cfg,
        method="nokd",
        student=name,
        teacher=None,
        teacher_checkpoint=None,
        teacher_epochs=None,
        epochs=cfg.teacher_epochs or cfg.epochs,
        method_params={},
        save_weights=False,
        grid=None,
    )


def plan(cfg: TrainConfig) -> list[PlannedRun]:
    """Every run the request ``cfg`` needs, each once, in an order that trains every
    teacher and assistant before the runs that learn from it; the runs asked for
    (role ``run``) keep the request's order. Raises ``KdlibError`` for a bad request."""
    check(cfg)
    cls = method_class(cfg.method)
    if issubclass(cls, GridMethod):
        cells = cls.expand(cfg, resolve_params(cls, cfg.method_params))
    else:
        cells = [cfg]
    ordered: dict[str, PlannedRun] = {}
    for cell in cells:
        for planned in _plan_run(cell, "run"):
            ordered.setdefault(planned.key(), planned)
    return list(ordered.values())


def _plan_run(cfg: TrainConfig, role: str) -> list[PlannedRun]:
    """The prerequisites of one (non-grid) run, then the run itself."""
    cfg = without_unused_teacher(cfg)
    cls = method_class(cfg.method)
    stage = cls.teacher_stage(cfg, resolve_params(cls, cfg.method_params))
    if stage is not None:  # TAKD: the assistant is trained first and is the teacher
        check(stage)
        before = _plan_run(stage, "assistant")
        return [*before, PlannedRun(cfg, role, (TeacherSource(stage.student, run=stage),))]
    before: list[PlannedRun] = []
    sources: list[TeacherSource] = []
    checkpoints = cfg.teacher_checkpoints()
    for i, name in enumerate(cfg.teacher_names()):
        path = checkpoints[i] if checkpoints else ""
        if path:
            sources.append(TeacherSource(name, checkpoint=path))
            continue
        first = teacher_run(cfg, name)
        check(first)
        before += _plan_run(first, "teacher")
        sources.append(TeacherSource(name, run=first))
    return [*before, PlannedRun(cfg, role, tuple(sources))]


def describe(planned: PlannedRun) -> dict[str, Any]:
    """The columns that name a planned run in a sweep's table and ``--dry-run`` listing."""
    cfg = planned.cfg
    return {
        "role": planned.role,
        "method": cfg.method,
        "params": ",".join(f"{k}={v}" for k, v in cfg.method_params.items()),
        "student": cfg.student,
        "teacher": cfg.teacher,
        "dataset": cfg.dataset,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
    }
