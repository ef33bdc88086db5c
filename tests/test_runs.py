"""Run records: atomic files, statuses, and load_runs."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from kdlib.io import atomic_write, write_json
from kdlib.loop import summarize
from kdlib.runs import RunRecord, config_hash, load_runs, new_run_id, setting_hash

CONFIG = {
    "method": "kd",
    "student": "resnet8",
    "teacher": "resnet26",
    "dataset": "cifar10",
    "epochs": 2,
    "seed": 1,
    "method_params": {"T": 5.0},
}


def _leftover_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write('{"v": 2, "half')
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"v": 1}
    assert _leftover_temp_files(tmp_path) == []


def test_create_writes_config_env_and_running_status(tmp_path: Path) -> None:
    rec = RunRecord.create(tmp_path, "r1", CONFIG, {"torch": "x"})
    assert rec.config()["run_id"] == "r1" and rec.config()["seed"] == 1
    assert rec.env() == {"torch": "x"}
    assert rec.metrics() == {"status": "running"}
    rec2 = RunRecord.create(tmp_path, "r1", CONFIG, {})
    assert rec2.path.name == "r1-2"


def test_metrics_status_is_checked_and_nan_stored_as_null(tmp_path: Path) -> None:
    rec = RunRecord.create(tmp_path, "r", CONFIG, {})
    with pytest.raises(ValueError, match="status"):
        rec.write_metrics({"status": "done"})
    rec.write_metrics({"status": "failed", "final_test_acc": float("nan")})
    assert rec.metrics()["final_test_acc"] is None


def test_history_round_trip(tmp_path: Path) -> None:
    rec = RunRecord.create(tmp_path, "r", CONFIG, {})
    rows = [{"epoch": 1, "lr": 0.1, "test_acc": 20.0}, {"epoch": 2, "lr": 0.01, "test_acc": 30.5}]
    rec.write_history(rows)
    hist = rec.history()
    assert list(hist["test_acc"]) == [20.0, 30.5]
    assert _leftover_temp_files(tmp_path) == []


def test_load_runs_one_row_per_run_and_incomplete_runs_are_visible(tmp_path: Path) -> None:
    done = RunRecord.create(tmp_path, "done", CONFIG, {"device_name": "H100"})
    done.write_metrics({"status": "completed", "final_test_acc": 90.1})
    RunRecord.create(tmp_path, "killed", {**CONFIG, "seed": 2}, {})  # stays "running"
    broken = RunRecord.create(tmp_path, "broken", CONFIG, {})
    (broken.path / "metrics.json").write_text('{"status": "comp')  # not via kdlib: corrupt
    gone = RunRecord.create(tmp_path, "gone", CONFIG, {})
    (gone.path / "metrics.json").unlink()
    df = load_runs(tmp_path).set_index("run_id")
    assert df.loc["done", "status"] == "completed"
    assert df.loc["done", "final_test_acc"] == 90.1
    assert df.loc["done", "env.device_name"] == "H100"
    assert df.loc["done", "method_params.T"] == 5.0
    assert df.loc["killed", "status"] == "running"
    assert df.loc["broken", "status"] == "unreadable"
    assert df.loc["gone", "status"] == "incomplete"
    assert (df["status"] == "completed").sum() == 1


def test_load_runs_of_empty_dir_has_columns(tmp_path: Path) -> None:
    df = load_runs(tmp_path)
    assert len(df) == 0 and "status" in df.columns


def test_config_hash_ignores_paths_and_device_but_not_settings() -> None:
    base = config_hash(CONFIG)
    assert config_hash({**CONFIG, "runs_dir": "/x", "device": "cuda"}) == base
    assert config_hash({**CONFIG, "seed": 2}) != base
    assert config_hash({**CONFIG, "method_params": {"T": 4.0}}) != base
    # what the run found out, and how a teacher's path is spelled, are not settings
    found = {"method_record": {"init_seconds": 3.2}, "teacher_run": "runs/x"}
    assert config_hash({**CONFIG, **found, "teacher_checkpoint": "../t.pth"}) == base
    assert config_hash({**CONFIG, "teacher_checkpoint_sha256": ["ab12"]}) != base


def test_setting_hash_pools_seeds_and_nothing_that_changes_a_number() -> None:
    base = setting_hash(CONFIG)
    assert setting_hash({**CONFIG, "seed": 7}) == base
    # a copy of the weights, or the classic loop's workers, changes no number
    assert setting_hash({**CONFIG, "save_weights": True, "num_workers": 8}) == base
    assert config_hash({**CONFIG, "save_weights": True}) != config_hash(CONFIG)
    assert setting_hash({**CONFIG, "teacher_checkpoint_sha256": ["ab12"]}) != base
    assert setting_hash({**CONFIG, "method_params": {"T": 4.0}}) != base


def test_run_id_is_readable_and_unique_within_a_second() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    a, b = new_run_id(CONFIG, now=now), new_run_id(CONFIG, now=now)
    assert re.fullmatch(r"20260102-030405-kd-resnet8-from-resnet26-cifar10-e2-s1-[0-9a-f]{6}", a)
    assert a != b
    plain = new_run_id(CONFIG, now=now, token="")
    assert plain == "20260102-030405-kd-resnet8-from-resnet26-cifar10-e2-s1"


def test_summarize_reports_final_best_val_and_best_test() -> None:
    hist = [
        {"epoch": 1, "train_loss": 2.0, "val_acc": 50.0, "test_acc": 49.0, "seconds": 1.0},
        {"epoch": 2, "train_loss": 1.0, "val_acc": 70.0, "test_acc": 66.0, "seconds": 3.0},
        {"epoch": 3, "train_loss": 0.9, "val_acc": 69.0, "test_acc": 68.0, "seconds": 2.0},
    ]
    s = summarize(hist)
    assert s["final_test_acc"] == 68.0 and s["final_val_acc"] == 69.0
    assert s["best_val_epoch"] == 2 and s["test_acc_at_best_val"] == 66.0
    assert s["best_test_acc"] == 68.0 and s["best_test_epoch"] == 3
    assert s["train_seconds_per_epoch"] == pytest.approx(2.0)
