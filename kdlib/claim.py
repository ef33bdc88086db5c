"""Claim a run: its identity, a look-up in the registry, its lock, its run directory.

Every input of a run's identity is known before any data is loaded or any teacher or
method is built: the settings, the resolved speed settings, a teacher checkpoint's
content and the prepared dataset's fingerprint and split sizes (from the cache's
``meta.json``). So a finished run is found, and returned, before any of that work: a
finished AB run does not repeat its initialisation epochs, and a look-up loads no data
(where the data set was never prepared, it is prepared first: its fingerprint is part of
the identity).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdlib.config import TrainConfig
from kdlib.data import cached_meta, prepare_dataset
from kdlib.data.split import split_sizes
from kdlib.environment import environment_info, resolve_device
from kdlib.errors import KdlibError
from kdlib.io import claim_dir, ensure_writable_dir, file_sha256
from kdlib.locks import run_lock
from kdlib.methods import method_class, resolve_params
from kdlib.paths import weights_root
from kdlib.runs import (
    FINISHED,
    RunRecord,
    config_hash,
    find_run,
    identity_keys,
    new_run_id,
    run_status,
)
from kdlib.speed import Speed, resolve_speed, speed_reason


@dataclass(frozen=True)
class Identity:
    """A run's identity and where it runs: the config record (``config_hash`` included)
    and the device and speed settings it was computed for."""

    config: dict[str, Any]
    device: torch.device
    speed: Speed

    @property
    def hash(self) -> str:
        return self.config["config_hash"]


def dataset_meta(cfg: TrainConfig) -> dict[str, Any]:
    """The prepared dataset's ``meta.json`` (fingerprint, classes, split counts),
    preparing the cache first if there is none (decoding; no training data is loaded)."""
    meta = cached_meta(cfg.dataset, cfg.cache_dir)
    if meta is None:
        prepare_dataset(cfg.dataset, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir)
        meta = cached_meta(cfg.dataset, cfg.cache_dir)
    if meta is None:  # pragma: no cover - prepare_dataset writes it or raises
        raise KdlibError(f"the {cfg.dataset} cache has no meta.json after preparing it")
    return meta


def identify(cfg: TrainConfig, present: bool = True) -> Identity:
    """The identity of the run ``cfg`` on this host (its device decides ``auto``);
    ``present=False`` identifies a run on a named device this host lacks (a look-up)."""
    device = resolve_device(cfg.device, present)
    speed = resolve_speed(cfg, device)
    meta = dataset_meta(cfg)
    config = run_identity(
        cfg,
        device,
        speed,
        meta["fingerprint"],
        len(meta["classes"]),
        meta["counts"]["train"],
        meta["counts"]["test"],
    )
    return Identity(config, device, speed)


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
    revision = cls.revision_for(config["method_hparams"])
    if revision:  # what the method computes changed (a fixed bug)
        config["method_revision"] = revision
    if cfg.teacher_checkpoints():  # the teacher counts by content, not by path spelling
        config["teacher_checkpoint_sha256"] = [
            file_sha256(c) if c else None for c in cfg.teacher_checkpoints()
        ]
    config["config_hash"] = config_hash(config)
    return config


def finished_run(cfg: TrainConfig, identity: Identity | None = None) -> RunRecord | None:
    """The completed or diverged run of ``cfg`` in its runs folder, or None. A finished
    run never changes, so no lock is needed (a read-only runs folder still answers)."""
    identity = identity or identify(cfg, present=False)
    record = find_run(cfg.runs_dir, identity.hash)
    return record if record is not None and run_status(record) in FINISHED else None


class NotPrepared(KdlibError):
    """The data set has no prepared cache, so a run's identity (which holds its
    fingerprint) cannot be computed without preparing it."""


def recorded_run(cfg: TrainConfig) -> RunRecord | None:
    """The run of ``cfg`` in its runs folder as :func:`find_run` picks it (a finished one,
    else the latest unfinished one), or None; ``NotPrepared`` where the data set has no
    prepared cache. Prepares and loads nothing, so listing a sweep's state stays quick."""
    if cached_meta(cfg.dataset, cfg.cache_dir) is None:
        where = "".join(
            f" --{flag} {value}"
            for flag, value in (("data-dir", cfg.data_dir), ("cache-dir", cfg.cache_dir))
            if value
        )
        raise NotPrepared(
            f"{cfg.dataset} has no prepared cache in {cfg.cache_dir or 'the default cache'}: "
            f"run `kdlib data prepare --dataset {cfg.dataset}{where}` to see which runs are done"
        )
    return find_run(cfg.runs_dir, identify(cfg, present=False).hash)


@contextlib.contextmanager
def claim(
    cfg: TrainConfig, identity: Identity, resume: str | Path | None = None
) -> Iterator[tuple[RunRecord, bool]]:
    """``(record, finished)`` of the run ``cfg``, holding its lock while the block runs.

    The lock is taken (``RunLocked`` if another process holds it); a run of this
    configuration that finished meanwhile is given back as it is (``finished`` True),
    else the latest incomplete one to resume, or a new run directory is created
    (``running``, with a folder of its own in the cache for checkpoints). ``resume`` names
    the run directory explicitly and insists that its recorded settings give this
    identity. (``finished_run`` is the look-up without the lock, done first.)
    """
    # Training writes its record and its checkpoints: both folders must take files.
    ensure_writable_dir(cfg.runs_dir, "--runs-dir")
    ensure_writable_dir(weights_root(cfg.cache_dir), "--cache-dir (training checkpoints)")
    if cfg.tensorboard:
        ensure_writable_dir(cfg.tensorboard, "--tensorboard")
    config = identity.config
    with run_lock(cfg.runs_dir, identity.hash):
        record = find_run(cfg.runs_dir, identity.hash)
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
        if record is not None and run_status(record) in FINISHED:
            yield record, True
            return
        if record is None:
            run_id = new_run_id(config)
            state_dir = claim_dir(weights_root(cfg.cache_dir), run_id)
            record = RunRecord.create(
                cfg.runs_dir,
                run_id,
                {**config, "state_dir": str(state_dir)},
                environment_info(identity.device),
            )
        yield record, False
