"""Reliability: killed runs resume to the same result, records always parse, concurrent
sweeps never run a configuration twice."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdlib.runs import RunRecord, load_runs

pytestmark = pytest.mark.slow  # kill tests: child processes killed and resumed

HISTORY_COLS = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_acc",
    "test_acc",
    "loss_ce",
    "loss_kd",
]


def _train_cmd(tiny_data: dict, teacher: str, runs: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kdlib",
        "train",
        "--method",
        "kd",
        "--student",
        "resnet8",
        "--teacher",
        "resnet8",
        "--teacher-checkpoint",
        teacher,
        "--epochs",
        "4",
        "--batch-size",
        "50",
        "--val-size",
        "100",
        "--checkpoint-every",
        "1",
        "--deterministic",
        "--device",
        "cpu",
        "--quiet",
        "--runs-dir",
        str(runs),
        "--data-dir",
        tiny_data["data_dir"],
        "--cache-dir",
        tiny_data["cache_dir"],
    ]


def _launch(cmd: list[str], fault: str = "", kill_after: float | None = None) -> int:
    env = {**os.environ, "KDLIB_FAULT": fault, "OMP_NUM_THREADS": "1"}
    # no pipes: a child that writes more than a pipe holds would block until the timeout
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def _assert_records_parse(runs: Path) -> None:
    for run_dir in runs.iterdir():
        if run_dir.name.startswith("."):
            continue
        for name in ("config.json", "env.json", "metrics.json"):
            json.loads((run_dir / name).read_text())
        if (run_dir / "history.csv").exists():
            with open(run_dir / "history.csv") as f:
                list(csv.DictReader(f))
    load_runs(runs)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    path = RunRecord(run_dir).metrics()["weights_path"]
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkilled_run_resumes_to_the_uninterrupted_result(
    tiny_data: dict, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    teacher = teacher_checkpoints["resnet8"]
    ref_runs, runs = tmp_path / "reference", tmp_path / "killed"
    assert _launch(_train_cmd(tiny_data, teacher, ref_runs)) == 0
    (ref_dir,) = [p for p in ref_runs.iterdir() if not p.name.startswith(".")]

    cmd = _train_cmd(tiny_data, teacher, runs)
    # Crash points: mid-epoch, inside a checkpoint write, after an epoch's record but
    # before its checkpoint, at the start of an epoch, after the last epoch; then kills
    # at random moments.
    for fault in ["step:2:3", "checkpoint-write:2", "epoch-end:3", "step:4:0", "epoch-end:4"]:
        assert _launch(cmd, fault=fault) == -signal.SIGKILL, fault
        _assert_records_parse(runs)
        df = load_runs(runs)
        assert len(df) == 1 and df["status"].iloc[0] == "running", fault
    rng = random.Random(0)
    for _ in range(2):
        _launch(cmd, kill_after=rng.uniform(1.0, 6.0))
        _assert_records_parse(runs)
    assert _launch(cmd) == 0
    _assert_records_parse(runs)

    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    resumed, reference = RunRecord(run_dir), RunRecord(ref_dir)
    assert resumed.metrics()["status"] == "completed"
    assert resumed.metrics()["resumed_at_epochs"]  # it really was resumed
    assert resumed.history()[HISTORY_COLS].equals(reference.history()[HISTORY_COLS])
    for key in ("final_test_acc", "final_val_acc", "best_val_epoch", "test_acc_at_best_val"):
        assert resumed.metrics()[key] == reference.metrics()[key], key
    a, b = _weights(run_dir), _weights(ref_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_flag_continues_a_named_run(
    tiny_data: dict, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cmd = _train_cmd(tiny_data, teacher_checkpoints["resnet8"], runs)
    assert _launch(cmd, fault="epoch-end:2") == -signal.SIGKILL
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    resume = [
        sys.executable,
        "-m",
        "kdlib",
        "train",
        "--resume",
        str(run_dir),
        "--quiet",
        "--data-dir",
        tiny_data["data_dir"],
        "--cache-dir",
        tiny_data["cache_dir"],
    ]
    out = subprocess.run(resume, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == str(run_dir)
    rec = RunRecord(run_dir)
    assert rec.metrics()["status"] == "completed"
    assert rec.metrics()["resumed_at_epochs"] == [1]  # epoch 2's checkpoint was never written
    assert list(rec.history()["epoch"]) == [1, 2, 3, 4]


SWEEP = """
name: four
base: {{epochs: 1, batch_size: 50, val_size: 100, device: cpu, runs_dir: {runs},
        data_dir: {data_dir}, cache_dir: {cache_dir}}}
