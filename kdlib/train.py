"""From a request to trained runs: plan -> claim -> build -> train.

``run_method`` (``kdlib train``, the run notebook) trains every run the planner
(``kdlib.plan``) lists for a request, prerequisites first; sweeps (and their Slurm jobs)
train the same plan run by run through ``train_planned``. Each planned run
is *claimed* (``kdlib.claim``: its identity, a look-up, its lock, its run directory; a
finished run is returned there, before any data is loaded), then *built* (the data, its
loaders, the teacher, the method, whose ``setup`` may train: AB's initialisation), then
*trained* by the one epoch loop (``kdlib.loop``).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kdlib.allocator import tune_allocator
from kdlib.claim import Identity, claim, finished_run, identify
from kdlib.config import TrainConfig
from kdlib.data import (
    CifarData,
    DeviceLoader,
    load_dataset,
    split_validation,
    subset_indices,
)
from kdlib.data.classic import ClassicLoader
from kdlib.data.split import split_sizes
from kdlib.errors import KdlibError
from kdlib.evaluate import default_eval_batch_size
from kdlib.loop import EpochLoop, read_state, seed_everything, set_deterministic
from kdlib.methods import Distiller, TrainContext, create_method
from kdlib.models import create_model, load_weights
from kdlib.plan import PlannedRun, TeacherSource, plan
from kdlib.runs import RunRecord, run_status
from kdlib.speed import Speed, make_optimizer, resolve_speed
from kdlib.tensorboard import ScalarWriter

# Called after every epoch of a run that trains, with its record and history so far (the
# run notebook redraws its curve with it).
EpochCallback = Callable[[RunRecord, list[dict[str, Any]]], None]


@dataclass(frozen=True)
class RunResult:
    """A planned run and its run directory; ``reused``: it had finished before."""

    planned: PlannedRun
    path: Path
    reused: bool


def run_method(
    cfg: TrainConfig, progress: bool = True, on_epoch: EpochCallback | None = None
) -> list[Path]:
    """Train the request ``cfg`` (prerequisites first) and return the run directories of
    the runs it asked for: one, or every cell of a grid method (kdparam, allkd)."""
    results = run_plan(plan(cfg), progress, on_epoch)
    return [r.path for r in results if r.planned.role == "run"]


def run_training(cfg: TrainConfig, progress: bool = True, resume: str | Path | None = None) -> Path:
    """Train the one run ``cfg`` asks for (and whatever its plan needs first) and return
    its run directory; ``resume`` names an incomplete run directory to continue."""
    planned = plan(cfg)
    if [p.role for p in planned].count("run") != 1:
        raise KdlibError(
            f"method {cfg.method!r} is a grid of runs: train it with `kdlib train` "
            "(kdlib.train.run_method), which runs every cell"
        )
    *before, asked = pending(planned)
    for p in before:
        train_planned(p, progress)
    return train_planned(asked, progress, resume).path


def pending(planned: list[PlannedRun]) -> list[PlannedRun]:
    """``planned`` without the prerequisites no unfinished run needs any more: a teacher
    or assistant whose record is gone is not trained again for a run that finished."""
    needed: set[str] = set()
    keep: list[PlannedRun] = []
    for p in reversed(planned):
        if p.role != "run" and p.key() not in needed:
            continue
        keep.append(p)
        if finished_run(p.cfg) is None:
            needed.update(p.needs())
    return keep[::-1]


def run_plan(
    planned: list[PlannedRun], progress: bool = True, on_epoch: EpochCallback | None = None
) -> list[RunResult]:
    """Train each planned run that is still needed, in order (a finished one is only
    looked up)."""
    return [train_planned(p, progress, on_epoch=on_epoch) for p in pending(planned)]


def train_planned(
    planned: PlannedRun,
    progress: bool = True,
    resume: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Claim, build and train one planned run; a finished one is returned as it is.

    Its teachers' runs must have completed (``KdlibError`` otherwise, before anything is
    written). Once the run directory exists, ``metrics.json`` says ``running`` until the
    end, then ``completed``, or ``failed``/``diverged`` with the error.
    """
    cfg = planned.cfg
    if cfg.deterministic:
        set_deterministic()
    identity = identify(cfg)
    done = finished_run(cfg, identity) if resume is None else None
    if done is not None:
        return _reused(planned, done, progress)
    if identity.device.type == "cpu":  # before the data loads; recorded in env.json
        tune_allocator(cfg.cpu_allocator)
    # Everything that can refuse the run is asked before a run directory exists: the
    # teachers' runs, the data (loaded and verified: a corrupt cache leaves nothing).
    teacher_runs = [
        _trained_teacher_run(t) if t.run is not None else None for t in planned.teachers
    ]
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir)
    with claim(cfg, identity, resume) as (record, finished):
        if finished:  # finished by another process meanwhile
            return _reused(planned, record, progress)
        writer = None
        try:
            state, damaged = read_state(record, progress)
            built = build(planned, identity, data, teacher_runs, resuming=state is not None)
            if state is None or not record.config().get("method_record"):
                record.update_config(
                    teacher_run=built.teacher_run, method_record=built.method_record
                )
            if cfg.tensorboard:
                writer = ScalarWriter(cfg.tensorboard, record.run_id)
        except BaseException as e:
            _record_failure(record, e)
            raise

        def after_epoch(rec: RunRecord, history: list[dict[str, Any]]) -> None:
            if on_epoch is not None:
                on_epoch(rec, history)
            if writer is not None:
                writer(rec, history)

        loop = EpochLoop(
            cfg,
            record,
            built.distiller,
            built.optimizer,
            built.scheduler,
            identity.device,
            progress,
            identity.speed,
            extra={"damaged_checkpoints": damaged} if damaged else None,
            on_epoch=after_epoch,
        )
        try:
            loop.run(built.train, built.val, built.test, state)
        finally:
            if writer is not None:
                writer.close()
    return RunResult(planned, record.path, reused=False)


