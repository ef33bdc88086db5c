"""Sweeps: a YAML grid of runs, expanded, validated up front, run one after another.

A sweep file::

    name: paper_table3
    base:                    # TrainConfig settings shared by every run
      dataset: cifar10
      epochs: 200
    grid:                    # the product of these lists; a dict entry sets several fields
      method: [nokd, kd, takd]
      pair:
        - {teacher: resnet26, student: resnet8, teacher_checkpoint: ckpt/resnet26.pth}
      seed: [0, 1, 2]

Re-running a sweep skips runs that already completed and resumes interrupted ones (the
run's configuration hash finds it); a run another process is working on is skipped (its
lock is held), so two sweeps over the same ``runs/`` never run a configuration twice.
A failed or diverged run is recorded as such and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from kdlib.claim import identify, recorded_run
from kdlib.config import TrainConfig, catalogue, settings_where
from kdlib.errors import KdlibError
from kdlib.io import atomic_write, read_yaml
from kdlib.locks import RunLocked, is_locked
from kdlib.loop import CHECKPOINT
from kdlib.methods import method_class
from kdlib.notebook_exec import execute_notebook
from kdlib.plan import PlannedRun, check, describe, plan
from kdlib.resume import load_checkpoint
from kdlib.runs import FINISHED, RunRecord, config_hash, find_run, run_status
from kdlib.speed import worker_threads
from kdlib.train import pending, train_planned

_TOP_KEYS = {"name", "description", "base", "grid", "skip_invalid"}
# A setting whose value is itself a mapping: a dict in its grid list is its value.
_MAPPING_FIELDS = ("method_params",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class Sweep:
    """A named grid of runs."""

    name: str
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    description: str = ""
    # Leave out (and report) combinations a method cannot run, e.g. feature distillation
    # between architectures whose stages do not match, instead of rejecting the file.
    skip_invalid: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any, where: str = "sweep") -> Sweep:
        """Check the file's structure; every run's settings are checked by ``expand``."""
        if not isinstance(data, dict):
            raise KdlibError(f"{where}: expected a mapping with keys name, base, grid")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise KdlibError(
                f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(_TOP_KEYS))}"
            )
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise KdlibError(f"{where}: name must be a non-empty string")
        if not _NAME.fullmatch(name):  # it names folders (Slurm jobs)
            raise KdlibError(
                f"{where}: name={name!r} may hold only letters, digits, '_', '-' and '.'"
            )
        base = data.get("base") or {}
        if not isinstance(base, dict):
            raise KdlibError(f"{where}: base must be a mapping of TrainConfig settings")
        grid = data.get("grid") or {}
        if not isinstance(grid, dict):
            raise KdlibError(f"{where}: grid must be a mapping of setting -> list of values")
        settings = {f.name for f in fields(TrainConfig)}
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise KdlibError(f"{where}: grid.{key} must be a non-empty list")
            if key not in settings and not all(isinstance(v, dict) for v in values):
                raise KdlibError(
                    f"{where}: grid.{key}: unknown setting {key!r} (a key that is not a "
                    "setting must list mappings of settings, e.g. {teacher: resnet26, "
                    "student: resnet8})"
                )
        skip_invalid = data.get("skip_invalid", False)
        if not isinstance(skip_invalid, bool):
            raise KdlibError(f"{where}: skip_invalid must be true or false")
        return cls(
            name=name,
            base=base,
            grid=grid,
            description=data.get("description", ""),
            skip_invalid=skip_invalid,
        )

    def expand(self, overrides: dict[str, Any] | None = None) -> list[TrainConfig]:
        """Every run of the grid as a validated ``TrainConfig`` (``overrides`` win).

        Methods that need no teacher get none, so ``nokd`` in a grid of teacher/student
        pairs is the plain student, run once per student rather than once per pair.
        """
        keys = list(self.grid)
        self.skipped = []
        configs: list[TrainConfig] = []
        seen: set[str] = set()
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = dict(self.base)
            for key, value in zip(keys, combo, strict=True):
                if isinstance(value, dict) and key not in _MAPPING_FIELDS:
                    values.update(value)
                else:
                    values[key] = value
            values.update(overrides or {})
            where = f"sweep {self.name!r} run " + ", ".join(
                ",".join(f"{k2}={v2}" for k2, v2 in v.items() if k2 != "teacher_checkpoint")
                if isinstance(v, dict) and k not in _MAPPING_FIELDS
                else f"{k}={v}"
                for k, v in zip(keys, combo, strict=True)
            )
            method = values.get("method", TrainConfig.method)
            if isinstance(method, str) and not method_class(method).needs_teacher:
                for key in settings_where(group="teacher"):
                    values.pop(key, None)
            cfg = TrainConfig.from_dict(values, where)
            try:
                check(cfg)
            except KdlibError as e:
                if self.skip_invalid and isinstance(method, str):
                    self.skipped.append((where, str(e)))
                    continue
                raise KdlibError(f"{where}: {e}") from None
            # The same run however the grid spelled it. config_hash counts a teacher
            # checkpoint by its content, which training records; here its path stands in.
            d = cfg.to_dict()
            identity = f"{config_hash(d)} {d['runs_dir']} {d['teacher_checkpoint']}"
            if identity not in seen:
                seen.add(identity)
                configs.append(cfg)
        return configs

    def planned(self, overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
        """Every run the sweep trains, prerequisites (teachers, assistants) first, each once."""
        ordered: dict[str, PlannedRun] = {}
        for cfg in self.expand(overrides):
            for p in plan(cfg):
                ordered.setdefault(p.key(), p)
        return list(ordered.values())


def seconds_left(history: pd.DataFrame, epochs_done: int, epochs: int) -> float | None:
    """Seconds an unfinished run still needs at the pace of its last (up to) 3 recorded
    epochs, training and evaluation (their median: one epoch that waited through a suspend
    or a paused process does not set the pace); None when no epoch recorded its time or
    none is left.

    An estimate for someone watching a campaign, not a promise: the pace changes with
    what else shares the machine.
    """
    left = epochs - epochs_done
    if left <= 0 or history.empty or "seconds" not in history:
        return None
    recent = history.tail(3)
    per_epoch = recent["seconds"].astype(float)
    if "eval_seconds" in recent:
        per_epoch = per_epoch + recent["eval_seconds"].astype(float).fillna(0.0)
    per_epoch = per_epoch.dropna()
    if per_epoch.empty:
        return None
    return float(per_epoch.median()) * left


def run_state(planned: PlannedRun) -> dict[str, Any]:
    """Where one planned run stands, from its record and its lock: ``not started``,
    ``running`` (a process holds its lock), ``interrupted`` (resumes when the sweep runs
    again, from the checkpoint the cache kept, else from scratch: ``resumes_at``),
    ``failed``, ``completed`` or ``diverged``; and, unfinished, about how long it has left."""
    record = recorded_run(planned.cfg)
    if record is None:
        return {"status": "not started", "epochs_done": 0}
    try:
        metrics = record.metrics()
    except (OSError, ValueError):
        metrics = {}
    status = metrics.get("status") or "interrupted"
    epochs = planned.cfg.epochs
    done = metrics.get("epochs_completed", epochs if status in FINISHED else 0)
    state: dict[str, Any] = {
        "status": status,
        "epochs_done": done,
        "final_test_acc": metrics.get("final_test_acc"),
        "run_dir": str(record.path),
    }
    if status in FINISHED:
        return state
    # the record was found by its identity's hash, which its config keeps: not computed again
    if is_locked(planned.cfg.runs_dir, str(record.config().get("config_hash"))):
        state["status"], start = "running", done  # even while it is still being set up
    else:
        if status == "running":  # its process is gone
            state["status"] = "interrupted"
        start = state["resumes_at"] = _checkpoint_epoch(record)
    with contextlib.suppress(OSError, ValueError):  # a garbled history.csv: no estimate
        state["seconds_left"] = seconds_left(record.history(), start, epochs)
    return state


def _checkpoint_epoch(record: RunRecord) -> int:
    """The epoch an unfinished run resumes from: its checkpoint's, 0 when the cache has
    none (a new machine) or it cannot be read (the run then starts over)."""
    try:
        state_dir = record.config().get("state_dir")
        found = load_checkpoint(Path(state_dir) / CHECKPOINT) if state_dir else None
    except (OSError, ValueError, KdlibError):
        return 0
    epoch = found.get("epoch") if found else None
    return epoch if isinstance(epoch, int) else 0


STATE_COLUMNS = [
    "role", "method", "params", "student", "teacher", "dataset", "epochs", "seed",
    "status", "epochs_done", "final_test_acc", "resumes_at", "seconds_left", "run_dir",
]  # fmt: skip


def sweep_state(
    sweep: Sweep, overrides: dict[str, Any] | None = None, with_state: bool = True
) -> pd.DataFrame:
    """Every run a sweep trains, prerequisites first, with where it stands
    (:func:`run_state`; ``with_state=False``: the runs only): what ``kdlib sweep
    --dry-run`` lists. A prerequisite that no unfinished run needs any more (its record
    gone, its runs finished) is ``not needed``: the sweep would not train it. Trains,
    prepares and loads nothing; ``NotPrepared`` where the data set was never prepared."""
    planned = sweep.planned(overrides)
    if not with_state:
        return pd.DataFrame([describe(p) for p in planned]).reindex(columns=STATE_COLUMNS)
    states = [run_state(p) for p in planned]  # NotPrepared before anything is prepared
    todo = {p.key() for p in pending(planned)}
    for p, state in zip(planned, states, strict=True):
        if p.key() not in todo and state["status"] == "not started":
            state["status"] = "not needed"  # a prerequisite of runs that have finished
    rows = [{**describe(p), **state} for p, state in zip(planned, states, strict=True)]
    return pd.DataFrame(rows).reindex(columns=STATE_COLUMNS)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file."""
    data = read_yaml(path, f"sweep file {str(path)!r}")
    return Sweep.from_dict(data, where=str(path))


NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "run.ipynb"


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """The same config with absolute paths, so it means the same in any working folder."""
    values = cfg.to_dict()
    entries = catalogue()
    for key in settings_where(path=True):
        if not values[key]:
            continue
        if entries[key].several:  # a comma-separated list, one per teacher
            values[key] = ",".join(
                str(Path(p.strip()).absolute()) if p.strip() else "" for p in values[key].split(",")
            )
        else:
            values[key] = str(Path(values[key]).absolute())
    return TrainConfig.from_dict(values)


def run_via_notebook(cfg: TrainConfig, notebook: Path = NOTEBOOK) -> list[dict[str, Any]]:
    """Run the request ``cfg`` by executing ``run.ipynb`` with papermill; one row per
    planned run (``run_one``'s rows). The executed copy, outputs included, is saved as
    ``run.ipynb`` in each run directory this execution trained; a run it only reused
    (finished before, such as a teacher shared by several runs) keeps the notebook that
    trained it. Which runs this execution trained the registry tells: a run whose record
    appeared or changed while the kernel ran, and had not finished before.

    When the notebook fails (a cell's error, a dead kernel), a run it trained that still
    says ``running`` is marked ``failed`` with the error, and a run it never reached is
    ``not started``; when the kernel met a run another process holds, that run and those
    after it are ``running elsewhere`` and nothing is marked.
    """
    import tempfile

    cfg = _absolute(cfg)
    planned = plan(cfg)
    before = {p.key(): _stamp(p) for p in planned}
    error: Exception | None = None
    locked = False  # the kernel met a run another process holds: not a failure
    with tempfile.TemporaryDirectory(prefix="kdlib-run-") as tmp:
        executed = Path(tmp) / "run.ipynb"
        try:
            parameters = {"config": cfg.to_dict(), "progress": False}
            execute_notebook(notebook, executed, parameters, cwd=Path.cwd())
        except RunLocked:
            locked = True
        except Exception as e:  # a failing cell, a dead kernel, a timeout
            error = e
        rows = []
        for p in planned:
            record = find_run(p.cfg.runs_dir, identify(p.cfg).hash)
            done_before = before[p.key()][2]
            ran = record is not None and not done_before and _stamp(p) != before[p.key()]
            if locked and (record is None or run_status(record) not in FINISHED):
                rows.append(_named(p, status="running elsewhere"))
                continue
            if record is None or not (ran or done_before):
                why = (
                    f"{type(error).__name__}: {error}" if error else "the notebook did not reach it"
                )
                rows.append(_named(p, status="not started", error=why))
                continue
            if ran and executed.exists():
                with atomic_write(record.path / "run.ipynb", "wb") as f:
                    f.write(executed.read_bytes())
            if ran and error is not None and run_status(record) == "running":
                failure = f"{type(error).__name__}: {error}"
                record.write_metrics({**record.metrics(), "status": "failed", "error": failure})
            rows.append(_row(p, record, reused=not ran))
    return rows


