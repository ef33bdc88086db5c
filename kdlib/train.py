"""The one training loop every method plugs into.

It follows the seed paper's protocol (see ``TrainConfig``), keeps the whole dataset on
the device (``DeviceLoader``), accumulates statistics on the device so nothing waits
for the host inside an epoch, evaluates on validation and test after every epoch, and
records everything in a run directory (``kdlib.runs``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kdlib import faults
from kdlib.config import TrainConfig
from kdlib.data import (
    CifarData,
    DeviceLoader,
    cached_meta,
    load_dataset,
    split_validation,
    subset_indices,
)
from kdlib.environment import environment_info, resolve_device
from kdlib.errors import KdlibError
from kdlib.evaluate import default_eval_batch_size, evaluate
from kdlib.io import (
    UnreadableRecord,
    claim_dir,
    ensure_writable_dir,
    file_sha256,
    read_json_object,
)
from kdlib.locks import run_lock
from kdlib.methods import (
    Distiller,
    GridMethod,
    TrainContext,
    create_method,
    method_class,
    resolve_params,
)
from kdlib.models import create_model, load_weights, save_weights
from kdlib.paths import weights_root
from kdlib.resume import (
    DamagedCheckpoint,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    set_aside,
)
from kdlib.runs import CONFIG, HISTORY, RunRecord, config_hash, identity_keys, new_run_id
from kdlib.speed import Speed, autocast, make_optimizer, resolve_speed, speed_reason


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_sizes(cfg: TrainConfig, n_train: int, n_test: int) -> tuple[int, int, int]:
    """Images that train, validate and test a run, from the split sizes alone; limits
    above what a split holds are refused (one rule for both limits)."""
    if cfg.val_size >= n_train:
        raise KdlibError(
            f"--val-size={cfg.val_size}: leaves no training data, the training set has "
            f"{n_train} images; use a smaller --val-size"
        )
    remain = n_train - cfg.val_size
    if cfg.train_limit is not None and cfg.train_limit > remain:
        raise KdlibError(
            f"--train-limit={cfg.train_limit}: only {remain} training images "
            f"remain after the {cfg.val_size}-image validation split"
        )
    if cfg.test_limit is not None and cfg.test_limit > n_test:
        raise KdlibError(f"--test-limit={cfg.test_limit}: the test split has only {n_test} images")
    train = remain if cfg.train_limit is None else cfg.train_limit
    test = n_test if cfg.test_limit is None else cfg.test_limit
    return train, cfg.val_size, test


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
        from kdlib.data.classic import ClassicLoader

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


def train_one_epoch(
    distiller: Distiller,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    progress: tqdm | None = None,
    epoch: int = 0,
    forward: Any = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """One pass over ``loader``: mean total loss, mean of each term, accuracy, and the
    first step whose loss was not finite (None if all were).

    ``forward`` is the (possibly compiled) distiller; ``autocast_dtype`` bf16 or None.
    Nothing here waits for the device, except the progress bar's loss on a CPU.
    """
    distiller.train()
    forward = distiller if forward is None else forward
    device = next(distiller.student.parameters()).device
    total = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    terms: dict[str, torch.Tensor] = {}
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    n = 0
    for step, (x, y) in enumerate(loader):
        if faults.enabled():
            faults.fault_point(f"step:{epoch}:{step}")
        with autocast(device, autocast_dtype):
            logits, losses = forward(x, y)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bs = y.shape[0]
        n += bs
        bad = ~torch.isfinite(loss.detach()) & (first_bad < 0)
        first_bad = torch.where(bad, step, first_bad)
        total += loss.detach() * bs
        correct += (logits.detach().argmax(1) == y).sum()
        for k, v in losses.items():
            terms[k] = terms.get(k, 0) + v.detach() * bs
        if progress is not None:
            progress.update(1)
            if step % 25 == 0 and device.type == "cpu":  # a GPU is never made to wait
                progress.set_postfix(loss=f"{loss.item():.3f}")
    bad_step = int(first_bad.item())
    out: dict[str, Any] = {
        "train_loss": total.item() / n,
        "train_acc": 100.0 * correct.item() / n,
        "first_nonfinite_step": None if bad_step < 0 else bad_step,
    }
    out.update({f"loss_{k}": float(v.item()) / n for k, v in terms.items()})
    return out


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers of a run from its per-epoch history (accuracies in percent).

    ``test_acc_at_best_val`` is the honest number (model chosen on validation);
    ``best_test_acc`` is the paper's way of reporting, kept only for comparison.
    """
    if not history:
        return {"epochs_completed": 0}
    last = history[-1]
    out: dict[str, Any] = {
        "epochs_completed": last["epoch"],
        "final_test_acc": last["test_acc"],
        "final_val_acc": last.get("val_acc"),
        "final_train_loss": last["train_loss"],
    }
    best_test = max(history, key=lambda r: r["test_acc"])
    out.update(best_test_acc=best_test["test_acc"], best_test_epoch=best_test["epoch"])
    if last.get("val_acc") is not None:
        best_val = max(history, key=lambda r: r["val_acc"])
        out.update(
            best_val_acc=best_val["val_acc"],
            best_val_epoch=best_val["epoch"],
            test_acc_at_best_val=best_val["test_acc"],
        )
    else:
        out.update(best_val_acc=None, best_val_epoch=None, test_acc_at_best_val=None)
    out["train_seconds_per_epoch"] = sum(r["seconds"] for r in history) / len(history)
    return out


