"""Write the synthetic run records in ``tests/fixtures/runs`` that the figure tests read.

    python -m tests.make_fixture_runs [OUT_DIR]     # from the repository root

The runs are made up: their accuracies are the paper's numbers plus seeded noise, their
curves a smooth shape with the paper's lr steps. Only the Table 3 setting (200 epochs,
ResNet26 -> ResNet8) keeps its ``history.csv``: curves of one setting are enough for the
tests, and the fixture stays small. They exist so the figures and notebooks can be
tested without training anything. Each run's ``config.json`` and ``env.json`` say
``"synthetic_fixture": true``, and figures drawn from them say so in their title.
Deterministic: running it again rewrites the same files.

The runs are recorded the way the shipped sweeps record them: Tables 3 and 4 and the
T x lambda grid load the released ResNet26 checkpoint (``teacher_checkpoint`` and its
``teacher_checkpoint_sha256``); Table 2 (sweeps/paper_table2.yaml) trains each teacher
first, as a nokd run of that model linked from the KD run (``teacher_run``), plain KD
runs, no grid. Its ResNet26 -> ResNet8 KD runs therefore look like Table 3's KD runs
but are another setting, which the figures must not pool with them; its ResNet8
teacher is Table 3's nokd run (the same configuration, reused by its hash).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kdlib.io import read_json, write_json
from kdlib.loop import summarize
from kdlib.runs import CONFIG, RunRecord, config_hash, new_run_id

OUT = Path(__file__).resolve().parent / "fixtures" / "runs"
START = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
NOTE = "synthetic fixture for kdlib's figure and notebook tests: made-up numbers, not a real run"

# (method, teacher, target final accuracy[, method parameters]): Table 3's paper numbers
# (the seed variant where the method has one, as sweeps/paper_table3.yaml runs them), plus
# one unreported method (pkd) and one original variant beside its seed row (oh), Table 4's
# at 350 epochs, Table 2's teachers, and a small T x lambda grid.
SEED = {"variant": "seed"}
TABLE3 = [
    ("nokd", None, 89.42),
    ("kd", "resnet26", 90.33),
    ("takd", "resnet26", 90.57),
    ("uda", "resnet26", 90.52, SEED),
    ("mkd", "resnet26", 90.34),
    ("rkd", "resnet26", 90.22, SEED),
    ("sfd", "resnet26", 87.47, SEED),
    ("oh", "resnet26", 87.09, SEED),
    ("pkd", "resnet26", 88.70),
]
# The original OH beside its seed row (written last, so the other runs keep their noise).
TABLE3_ORIGINAL = [("oh", "resnet26", 89.90)]
TABLE4 = [
    ("nokd", None, 89.34),
    ("kd", "resnet26", 90.77),
    ("takd", "resnet26", 90.97),
    ("uda", "resnet26", 91.22, SEED),
    ("uda_nokd", None, 90.34),
]
TABLE2 = [  # (teacher, teacher accuracy, student accuracy)
    ("resnet8", 89.59, 89.48),
    ("resnet20", 93.02, 90.16),
    ("resnet26", 93.41, 90.40),
    ("resnet18_seed", 95.26, 89.50),
    ("wrn10_1", 88.06, 88.48),
    ("wrn16_4", 95.42, 89.58),
]
TEACHER_ACC = {t: a for t, a, _ in TABLE2}  # ResNet26: the released checkpoint's 93.41
KD_GRID_T = (1.0, 5.0, 10.0)
KD_GRID_LAMBDA = (0.1, 0.5, 0.9)
SEEDS = (0, 1)
KD_DEFAULTS = {"T": 5.0, "lambda": 0.5}


def _history(
    rng: np.random.Generator, epochs: int, target: float, terms: list[str]
) -> list[dict[str, Any]]:
    """A plausible curve: slow rise at lr 0.1, a jump at each lr step, ending near ``target``."""
    m1, m2 = int(0.33 * epochs), int(0.66 * epochs)
    rows = []
    for e in range(1, epochs + 1):
        if e <= m1:
            lr, level = 0.1, target - 8.0 * np.exp(-e / (0.15 * epochs)) - 4.0
        elif e <= m2:
            lr, level = 0.01, target - 0.8
        else:
            lr, level = 0.001, target
        noise = 1.2 if lr == 0.1 else 0.15
        test = level + rng.normal(0, noise)
        loss = 2.3 * np.exp(-e / (0.05 * epochs)) + (
            0.45 if lr == 0.1 else 0.12 if lr == 0.01 else 0.08
        )
        row: dict[str, Any] = {
            "epoch": e,
            "lr": lr,
            "train_loss": round(loss + rng.normal(0, 0.005), 4),
            "train_acc": round(min(99.9, test + 4.0 + rng.normal(0, 0.3)), 2),
        }
        split = np.linspace(0.4, 0.6, len(terms)) if len(terms) > 1 else [1.0]
        for term, share in zip(terms, split, strict=True):
            row[f"loss_{term}"] = round(row["train_loss"] * share, 4)
        row["val_acc"] = round(test + 0.3 + rng.normal(0, 0.2), 2)
        row["test_acc"] = round(test, 2)
        row["seconds"] = round(float(rng.uniform(9.5, 10.5)), 2)
        rows.append(row)
    return rows


def _fake_sha256(teacher: str) -> str:
    """A made-up checkpoint digest (the fixture has no checkpoint files)."""
    return hashlib.sha256(f"synthetic {teacher} checkpoint".encode()).hexdigest()


def _write_run(
    out: Path,
    k: int,
    method: str,
    teacher: str | None,
    epochs: int,
    seed: int,
    target: float,
    grid: str | None = None,
    hparams: dict[str, Any] | None = None,
    keep_history: bool = True,
    student: str = "resnet8",
    teacher_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one completed run; ``teacher_run`` (the teacher's own run, as returned here)
    means a teacher trained first, else ``teacher`` comes from the released checkpoint.
    Returns the run's id and metrics."""
    rng = np.random.default_rng([k, seed, int(target * 100)])
    released = teacher is not None and teacher_run is None
    # The paper's protocol, written out rather than taken from TrainConfig, so that new
    # settings there do not change the fixture.
    config: dict[str, Any] = {
        "method": method,
        "student": student,
        "teacher": teacher,
        "teacher_checkpoint": f"reference-checkpoints/{teacher}_cifar10.pth" if released else None,
        "teacher_epochs": None,
        "dataset": "cifar10",
        "epochs": epochs,
        "seed": seed,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "nesterov": True,
        "lr_milestones": [0.33, 0.66],
        "lr_gamma": 0.1,
        "val_size": 5000,
        "train_limit": None,
        "augment": True,
        "method_params": dict(hparams or {}),
        "device": "auto",
        "data_dir": None,
        "cache_dir": None,
        "runs_dir": "tests/fixtures/runs",
        "grid": grid,
        "synthetic_fixture": True,
        "note": NOTE,
        "method_hparams": dict(hparams or (KD_DEFAULTS if method == "kd" else {})),
        "milestone_epochs": [int(0.33 * epochs), int(0.66 * epochs)],
        "teacher_run": f"tests/fixtures/runs/{teacher_run['run_id']}" if teacher_run else None,
        "method_record": {},
        "dataset_fingerprint": "synthetic",
        "num_classes": 10,
        "train_size": 45000,
        "val_size_actual": 5000,
        "test_size": 10000,
    }
    if released:
        config["teacher_checkpoint_sha256"] = _fake_sha256(str(teacher))
    config["config_hash"] = config_hash(config)
    env = {"synthetic_fixture": True, "note": NOTE, "device_name": "synthetic", "device": "none"}
    run_id = new_run_id(config, now=START + dt.timedelta(minutes=k), token="")
    rec = RunRecord.create(out, run_id, config, env)
    terms = ["ce"] if teacher is None else ["ce", "kd"]
    history = _history(rng, epochs, target + rng.normal(0, 0.2), terms)
    if keep_history:
        rec.write_history(history)
    else:
        config["note"] = NOTE + "; history.csv left out to keep the fixture small"
        write_json(rec.path / CONFIG, {**config, "run_id": rec.run_id})
    metrics: dict[str, Any] = {
        **summarize(history),
        "status": "completed",
        "wall_seconds": round(sum(r["seconds"] for r in history) * 1.1, 1),
    }
    if teacher_run:  # the teacher trained first, evaluated on the test split
        metrics["teacher_test_acc"] = teacher_run["final_test_acc"]
    elif teacher:
        metrics["teacher_test_acc"] = 93.41  # the released ResNet26 checkpoint
    rec.write_metrics(metrics)
    return {"run_id": rec.run_id, **metrics}