def _stamp(planned: PlannedRun) -> tuple[str | None, int | None, bool]:
    """Where a planned run's record is, when its metrics last changed, whether it finished."""
    record = find_run(planned.cfg.runs_dir, identify(planned.cfg).hash)
    if record is None:
        return None, None, False
    metrics = record.path / "metrics.json"
    mtime = metrics.stat().st_mtime_ns if metrics.exists() else None
    return str(record.path), mtime, run_status(record) in FINISHED


def _named(planned: PlannedRun, **facts: Any) -> dict[str, Any]:
    """A sweep table's row: the columns that name the planned run, then ``facts``; the
    hidden ``_key`` tells runs apart that those columns do not (other lr, other data)."""
    return {"_key": planned.key(), **describe(planned), **facts}


def _row(planned: PlannedRun, record: RunRecord, reused: bool) -> dict[str, Any]:
    """A sweep table's row of one planned run that has a run directory."""
    metrics = record.metrics()
    status = metrics.get("status")
    if status == "completed" and reused:
        status = "done before"  # completed by an earlier or concurrent sweep: not run again
    return _named(
        planned,
        status=status,
        run_dir=str(record.path),
        final_test_acc=metrics.get("final_test_acc"),
        test_acc_at_best_val=metrics.get("test_acc_at_best_val"),
        **({"error": metrics.get("error")} if metrics.get("error") else {}),
    )


