"""Junk on disk never stops another run; failures and terminations are recorded and told
by exit codes; half-written temporaries are cleaned up when a run resumes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kdlib.faults
from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.runs import RunRecord, RunsWarning, load_runs
from kdlib.train import run_training


def _cfg(tiny_data: dict, runs: Path, **kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=50, val_size=100, device="cpu", runs_dir=str(runs))
    return TrainConfig(**{**base, **tiny_data, **kw})


@pytest.mark.parametrize(
    ("name", "text"),
    [("list", "[1, 2]"), ("garbled", '{"config_hash": '), ("string", '"x"')],
)
def test_a_junk_run_directory_never_stops_another_configuration(
    name: str, text: str, tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    junk = runs / "20260101-000000-junk"
    junk.mkdir(parents=True)
    (junk / "config.json").write_text(text)
    (junk / "metrics.json").write_text(text)
    with pytest.warns(RunsWarning, match="unreadable"):
        rec = RunRecord(run_training(_cfg(tiny_data, runs), progress=False))
    assert rec.metrics()["status"] == "completed"
    table = load_runs(runs).set_index("run_id")
    assert table.loc[junk.name, "status"] == "unreadable"
    assert table.loc[rec.run_id, "status"] == "completed"
    assert main(["runs", str(runs)]) == 0
    assert "unreadable" in capsys.readouterr().out


def test_unreadable_metrics_of_a_matching_run_resume_it(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run_training(_cfg(tiny_data, runs), progress=False)
    (first / "metrics.json").write_text("[]")  # not an object: not a result
    again = run_training(_cfg(tiny_data, runs), progress=False)
    assert again == first and RunRecord(again).metrics()["status"] == "completed"


def test_a_sweep_with_failed_runs_exits_1_and_says_why(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(kdlib.faults, "_FAULT", "raise:epoch-end:1")
    sweep = tmp_path / "s.yaml"
    base = {"epochs": 1, "batch_size": 50, "val_size": 100, "device": "cpu"}
    base.update(runs_dir=str(tmp_path / "runs"), **tiny_data)
    sweep.write_text(json.dumps({"name": "s", "base": base, "grid": {"seed": [0, 1]}}))
    code = main(["sweep", str(sweep), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "2 of 2 runs failed" in err
    assert "error" in out and "fault injected at epoch-end:1" in out


@pytest.mark.slow
def test_sigterm_is_recorded_like_sigint(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "kdlib", "train", "--epochs", "200", "--batch-size", "50"]
    cmd += ["--val-size", "100", "--device", "cpu", "--quiet", "--runs-dir", str(runs)]
    cmd += ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the run trains (its first epoch done)
            done = list(runs.glob("*/history.csv"))
            if done and len(done[0].read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == 143
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    metrics = RunRecord(run_dir).metrics()
    assert metrics["status"] == "failed" and "SIGTERM" in metrics["error"]


def test_resuming_removes_half_written_temporaries(tiny_data: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run_training(_cfg(tiny_data, runs, epochs=2, checkpoint_every=1), progress=False)
    rec = RunRecord(first)
    state_dir = Path(rec.config()["state_dir"])
    stale = [first / ".metrics.json.abc123.tmp", state_dir / ".checkpoint.pt.def456.tmp"]
    for path in stale:
        path.write_text("half")
    metrics = rec.metrics()
    rec.write_metrics({**metrics, "status": "failed"})  # as a killed run looks: resumable
    run_training(_cfg(tiny_data, runs, epochs=2, checkpoint_every=1), progress=False)
    assert not any(path.exists() for path in stale)
    assert (first / "metrics.json").exists() and RunRecord(first).metrics()["status"] == "completed"


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(
    damage: str, tiny_data: dict, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cfg = _cfg(tiny_data, runs, epochs=2, checkpoint_every=1)
    first = run_training(cfg, progress=False)
    rec = RunRecord(first)
    ckpt = Path(rec.config()["state_dir"]) / "checkpoint.pt"
    data = ckpt.read_bytes()
    garbage = random.Random(damage).randbytes(4096)
    ckpt.write_bytes(garbage if damage == "random bytes" else data[: len(data) // 2])
    rec.write_metrics({**rec.metrics(), "status": "failed"})  # killed: to be resumed
    with pytest.warns(RunsWarning, match="damaged"):
        again = run_training(cfg, progress=False)
    assert again == first
    metrics = RunRecord(again).metrics()
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    assert len(RunRecord(again).history()) == 2  # trained again from epoch 1
    (kept,) = ckpt.parent.glob("checkpoint.pt.damaged-*")
    assert str(kept) in metrics["damaged_checkpoints"]


@pytest.fixture
def make_read_only():
    """Make folders read-only in a way that binds root too (a read-only bind mount) or,
    for other users, by permissions; skip where neither is possible."""
    import shutil

    mounted: list[Path] = []

    def make(folder: Path) -> None:
        if os.geteuid() != 0:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
            return
        if not shutil.which("mount"):
            pytest.skip("no mount command to make a folder read-only for root")
        bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if bind.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
        mounted.append(folder)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_runs_folder_still_answers_with_a_finished_run(
    tiny_data: dict, tmp_path: Path, make_read_only, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    cfg = _cfg(tiny_data, runs)
    run_dir = run_training(cfg, progress=False)
    make_read_only(runs)
    args = ["train", "--epochs", "1", "--batch-size", "50", "--val-size", "100"]
    args += ["--device", "cpu", "--runs-dir", str(runs), "--quiet"]
    args += ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"]]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir)
    # Another configuration would have to write there: refused in one line, nothing left.
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--runs-dir: cannot write into" in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [run_dir.name]


def test_a_read_only_cache_is_refused_before_any_decoding(
    tiny_data: dict, tmp_path: Path, make_read_only, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    make_read_only(cache)
    code = main(
        ["data", "prepare", "--dataset", "cifar10", "--data-dir", tiny_data["data_dir"]]
        + ["--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot write into" in err and len(err.strip().splitlines()) == 1, err
    assert list(cache.iterdir()) == []