_STUB = {"student": "resnet8", "dataset": "cifar10", "epochs": 200, "seed": 9}
_STUB.update(synthetic_fixture=True, note=NOTE)


def make_fixture_runs(out: Path = OUT) -> Path:
    """Rewrite ``out`` with the synthetic runs (refusing to delete anything not synthetic)."""
    out = Path(out)
    if out.exists():
        for cfg in out.rglob(CONFIG):
            if not read_json(cfg).get("synthetic_fixture"):
                raise SystemExit(f"{cfg} is not a synthetic fixture; not deleting {out}")
        shutil.rmtree(out)
    k = 0
    nokd: dict[int, dict[str, Any]] = {}  # Table 3's nokd run of each seed
    for epochs, table in ((200, TABLE3), (350, TABLE4)):
        for method, teacher, target, *params in table:
            for seed in SEEDS:
                k += 1
                hist = epochs == 200  # curves of one setting are enough for the tests
                hparams = params[0] if params else None
                run = _write_run(out, k, method, teacher, epochs, seed, target, None, hparams, hist)
                if (method, epochs) == ("nokd", 200):
                    nokd[seed] = run
    for T in KD_GRID_T:
        for lam in KD_GRID_LAMBDA:
            k += 1
            # made-up surface with one interior optimum, steep enough against the seeded
            # noise (about 0.25 points) that the best cell is T=5, lambda=0.5
            target = 90.4 - 1.0 * abs(np.log(T / 5.0)) - 6.0 * (lam - 0.6) ** 2
            hparams = {"T": T, "lambda": lam}
            _write_run(out, k, "kd", "resnet26", 200, 0, target, "kdparam", hparams, False)
    # Table 2 as sweeps/paper_table2.yaml runs it: each teacher trained first (200 epochs,
    # the KD run's seed), then plain KD from it. ResNet8's teacher run is Table 3's nokd.
    for teacher, teacher_acc, target in TABLE2:
        for seed in SEEDS:
            if teacher == "resnet8":
                teacher_run = nokd[seed]
            else:
                k += 1
                teacher_run = _write_run(
                    out, k, "nokd", None, 200, seed, teacher_acc, None, None, False, teacher
                )
            k += 1
            _write_run(
                out,
                k,
                "kd",
                teacher,
                200,
                seed,
                target,
                keep_history=False,
                teacher_run=teacher_run,
            )
    for method, teacher, target in TABLE3_ORIGINAL:
        for seed in SEEDS:
            k += 1
            _write_run(out, k, method, teacher, 200, seed, target, keep_history=False)
    # Two runs that must never count: one killed while running, one that failed.
    rec = RunRecord.create(
        out,
        "zz-running-kd-resnet8-from-resnet26-cifar10-e200-s9",
        {**_STUB, "method": "kd", "teacher": "resnet26"},
        {"synthetic_fixture": True},
    )
    rec.write_history([{"epoch": 1, "lr": 0.1, "train_loss": 2.0, "test_acc": 99.0}])
    rec.write_metrics({"status": "running", "final_test_acc": 99.0, "best_test_acc": 99.0})
    rec = RunRecord.create(
        out,
        "zz-failed-nokd-resnet8-cifar10-e200-s9",
        {**_STUB, "method": "nokd", "teacher": None},
        {"synthetic_fixture": True},
    )
    rec.write_metrics({"status": "failed", "final_test_acc": 10.0, "error": "synthetic"})
    return out


if __name__ == "__main__":
    print(make_fixture_runs(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