def run_one(cfg: TrainConfig, via: str = "direct") -> list[dict[str, Any]]:
    """Train the request ``cfg`` for a sweep: one row per planned run, prerequisites
    first. A run's own failure is reported in its row, never raised. A run whose teacher
    run failed or diverged is ``not started``; one whose teacher run another process is
    training is ``waiting``; a prerequisite no unfinished run needs is ``not needed``."""
    if via == "notebook":
        try:
            return run_via_notebook(cfg)
        except Exception as e:  # the parent's own look-ups (data missing, ...)
            error = f"{type(e).__name__}: {e}"
            return [_named(p, status="failed", error=error) for p in plan(_absolute(cfg))]
    planned = plan(cfg)
    try:
        todo = {p.key() for p in pending(planned)}
    except Exception:  # e.g. no data: every run then fails with the reason in its row
        todo = {p.key() for p in planned}
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}  # key of a run that did not complete -> its status
    for p in planned:
        if p.key() not in todo:
            rows.append(_named(p, status="not needed"))
            continue
        blocked = [unavailable[k] for k in p.needs() if k in unavailable]
        if blocked:
            status = "waiting" if blocked[0] == "is running elsewhere" else "not started"
            rows.append(_named(p, status=status, error=f"its teacher run {blocked[0]}"))
            unavailable[p.key()] = "is running elsewhere" if status == "waiting" else status
            continue
        try:
            result = train_planned(p, progress=False)
        except RunLocked:
            rows.append(_named(p, status="running elsewhere"))
            unavailable[p.key()] = "is running elsewhere"
            continue
        except Exception as e:  # recorded in the run's metrics.json too, if it got that far
            rows.append(_named(p, status="failed", error=f"{type(e).__name__}: {e}"))
            unavailable[p.key()] = "failed"
            continue
        row = _row(p, RunRecord(result.path), result.reused)
        if row["status"] not in ("completed", "done before"):
            unavailable[p.key()] = str(row["status"])
        rows.append(row)
    return rows


EXECUTORS = ("local", "slurm", "submitit-local")


def run_sweep(
    sweep: Sweep,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    executor: str = "local",
    via: str = "direct",
    slurm: dict[str, Any] | None = None,
    jobs_dir: str | Path = "runs/.jobs",
) -> pd.DataFrame:
    """Run every configuration of ``sweep`` and return a summary table.

    ``local`` runs them here one after another; ``slurm`` submits each as a job with one
    GPU through submitit (``submitit-local`` is the same code path with submitit's local
    executor, for testing without a cluster). ``via`` is ``direct`` (kdlib.train) or
    ``notebook`` (papermill on notebooks/run.ipynb, kept in the run's directory).
    """
    if executor not in EXECUTORS:
        raise KdlibError(f"--executor={executor!r}: valid: {', '.join(EXECUTORS)}")
    if via not in ("direct", "notebook"):
        raise KdlibError(f"--via={via!r}: valid: direct, notebook")
    configs = sweep.expand(overrides)
    if executor == "local":
        rows = [
            row
            for cfg in tqdm(configs, desc=f"sweep {sweep.name}", disable=not progress)
            for row in run_one(cfg, via)
        ]
        return _one_row_per_run(rows)
    try:
        import submitit
    except ImportError:
        raise KdlibError("--executor slurm needs submitit: pip install submitit") from None
    folder = Path(jobs_dir) / sweep.name
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(gpus_per_node=1, tasks_per_node=1, nodes=1, **(slurm or {}))
    else:
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=int((slurm or {}).get("timeout_min", 60)))
    ex.update_parameters(name=f"kdlib-{sweep.name}")
    jobs = [ex.submit(run_one, _absolute(cfg), via) for cfg in configs]
    rows = []
    for cfg, job in tqdm(
        list(zip(configs, jobs, strict=True)), desc=f"sweep {sweep.name}", disable=not progress
    ):
        try:
            rows += job.result()
        except Exception as e:  # the job itself died (killed, out of time or memory)
            error = f"job {job.job_id}: {e}"[:500]
            rows += [_named(p, status="failed", error=error) for p in plan(_absolute(cfg))]
    return _one_row_per_run(rows)