grid:
  method: [nokd]
  student: [resnet8]
  seed: [0, 1, 2, 3]
"""


def test_two_concurrent_sweeps_run_each_configuration_once(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sweep = tmp_path / "four.yaml"
    sweep.write_text(SWEEP.format(runs=runs, **tiny_data))
    cmd = [sys.executable, "-m", "kdlib", "sweep", str(sweep), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    df = load_runs(runs)
    assert len(df) == 4 and set(df["status"]) == {"completed"}
    assert sorted(df["seed"]) == [0, 1, 2, 3]
    # Each configuration was trained by exactly one of the two sweeps.
    trained = [line.split() for out in outputs for line in out.splitlines()[1:]]
    completed_seeds = sorted(int(row[4]) for row in trained if row[0] == "completed")
    assert completed_seeds == [0, 1, 2, 3], outputs
    assert {int(p) for p in df["pid"]} <= {p.pid for p in procs}


def test_a_diverging_run_is_marked_and_the_sweep_goes_on(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sweep = tmp_path / "lr.yaml"
    sweep.write_text(
        SWEEP.format(runs=runs, **tiny_data).replace(
            "seed: [0, 1, 2, 3]", "seed: [0]\n  lr: [1.0e+5, 0.05]"
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "kdlib", "sweep", str(sweep), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    df = load_runs(runs).sort_values("lr")
    assert list(df["status"]) == ["completed", "diverged"], out
    assert "diverged" in out and "completed" in out


@pytest.mark.parametrize("payload", ["os.system", "builtins.print"])
def test_training_checkpoint_with_pickled_objects_is_refused(tmp_path: Path, payload: str) -> None:
    from kdlib.errors import CheckpointError
    from kdlib.resume import load_checkpoint

    class Evil:
        def __reduce__(self):
            module, name = payload.split(".")
            return (getattr(__import__(module), name), ("echo pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)


def test_parallel_sweep_packs_runs_and_runs_each_once(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sweep = tmp_path / "four.yaml"
    sweep.write_text(SWEEP.format(runs=runs, **tiny_data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "kdlib", "sweep", str(sweep), "--parallel", "2", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    df = load_runs(runs)
    assert len(df) == 4 and set(df["status"]) == {"completed"}
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    assert sorted(int(r[4]) for r in rows if r[0] == "completed") == [0, 1, 2, 3], out
    assert len(set(df["pid"])) <= 2


def test_sigterm_to_a_parallel_sweep_stops_its_workers_too(tiny_data: dict, tmp_path: Path) -> None:
    # `kill -TERM <sweep>` once ended only the parent: its two workers trained on as
    # orphans (found when the campaign was restarted on new code). Now each worker's run
    # is recorded as interrupted by SIGTERM, resumable, and no worker outlives the sweep.
    import time

    runs = tmp_path / "runs"
    sweep = tmp_path / "long.yaml"
    sweep.write_text(SWEEP.format(runs=runs, **tiny_data).replace("epochs: 1,", "epochs: 500,"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kdlib", "sweep", str(sweep), "--parallel", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # both workers train (an epoch of each recorded)
            trained = [p for p in runs.glob("*/history.csv") if len(p.read_text().split()) >= 2]
            if len(trained) == 2:
                break
            time.sleep(0.2)
        assert len(trained) == 2, "the two workers did not both start training"
    finally:  # also what ends the workers if the test fails before this
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=120)
        finally:
            proc.kill()
    assert code == 143
    df = load_runs(runs)
    assert len(df) == 2 and set(df["status"]) == {"failed"}
    assert all("SIGTERM" in e for e in df["error"])
    for pid in df["pid"]:  # the workers are gone, not orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
