"""Run records: the one on-disk format that the CLI, notebooks, sweeps and figures share.

A run is a directory ``runs/<run_id>/`` holding

- ``config.json``: every setting of the run, the dataset fingerprint and the seed;
- ``env.json``: kdlib commit, library versions, device name;
- ``history.csv``: one row per epoch (lr, losses, accuracies, seconds);
- ``metrics.json``: ``status`` (running, completed, failed, diverged) and the summary numbers.

Every file is replaced atomically, so a reader sees either the old or the new version,
and a run that was killed stays visibly ``running``, never ``completed``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib.config import catalogue, default
from kdlib.errors import KdlibError
from kdlib.io import UnreadableRecord, claim_dir, read_json_object, write_json, write_text

CONFIG, ENV, HISTORY, METRICS = "config.json", "env.json", "history.csv", "metrics.json"
STATUSES = ("running", "completed", "failed", "diverged")

# Keys of config.json that are records, not settings, and do not change what a run
# computes: where its state went, what the run itself found out (a method's record, such
# as AB's initialisation time, or the path of a teacher trained first, whose settings are
# already in the hash), and why auto chose its speed settings (the settings are in
# ``speed``). Which *settings* are part of the identity the catalogue says
# (``kdlib.config``): not where files go, nor where it ran; a teacher checkpoint counts
# by its content (``teacher_checkpoint_sha256``), not by how its path is spelled.
RECORD_ONLY = frozenset(
    {"state_dir", "run_id", "method_record", "teacher_run", "config_hash", "speed_reason"}
)


def is_run_config(values: dict[str, Any]) -> bool:
    """Whether a mapping is a run's recorded ``config.json`` (its settings plus what the run
    recorded: its id and hash), not a file of settings written by hand."""
    return "config_hash" in values and "run_id" in values


def identity_keys(config: dict[str, Any]) -> list[str]:
    """The keys of a run's config that define its result (not where it ran or where
    files go); a setting the catalogue marks ``hash_default=False`` counts only when it
    differs from its default."""
    entries = catalogue()
    keys = []
    for key in config:
        entry = entries.get(key)
        if key in RECORD_ONLY or (entry is not None and not entry.identity):
            continue
        if entry is not None and not entry.hash_default and config[key] == default(key):
            continue
        keys.append(key)
    return keys


def _short_hash(obj: dict[str, Any]) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of the settings that define a run's result."""
    return _short_hash({k: config[k] for k in identity_keys(config)})


# Identity keys that change no number, so runs that differ only in them are seeds of one
# setting: the seed, a copy of the final weights in the run directory, and the classic
# loop's worker count (its batches depend on the seed alone: kdlib/data/classic.py). The
# last two stay in config_hash: dropping them there would change every recorded run's
# identity, and a sweep would no longer find its finished runs.
POOLED_ACROSS = ("seed", "save_weights", "num_workers")


def setting_hash(config: dict[str, Any]) -> str:
    """``config_hash`` without the seed (and ``POOLED_ACROSS``): runs with equal setting
    hashes are seeds of one experiment and may be pooled; runs that differ in anything
    else may not."""
    keys = [k for k in identity_keys(config) if k not in POOLED_ACROSS]
    return _short_hash({k: config[k] for k in keys})


def new_run_id(
    config: dict[str, Any], now: dt.datetime | None = None, token: str | None = None
) -> str:
    """``<UTC time>-<method>-<student>[-from-<teacher>]-<dataset>-e<E>-s<seed>-<token>``.

    Readable and sortable by start time. The random ``token`` keeps ids unique when the
    same configuration starts in the same second in two runs directories: a run's
    training checkpoint and weights live in the cache under its id, so two runs must
    never share one.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    token = secrets.token_hex(3) if token is None else token
    parts = [now.strftime("%Y%m%d-%H%M%S"), config["method"], config["student"]]
    if config.get("teacher"):
        parts += ["from", config["teacher"]]
    parts += [config["dataset"], f"e{config['epochs']}", f"s{config['seed']}"]
    if token:
        parts.append(token)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(str(p) for p in parts))


class RunRecord:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(
        cls, runs_dir: str | Path, run_id: str, config: dict[str, Any], env: dict[str, Any]
    ) -> RunRecord:
        """Make a new run directory (a unique one: ``-2``, ``-3``... on a name clash).

        ``config.json`` is written last: a directory without it is not (yet) a run, so a
        process killed half-way never leaves a run that cannot be read or resumed.
        """
        rec = cls(claim_dir(runs_dir, run_id))
        write_json(rec.path / ENV, env)
        rec.write_metrics({"status": "running"})
        write_json(rec.path / CONFIG, {**config, "run_id": rec.run_id})
        return rec

    def update_config(self, **facts: Any) -> None:
        """Add what building the run found out (``teacher_run``, ``method_record``) to its
        config.json; identity keys never change once the run exists."""
        config = self.config()
        clash = [k for k in facts if k in identity_keys({k: None for k in facts})]
        if clash:
            raise ValueError(f"{clash[0]!r} is part of the run's identity; it cannot change")
        write_json(self.path / CONFIG, {**config, **facts})

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        status = metrics.get("status")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        write_json(self.path / METRICS, _finite_or_none(metrics))

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``history.csv`` with all epochs so far (small: one row per epoch)."""
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / HISTORY, buf.getvalue())

    def config(self) -> dict[str, Any]:
        return read_json_object(self.path / CONFIG)

    def env(self) -> dict[str, Any]:
        return read_json_object(self.path / ENV)

    def metrics(self) -> dict[str, Any]:
        return read_json_object(self.path / METRICS)

    def history(self) -> pd.DataFrame:
        p = self.path / HISTORY
        return pd.read_csv(p) if p.exists() else pd.DataFrame()