def _one_row_per_run(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: requests that share a run (a teacher trained first for several
    runs) list it once, with the row that tells most (``_RANK``)."""
    rank = {status: k for k, status in enumerate(_RANK)}
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.pop("_key")
        if key not in best or rank.get(row.get("status"), len(_RANK)) < rank.get(
            best[key].get("status"), len(_RANK)
        ):
            best[key] = row
    return pd.DataFrame(list(best.values()))


# How well a worker's row tells what happened to a run, best first: a run some worker
# completed is completed, whatever another worker saw of it earlier or later.
_RANK = (
    "completed",
    "done before",
    "not needed",
    "diverged",
    "failed",
    "not started",
    "running elsewhere",
    "waiting",
)
# Statuses that mean a run of the sweep did not happen and will not by itself: the exit
# code says so (a teacher run that failed or diverged leaves its students not started).
FAILED = ("failed", "not started")


def worker_command(
    path: str | Path, sets: list[str], via: str, summary: Path, threads: int
) -> list[str]:
    """The command line of one ``--parallel`` sweep worker, with its share of the cores."""
    import sys

    cmd = [sys.executable, "-m", "kdlib", "sweep", str(path), "--quiet", "--via", via]
    for item in sets:
        cmd += ["--set", item]
    return [*cmd, "--threads", str(threads), "--summary-json", str(summary)]


# How long stopped workers get to record their runs before they are killed.
STOP_GRACE_SECONDS = 60.0


def stop_workers(workers: list[Any], sig: int) -> None:
    """End the ``subprocess.Popen`` workers still running with ``sig`` (SIGTERM or SIGINT,
    which each records as an interruption of the run it trains: resumable), wait up to
    ``STOP_GRACE_SECONDS``, then kill any left. Whatever happens meanwhile (a second
    signal), no worker outlives this call."""
    import subprocess
    import time

    try:
        for w in workers:
            if w.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.send_signal(sig)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


def run_sweep_parallel(
    path: str | Path,
    sets: list[str],
    processes: int,
    progress: bool = True,
    via: str = "direct",
    threads: int | None = None,
) -> pd.DataFrame:
    """Pack several runs onto this machine (one GPU, or the CPU's cores) at once:
    ``processes`` sweep workers.

    Each worker walks the same list; the per-run locks hand each run to exactly one of
    them, so they spread over the runs without any other coordination. Each worker gets
    ``threads`` torch threads (default: its share of the cores, ``worker_threads``), so
    on a CPU N packed runs split the cores instead of fighting over all of them. The
    summary keeps, per run, the worker row that tells most: completed, then done before,
    then diverged or failed, then running elsewhere.
    """
    import json
    import signal
    import subprocess
    import tempfile

    threads = threads or worker_threads(processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="kdlib-sweep-") as tmp:
        outs = [Path(tmp) / f"worker{i}.json" for i in range(processes)]
        workers: list[subprocess.Popen] = []
        try:
            for out in outs:
                # Each worker in a session of its own: a terminal's Ctrl-C or a signal to
                # the process group reaches this process alone, which passes it on once.
                workers.append(
                    subprocess.Popen(
                        worker_command(path, sets, via, out, threads),
                        stdout=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
                )
            for worker in tqdm(workers, desc=f"{processes} sweep workers", disable=not progress):
                worker.wait()
        except BaseException as e:
            # Without this the workers would train on as orphans: they get the signal
            # too, and record their runs as interrupted.
            stop_workers(workers, signal.SIGINT if type(e) is KeyboardInterrupt else signal.SIGTERM)
            raise
        tables = [json.loads(out.read_text()) if out.exists() else None for out in outs]
    done = [t for t in tables if t is not None]
    if not done:
        raise KdlibError(f"all {processes} sweep workers failed; run without --parallel to see why")
    rank = {status: k for k, status in enumerate(_RANK)}
    rows = []
    for i in range(len(done[0])):
        candidates = [t[i] for t in done]
        rows.append(min(candidates, key=lambda r: rank.get(r.get("status"), len(_RANK))))
    return pd.DataFrame(rows)