def _trained_model(run_dir: Path, name: str, num_classes: int) -> nn.Module:
    model = create_model(name, num_classes)
    load_weights(model, RunRecord(run_dir).metrics()["weights_path"])
    return model


def build_teacher(
    cfg: TrainConfig, num_classes: int, device: torch.device, progress: bool
) -> tuple[nn.Module | None, str | list[str | None] | None]:
    """The teacher(s) and the run(s) that produced them, if any.

    A method's ``teacher_stage`` (TAKD's assistant) is trained first and becomes the
    teacher; otherwise each teacher comes from its checkpoint, or is trained first by
    this same loop (nokd). Several teachers come back as an ``nn.ModuleList``.
    """
    cls = method_class(cfg.method)
    stage = cls.teacher_stage(cfg, resolve_params(cls, cfg.method_params))
    if stage is not None:
        stage_dir = run_training(stage, progress=progress)
        return _trained_model(stage_dir, stage.student, num_classes).to(device), str(stage_dir)
    names, checkpoints = cfg.teacher_names(), cfg.teacher_checkpoints()
    teachers: list[nn.Module] = []
    runs: list[str | None] = []
    for i, name in enumerate(names):
        if checkpoints and checkpoints[i]:
            teacher = create_model(name, num_classes)
            load_weights(teacher, checkpoints[i])
            runs.append(None)
        else:
            teacher_cfg = replace(
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
            teacher_dir = run_training(teacher_cfg, progress=progress)
            teacher = _trained_model(teacher_dir, name, num_classes)
            runs.append(str(teacher_dir))
        teachers.append(teacher.to(device))
    if not teachers:
        return None, None
    if len(teachers) == 1:
        return teachers[0], runs[0]
    return nn.ModuleList(teachers), (runs if any(runs) else None)


def without_unused_teacher(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` without its teacher settings when the method uses no teacher (nokd,
    uda_nokd): such a run neither loads nor evaluates one, and the teacher is no part of
    its identity or run id (a sweep row with a teacher in its base gives the same run)."""
    cls = method_class(cfg.method)
    if issubclass(cls, GridMethod) or cls.needs_teacher or not cfg.teacher:
        return cfg
    return replace(cfg, teacher=None, teacher_checkpoint=None, teacher_epochs=None)


def run_method(cfg: TrainConfig, progress: bool = True) -> list[Path]:
    """Run ``cfg``: one run, or every run of a grid method (kdparam, allkd)."""
    cls = method_class(cfg.method)
    if issubclass(cls, GridMethod):
        cfg.validate()
        return [
            run_training(run, progress=progress)
            for run in cls.expand(cfg, resolve_params(cls, cfg.method_params))
        ]
    return [run_training(cfg, progress=progress)]


# A run with one of these statuses is a result: the same configuration is not run again.
FINISHED = ("completed", "diverged")


def find_run(runs_dir: str | Path, config_hash: str) -> RunRecord | None:
    """The run below ``runs_dir`` with this configuration: a finished one first (completed,
    or diverged: the same settings diverge again), else the latest incomplete one (to
    resume), else None."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    matches = []
    for config_path in sorted(runs_dir.glob(f"*/{CONFIG}")):
        try:
            config = read_json_object(config_path)
        except UnreadableRecord as e:
            _skip_unreadable(e)
            continue
        if config.get("config_hash") == config_hash:
            matches.append(RunRecord(config_path.parent))
    for rec in matches:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if rec.metrics().get("status") in FINISHED:
                return rec
    return matches[-1] if matches else None


def _skip_unreadable(error: UnreadableRecord) -> None:
    """A run directory that cannot be read never stops another configuration."""
    warnings.warn(f"skipping an unreadable run record: {error}", RunsWarning, stacklevel=3)


class RunsWarning(UserWarning):
    """A run directory below a runs folder could not be read and was skipped."""


def set_deterministic() -> None:
    """Ask torch for deterministic kernels (needed for bit-exact resumes on a GPU)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def build_method(
    cfg: TrainConfig,
    data: CifarData,
    device: torch.device,
    speed: Speed,
    teacher: nn.Module | None,
    train_loader: Any,
) -> tuple[Distiller, torch.optim.Optimizer, Any]:
    """The seeded student wrapped in its method (set up on the device), its optimizer and
    lr schedule: everything a run trains, shared by ``run_training`` and ``kdlib bench``."""
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
        )
    )
    optimizer = make_optimizer(distiller.trainable_parameters(), cfg, speed)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, cfg.milestone_epochs(), gamma=cfg.lr_gamma
    )
    return distiller, optimizer, scheduler


def _report_run_dir(path: Path, reused: bool) -> None:
    """Append ``ran|reused <run dir>`` to ``$KDLIB_RUN_LOG`` (see ``collect_runs``)."""
    log = os.environ.get("KDLIB_RUN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{'reused' if reused else 'ran'}\t{Path(path).resolve()}\n")


@contextlib.contextmanager
def collect_runs() -> Iterator[list[tuple[str, Path]]]:
    """Collect ``(ran|reused, run_dir)`` of every run started inside the block, in this
    process or in child processes such as a notebook kernel, even if the block fails."""
    import tempfile

    found: list[tuple[str, Path]] = []
    old = os.environ.get("KDLIB_RUN_LOG")
    with tempfile.TemporaryDirectory(prefix="kdlib-runlog-") as tmp:
        log = Path(tmp) / "runs.log"
        os.environ["KDLIB_RUN_LOG"] = str(log)
        try:
            yield found
        finally:
            if old is None:
                os.environ.pop("KDLIB_RUN_LOG", None)
            else:
                os.environ["KDLIB_RUN_LOG"] = old
            if log.exists():
                text = log.read_text(encoding="utf-8")
                for line in text.splitlines():
                    kind, _, path = line.partition("\t")
                    found.append((kind, Path(path)))
                if old is not None:  # an enclosing collect_runs sees these runs too
                    with open(old, "a", encoding="utf-8") as f:
                        f.write(text)


def run_training(cfg: TrainConfig, progress: bool = True, resume: str | Path | None = None) -> Path:
    """Train one run as configured and return its run directory.

    Bad settings, missing data or a mismatching checkpoint raise ``KdlibError`` before
    the run directory is created. A run with the same configuration that already
    completed (or diverged) is returned as it is; an incomplete one (killed, failed) is
    resumed from its last checkpoint (``resume`` names the run directory explicitly and
    insists that its settings match). Once the directory exists, ``metrics.json`` says
    ``running`` until the end, then ``completed``, or ``failed``/``diverged`` with the error.
    """
    cfg.validate()
    cfg = without_unused_teacher(cfg)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        set_deterministic()
    speed = resolve_speed(cfg, device)
    meta = cached_meta(cfg.dataset, cfg.cache_dir)
    if resume is None and meta is not None:
        # Every input of the identity is known before any data is loaded or any teacher
        # or method is built (AB's init epochs, a teacher trained first): a finished run
        # never changes, so it is found without the lock (a read-only runs folder still
        # answers with it) and returned at once.
        n_train, n_test = meta["counts"]["train"], meta["counts"]["test"]
        ident = run_identity(
            cfg, device, speed, meta["fingerprint"], len(meta["classes"]), n_train, n_test
        )
        record = find_run(cfg.runs_dir, ident["config_hash"])
        if record is not None and _status(record) in FINISHED:
            return _reuse(record, progress)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir)
    config = run_identity(
        cfg,
        device,
        speed,
        data.fingerprint,
        data.num_classes,
        len(data.train_labels),
        len(data.test_labels),
    )
    train_loader, val_loader, test_loader = make_loaders(cfg, data, device, speed)
    teacher, teacher_run = build_teacher(cfg, data.num_classes, device, progress)
    distiller, optimizer, scheduler = build_method(cfg, data, device, speed, teacher, train_loader)
    config.update(teacher_run=teacher_run, method_record=distiller.record())
    built = {
        "method_hparams": distiller.hparams,
        "train_size": train_loader.num_examples,
        "val_size_actual": 0 if val_loader is None else val_loader.num_examples,
        "test_size": test_loader.num_examples,
    }
    if any(config[k] != v for k, v in built.items()):  # the identity must describe the run
        raise RuntimeError(f"run identity disagrees with the built run: {built} vs {config}")
    # Training writes its record and its checkpoints: both folders must take files.
    ensure_writable_dir(cfg.runs_dir, "--runs-dir")
    ensure_writable_dir(weights_root(cfg.cache_dir), "--cache-dir (training checkpoints)")
    with run_lock(cfg.runs_dir, config["config_hash"]):
        record = find_run(cfg.runs_dir, config["config_hash"])
        if resume is not None and (
            record is None or record.path.resolve() != Path(resume).resolve()
        ):
            recorded = RunRecord(resume).config()
            differ = [
                k
                for k in sorted(config)
                if k in identity_keys(config) and config[k] != recorded.get(k)
            ]
            raise KdlibError(
                f"cannot resume {resume}: its recorded settings differ from what they give "
                f"now ({', '.join(differ[:5]) or 'config hash'}); start a new run instead"
            )
        if record is not None and _status(record) in FINISHED:
            return _reuse(record, progress)
        if record is None:
            run_id = new_run_id(config)
            state_dir = claim_dir(weights_root(cfg.cache_dir), run_id)
            config["state_dir"] = str(state_dir)
            record = RunRecord.create(cfg.runs_dir, run_id, config, environment_info(device))
        _report_run_dir(record.path, reused=False)
        loop = _Loop(cfg, record, distiller, optimizer, scheduler, device, progress, speed)
        loop.run(train_loader, val_loader, test_loader)
    return record.path


def run_identity(
    cfg: TrainConfig,
    device: torch.device,
    speed: Speed,
    fingerprint: str,
    num_classes: int,
    n_train: int,
    n_test: int,
) -> dict[str, Any]:
    """The run's config record, ``config_hash`` included, from its settings and the
    dataset's fingerprint and sizes alone. What only building the run can tell
    (``teacher_run``, ``method_record``) is no part of the identity and is left None."""
    cls = method_class(cfg.method)
    train_size, val_size, test_size = split_sizes(cfg, n_train, n_test)
    config = cfg.to_dict()
    config.update(
        method_hparams=resolve_params(cls, cfg.method_params),
        milestone_epochs=cfg.milestone_epochs(),
        teacher_run=None,
        method_record=None,
        speed=speed.to_dict(),
        speed_reason=speed_reason(cfg, device, speed),
        dataset_fingerprint=fingerprint,
        num_classes=num_classes,
        train_size=train_size,
        val_size_actual=val_size,
        test_size=test_size,
    )
    if cls.revision:  # what the method computes changed (a fixed bug)
        config["method_revision"] = cls.revision
    if cfg.teacher_checkpoints():  # the teacher counts by content, not by path spelling
        config["teacher_checkpoint_sha256"] = [
            file_sha256(c) if c else None for c in cfg.teacher_checkpoints()
        ]
    config["config_hash"] = config_hash(config)
    return config


def _status(record: RunRecord) -> str | None:
    """A run's recorded status; None when its metrics cannot be read (not a result, so
    the run is resumed)."""
    try:
        return record.metrics().get("status")
    except (OSError, ValueError):
        return None


def _reuse(record: RunRecord, progress: bool) -> Path:
    _report_run_dir(record.path, reused=True)
    if progress:
        tqdm.write(f"{record.run_id}: already {_status(record)}, not run again")
    return record.path


def remove_stale_temporaries(*folders: Path) -> int:
    """Remove the temporary files an atomic write killed half-way left (``.<name>.*.tmp``).

    Called when a run starts or resumes, under its lock: no other process writes there.
    """
    removed = 0
    for folder in folders:
        for tmp in Path(folder).glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    return removed


class _Loop:
    """The epochs of one run, its checkpoints and its record (split out of run_training)."""

    def __init__(
        self,
        cfg: TrainConfig,
        record: RunRecord,
        distiller: Distiller,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        device: torch.device,
        progress: bool,
        speed: Speed,
    ):
        self.cfg, self.record, self.distiller, self.speed = cfg, record, distiller, speed
        self.forward = torch.compile(distiller) if speed.compile else distiller
        self.optimizer, self.scheduler, self.device, self.progress = (
            optimizer,
            scheduler,
            device,
            progress,
        )
        # the folder in the cache this run claimed when it was created (never shared)
        self.state_dir = Path(record.config()["state_dir"])
        self.checkpoint_path = self.state_dir / "checkpoint.pt"
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.start = time.time()

    def _eval(self, model: nn.Module, loader: DeviceLoader, exact: bool = False) -> float:
        """Accuracy at the run's precision; ``exact``: in float32 (a teacher's accuracy is
        a fact about its checkpoint, the same as ``kdlib eval`` gives)."""
        return evaluate(model, loader, None if exact else self.speed.autocast_dtype)["accuracy"]

    def _metrics(self, status: str, **more: Any) -> None:
        self.record.write_metrics(
            {
                **summarize(self.history),
                **self.extra,
                "status": status,
                "wall_seconds": time.time() - self.start,
                "pid": os.getpid(),  # which process trained it (sweeps report reuse)
                "host": socket.gethostname(),
                **more,
            }
        )

    def run(
        self,
        train_loader: DeviceLoader,
        val_loader: DeviceLoader | None,
        test_loader: DeviceLoader,
    ) -> None:
        cfg, distiller = self.cfg, self.distiller
        student, teacher = distiller.student, distiller.teacher
        first_epoch = 1
        removed = remove_stale_temporaries(self.record.path, self.state_dir)
        if removed and self.progress:
            tqdm.write(f"{self.record.run_id}: removed {removed} half-written file(s)")
        try:
            try:
                state = load_checkpoint(self.checkpoint_path)
            except DamagedCheckpoint as e:  # kept aside; the run starts over, saying so
                kept = set_aside(self.checkpoint_path)
                warnings.warn(
                    f"{e}; moved to {kept.name}, restarting the run from scratch",
                    RunsWarning,
                    stacklevel=2,
                )
                self.extra.setdefault("damaged_checkpoints", []).append(str(kept))
                self.record.write_history([])
                state = None
            if state is not None:
                restore_checkpoint(
                    state,
                    distiller=distiller,
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                    loader_generator=train_loader.generator,
                )
                self.history, self.extra = state["history"], state["extra"]
                self.start = time.time() - state["wall_seconds"]
                first_epoch = state["epoch"] + 1
                self.extra.setdefault("resumed_at_epochs", []).append(state["epoch"])
                # killed after the last checkpoint but before history.csv caught up
                self.record.write_history(self.history)
            else:
                # A run killed before its first checkpoint, or whose checkpoint is gone (a
                # new machine), starts over: its old rows must not outlive the restart.
                self.history = []
                if (self.record.path / HISTORY).exists():
                    self.record.write_history([])
                if isinstance(teacher, nn.ModuleList):
                    self.extra["teacher_test_acc"] = [
                        self._eval(t, test_loader, exact=True) for t in teacher
                    ]
                elif teacher is not None:
                    self.extra["teacher_test_acc"] = self._eval(teacher, test_loader, exact=True)
            self._metrics("running")
            for epoch in range(first_epoch, cfg.epochs + 1):
                if not self._epoch(epoch, train_loader, val_loader, test_loader):
                    return
            weights = self.state_dir / "student.pt"
            save_weights(student, weights)
            if cfg.save_weights:
                shutil.copyfile(weights, self.record.path / "student.pt")
            self._metrics("completed", weights_path=str(weights))
        except BaseException as e:
            self._metrics(
                "failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
            )
            raise

    def _epoch(
        self,
        epoch: int,
        train_loader: DeviceLoader,
        val_loader: DeviceLoader | None,
        test_loader: DeviceLoader,
    ) -> bool:
        """Train and evaluate one epoch; False when the run diverged and must stop."""
        cfg, student = self.cfg, self.distiller.student
        lr = self.optimizer.param_groups[0]["lr"]
        self.distiller.on_epoch_start(epoch)
        bar = tqdm(
            total=len(train_loader),
            desc=f"{self.record.run_id} epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        t0 = time.time()
        stats = train_one_epoch(
            self.distiller,
            train_loader,
            self.optimizer,
            bar,
            epoch=epoch,
            forward=self.forward,
            autocast_dtype=self.speed.autocast_dtype,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.time() - t0
        bar.close()
        self.scheduler.step()
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, **stats}
        bad_step = row.pop("first_nonfinite_step")
        if bad_step is not None:
            self._metrics(
                "diverged",
                diverged_epoch=epoch,
                diverged_step=bad_step,
                error=f"non-finite training loss at epoch {epoch}, step {bad_step}",
            )
            return False
        t1 = time.time()
        row["val_acc"] = self._eval(student, val_loader) if val_loader else None
        row["test_acc"] = self._eval(student, test_loader)
        row.update(seconds=seconds, eval_seconds=time.time() - t1)
        self.history.append(row)
        self.record.write_history(self.history)
        self._metrics("running")
        faults.fault_point(f"epoch-end:{epoch}")
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            save_checkpoint(
                self.checkpoint_path,
                epoch=epoch,
                distiller=self.distiller,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                loader_generator=train_loader.generator,
                history=self.history,
                extra=self.extra,
                wall_seconds=time.time() - self.start,
            )
        if self.progress:
            val = row["val_acc"] if row["val_acc"] is not None else float("nan")
            tqdm.write(
                f"epoch {epoch:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                f"train {row['train_acc']:.2f}  val {val:.2f}  "
                f"test {row['test_acc']:.2f}  ({seconds:.1f}s)"
            )
        return True