def _reused(planned: PlannedRun, record: RunRecord, progress: bool) -> RunResult:
    if progress:
        tqdm.write(f"{record.run_id}: already {run_status(record)}, not run again")
    return RunResult(planned, record.path, reused=True)


def _record_failure(record: RunRecord, error: BaseException) -> None:
    """A run that failed before its epochs began (building it) says so, with the error,
    like the epoch loop records a failure."""
    try:
        metrics = record.metrics()
    except (OSError, ValueError):
        metrics = {}
    record.write_metrics(
        {
            **metrics,
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
    )


# ------------------------------------------------------------------------------- build


@dataclass
class BuiltRun:
    """Everything a run trains with, built on its device."""

    distiller: Distiller
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train: Any
    val: DeviceLoader | None
    test: DeviceLoader
    teacher_run: str | list[str | None] | None
    method_record: dict[str, Any]


def build(
    planned: PlannedRun,
    identity: Identity,
    data: CifarData,
    teacher_runs: list[Path | None],
    resuming: bool = False,
) -> BuiltRun:
    """Make the loaders of ``data``, provide the teachers (``teacher_runs``: the run that
    trained each, or None for a checkpoint), build the method; the built run must be the
    one its identity describes."""
    cfg, device, speed = planned.cfg, identity.device, identity.speed
    train, val, test = make_loaders(cfg, data, device, speed)
    teacher, teacher_run = build_teachers(planned, teacher_runs, data.num_classes, device)
    distiller, optimizer, scheduler = build_method(
        cfg, data, device, speed, teacher, train, resuming=resuming
    )
    built = {
        "dataset_fingerprint": data.fingerprint,
        "method_hparams": distiller.hparams,
        "train_size": train.num_examples,
        "val_size_actual": 0 if val is None else val.num_examples,
        "test_size": test.num_examples,
    }
    config = identity.config
    if any(config[k] != v for k, v in built.items()):  # the identity must describe the run
        raise RuntimeError(f"run identity disagrees with the built run: {built} vs {config}")
    return BuiltRun(
        distiller, optimizer, scheduler, train, val, test, teacher_run, distiller.record()
    )


def build_teachers(
    planned: PlannedRun, teacher_runs: list[Path | None], num_classes: int, device: torch.device
) -> tuple[nn.Module | None, str | list[str | None] | None]:
    """The run's teacher(s) on ``device`` and the run(s) that trained them, if any.

    Each comes from its checkpoint or from the completed run the plan trained first (a
    teacher trained first, TAKD's assistant: ``teacher_runs``). Several come back as an
    ``nn.ModuleList``.
    """
    teachers: list[nn.Module] = []
    runs: list[str | None] = []
    for source, run_dir in zip(planned.teachers, teacher_runs, strict=True):
        model = create_model(source.model, num_classes)
        if run_dir is None:
            load_weights(model, source.checkpoint)
            runs.append(None)
        else:
            load_weights(model, RunRecord(run_dir).metrics()["weights_path"])
            runs.append(str(run_dir))
        teachers.append(model.to(device))
    if not teachers:
        return None, None
    if len(teachers) == 1:
        return teachers[0], runs[0]
    return nn.ModuleList(teachers), (runs if any(runs) else None)


def _trained_teacher_run(source: TeacherSource) -> Path:
    """The completed run that trained ``source``'s model (planned before this run)."""
    assert source.run is not None
    record = finished_run(source.run)
    if record is None or run_status(record) != "completed":
        state = "has not finished" if record is None else f"is {run_status(record)}"
        raise KdlibError(
            f"the run that trains teacher {source.model} ({source.run.method}, "
            f"{source.run.epochs} epochs, seed {source.run.seed}) {state}: train the whole "
            "plan (kdlib train does), it comes first"
        )
    return record.path


def make_loaders(
    cfg: TrainConfig, data: CifarData, device: torch.device, speed: Speed | None = None
) -> tuple[Any, DeviceLoader | None, DeviceLoader]:
    """Train (augmented, shuffled), validation and test loaders.

    The fast loop keeps every split resident on ``device``; the classic loop trains from
    a DataLoader with per-image Pillow augmentation (evaluation stays on the device).
    """
    speed = speed or resolve_speed(cfg, device)
    split_sizes(cfg, len(data.train_labels), len(data.test_labels))  # refuses bad limits
    train_idx, val_idx = split_validation(data.train_labels, cfg.val_size)
    if cfg.train_limit is not None:
        train_idx = train_idx[subset_indices(data.train_labels[train_idx], cfg.train_limit)]
    common: dict[str, Any] = {"mean": data.mean, "std": data.std, "device": device}
    eval_bs = cfg.eval_batch_size or default_eval_batch_size(device)
    if speed.loop == "classic":
        train: Any = ClassicLoader(
            data.train_images[train_idx],
            data.train_labels[train_idx],
            cfg.batch_size,
            shuffle=True,
            augment=cfg.augment,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            **common,
        )
    else:
        train = DeviceLoader(
            data.train_images[train_idx],
            data.train_labels[train_idx],
            cfg.batch_size,
            shuffle=True,
            augment=cfg.augment,
            seed=cfg.seed,
            channels_last=speed.channels_last,
            **common,
        )
    common["channels_last"] = speed.channels_last
    val = None
    if len(val_idx):
        val = DeviceLoader(
            data.train_images[val_idx],
            data.train_labels[val_idx],
            eval_bs,
            shuffle=False,
            augment=False,
            **common,
        )
    test_idx = np.arange(len(data.test_labels))
    if cfg.test_limit is not None:
        test_idx = subset_indices(data.test_labels, cfg.test_limit)
    test = DeviceLoader(
        data.test_images[test_idx],
        data.test_labels[test_idx],
        eval_bs,
        shuffle=False,
        augment=False,
        **common,
    )
    return train, val, test


def build_method(
    cfg: TrainConfig,
    data: CifarData,
    device: torch.device,
    speed: Speed,
    teacher: nn.Module | None,
    train_loader: Any,
    resuming: bool = False,
) -> tuple[Distiller, torch.optim.Optimizer, Any]:
    """The seeded student wrapped in its method (set up on the device), its optimizer and
    lr schedule: everything a run trains, shared by ``build`` and ``kdlib bench``.
    ``resuming``: a training checkpoint will restore the state (an init phase is skipped)."""
    seed_everything(cfg.seed)  # the student's init does not depend on how the teacher came
    student = create_model(cfg.student, data.num_classes)
    distiller = create_method(cfg.method, student, teacher, **cfg.method_params).to(device)
    if speed.channels_last:
        distiller.to(memory_format=torch.channels_last)
    distiller.setup(
        TrainContext(
            epochs=cfg.epochs,
            steps_per_epoch=len(train_loader),
            num_classes=data.num_classes,
            mean=torch.as_tensor(data.mean, device=device),
            std=torch.as_tensor(data.std, device=device),
            device=device,
            seed=cfg.seed,
            train_loader=train_loader,
            resuming=resuming,
        )
    )
    optimizer = make_optimizer(distiller.trainable_parameters(), cfg, speed)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, cfg.milestone_epochs(), gamma=cfg.lr_gamma
    )
    return distiller, optimizer, scheduler
