"""The epochs of one run: train, evaluate, record, checkpoint (the loop every method plugs into).

It follows the seed paper's protocol (see ``TrainConfig``), keeps the whole dataset on
the device (``DeviceLoader``), accumulates statistics on the device so nothing waits
for the host inside an epoch, evaluates on validation and test after every epoch, and
records everything in the run's directory (``kdlib.runs``). Which run, with what data,
teacher and method, ``kdlib.train`` decides before it gets here.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kdlib import faults
from kdlib.config import TrainConfig
from kdlib.data import DeviceLoader
from kdlib.environment import machine_kind
from kdlib.evaluate import evaluate
from kdlib.methods import Distiller
from kdlib.models import save_weights
from kdlib.resume import (
    DamagedCheckpoint,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    set_aside,
)
from kdlib.runs import HISTORY, RunRecord, RunsWarning
from kdlib.speed import Speed, autocast

CHECKPOINT = "checkpoint.pt"  # a run's training checkpoint, in its folder of the cache


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def set_deterministic() -> None:
    """Ask torch for deterministic kernels (needed for bit-exact resumes on a GPU)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


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


def read_state(record: RunRecord, progress: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """The run's training checkpoint (None: start from scratch) and the paths of damaged
    checkpoints set aside on the way. Stale temporaries of a write killed half-way are
    removed first. Called under the run's lock, before the run is built, so a method
    knows whether it resumes (AB does not repeat its initialisation then)."""
    state_dir = Path(record.config()["state_dir"])
    removed = remove_stale_temporaries(record.path, state_dir)
    if removed and progress:
        tqdm.write(f"{record.run_id}: removed {removed} half-written file(s)")
    path = state_dir / CHECKPOINT
    try:
        return load_checkpoint(path), []
    except DamagedCheckpoint as e:  # kept aside; the run starts over, saying so
        kept = set_aside(path)
        warnings.warn(
            f"{e}; moved to {kept.name}, restarting the run from scratch", RunsWarning, stacklevel=2
        )
        record.write_history([])
        return None, [str(kept)]


class EpochLoop:
    """The epochs of one run, its checkpoints and its record."""

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
        extra: dict[str, Any] | None = None,
        on_epoch: Callable[[RunRecord, list[dict[str, Any]]], None] | None = None,
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
        self.checkpoint_path = self.state_dir / CHECKPOINT
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = dict(extra or {})  # facts for metrics.json
        self.on_epoch = on_epoch
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
        state: dict[str, Any] | None = None,
    ) -> None:
        """Train from ``state`` (a training checkpoint, ``read_state``) or from scratch."""
        cfg, distiller = self.cfg, self.distiller
        student, teacher = distiller.student, distiller.teacher
        first_epoch = 1
        try:
            if state is not None:
                restore_checkpoint(
                    state,
                    distiller=distiller,
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                    loader_generator=train_loader.generator,
                )
                self.history, self.extra = state["history"], {**state["extra"], **self.extra}
                self.start = time.time() - state["wall_seconds"]
                first_epoch = state["epoch"] + 1
                self.extra.setdefault("resumed_at_epochs", []).append(state["epoch"])
                # where it continued, and from which point of its wall time on: its cost
                # is each segment's time x that segment's threads (the compute table)
                self.extra.setdefault("resumed_on", []).append(
                    {**machine_kind(self.device), "from_wall_seconds": state["wall_seconds"]}
                )
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
        if self.on_epoch is not None:
            self.on_epoch(self.record, list(self.history))
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