# ------------------------------------------------------------------------ the registry

# A run with one of these statuses is a result: the same configuration is not run again.
FINISHED = ("completed", "diverged")


class RunsWarning(UserWarning):
    """A run directory below a runs folder could not be read and was skipped."""


def run_status(record: RunRecord) -> str | None:
    """A run's recorded status; None when its metrics cannot be read (not a result, so
    the run is resumed)."""
    try:
        return record.metrics().get("status")
    except (OSError, ValueError):
        return None


def find_run(runs_dir: str | Path, config_hash: str) -> RunRecord | None:
    """The run below ``runs_dir`` with this configuration: a finished one first (completed,
    or diverged: the same settings diverge again), else the latest incomplete one (to
    resume), else None. A run directory that cannot be read is skipped with a
    ``RunsWarning``: it never stops another configuration."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    matches = []
    for config_path in sorted(runs_dir.glob(f"*/{CONFIG}")):
        try:
            config = read_json_object(config_path)
        except UnreadableRecord as e:
            warnings.warn(f"skipping an unreadable run record: {e}", RunsWarning, stacklevel=2)
            continue
        if config.get("config_hash") == config_hash:
            matches.append(RunRecord(config_path.parent))
    for rec in matches:
        if run_status(rec) in FINISHED:
            return rec
    return matches[-1] if matches else None


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(f"{key}.", v))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def find_run_dirs(path: str | Path) -> list[Path]:
    """Run directories below ``path`` (any depth), or ``path`` itself if it is one."""
    path = Path(path)
    if not path.exists():
        raise KdlibError(f"runs directory {path} does not exist")
    if not path.is_dir():
        raise KdlibError(f"{path} is a file, not a runs directory (a folder of run folders)")
    if (path / CONFIG).is_file():
        return [path]
    return sorted(p.parent for p in path.rglob(CONFIG))


def load_runs(path: str | Path = "runs") -> pd.DataFrame:
    """One row per run below ``path``: config, metrics and environment side by side.

    Columns: ``run_id``, ``path``, ``status`` and the config keys as they are
    (``method``, ``student``, ``teacher``, ``dataset``, ``epochs``, ``seed``,
    ``method_params.T``...), ``setting_hash`` (equal for the seeds of one experiment),
    the metrics keys (``final_test_acc``...), and the
    environment under ``env.`` (``env.device_name``...). A run whose metrics are missing
    or unreadable gets status ``incomplete`` or ``unreadable``, never ``completed``.
    """
    rows = []
    for run_dir in find_run_dirs(path):
        rec = RunRecord(run_dir)
        row: dict[str, Any] = {"run_id": run_dir.name, "path": str(run_dir)}
        try:
            config = rec.config()
            row.update(_flatten("", config))
            row.update(run_id=run_dir.name, setting_hash=setting_hash(config))
        except (OSError, ValueError) as e:
            rows.append({**row, "status": "unreadable", "error": str(e)})
            continue
        with contextlib.suppress(OSError, ValueError):
            row.update(_flatten("env.", rec.env()))
        try:
            metrics = rec.metrics()
            row.update(_flatten("", metrics))
        except FileNotFoundError:
            row["status"] = "incomplete"
        except (OSError, ValueError) as e:
            row.update(status="unreadable", error=str(e))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "path", "status"])
    return df
