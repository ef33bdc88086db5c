"""The training loop on a tiny synthetic dataset: complete records, determinism, failures."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest
import torch

import kdlib.claim
import kdlib.train
from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.errors import KdlibError
from kdlib.locks import RunLocked, run_lock
from kdlib.models import create_model, save_weights
from kdlib.runs import RunRecord, load_runs, new_run_id
from kdlib.train import run_training

CONFIG_KEYS = {
    "method",
    "student",
    "teacher",
    "dataset",
    "epochs",
    "seed",
    "dataset_fingerprint",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "config_hash",
}
METRIC_KEYS = {
    "status",
    "final_test_acc",
    "final_val_acc",
    "best_val_epoch",
    "test_acc_at_best_val",
    "best_test_acc",
    "wall_seconds",
}


def _cfg(tiny_data: dict, tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        method="nokd",
        student="resnet8",
        epochs=2,
        seed=0,
        batch_size=50,
        val_size=100,
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        **tiny_data,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("teacher") / "resnet14.pt"
    save_weights(create_model("resnet14", 10), path)
    return str(path)


def test_nokd_run_leaves_a_complete_record(tiny_data: dict, tmp_path: Path) -> None:
    run_dir = run_training(_cfg(tiny_data, tmp_path, epochs=3, lr=0.05), progress=False)
    rec = RunRecord(run_dir)
    config, metrics = rec.config(), rec.metrics()
    assert set(config) >= CONFIG_KEYS
    assert set(metrics) >= METRIC_KEYS
    assert metrics["status"] == "completed"
    assert config["train_size"] == 300 and config["val_size_actual"] == 100
    assert {"torch", "device_name", "git_commit"} <= set(rec.env())
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"lr", "train_loss", "train_acc", "val_acc", "test_acc", "seconds", "loss_ce"} <= set(
        rows[0]
    )
    # lr x0.1 after int(0.33*3)=0 (skipped) and int(0.66*3)=1 epochs
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.05, 0.005, 0.005])
    # the colour-coded classes are easy: well above the 10% of chance
    assert metrics["final_test_acc"] > 50.0
    # weights go to the cache, not into runs/
    assert Path(metrics["weights_path"]).is_file()
    assert not list(run_dir.glob("*.pt"))


def test_same_seed_same_result_on_cpu(tiny_data: dict, tmp_path: Path) -> None:
    a = RunRecord(run_training(_cfg(tiny_data, tmp_path / "a", epochs=1), progress=False))
    b = RunRecord(run_training(_cfg(tiny_data, tmp_path / "b", epochs=1), progress=False))
    c = RunRecord(run_training(_cfg(tiny_data, tmp_path / "c", epochs=1, seed=1), progress=False))
    cols = ["train_loss", "test_acc", "val_acc"]
    assert a.history()[cols].equals(b.history()[cols])
    assert not a.history()[cols].equals(c.history()[cols])


def test_same_config_in_two_runs_dirs_under_one_name_shares_nothing(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs train and record their own history even when their run ids are equal
    (same configuration, same second, no random token): each claims its own folder in the
    shared cache for its checkpoint and weights."""
    frozen = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(kdlib.claim, "new_run_id", lambda c: new_run_id(c, now=frozen, token=""))
    a = RunRecord(run_training(_cfg(tiny_data, tmp_path / "a", epochs=1), progress=False))
    b = RunRecord(run_training(_cfg(tiny_data, tmp_path / "b", epochs=1), progress=False))
    assert a.run_id == b.run_id
    for rec in (a, b):
        assert rec.metrics()["status"] == "completed"
        assert "resumed_at_epochs" not in rec.metrics()
        assert list(rec.history()["epoch"]) == [1]
    assert a.config()["state_dir"] != b.config()["state_dir"]
    assert a.metrics()["weights_path"] != b.metrics()["weights_path"]


def test_a_held_lock_stops_a_second_process_of_the_same_configuration(
    tiny_data: dict, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_data, tmp_path, epochs=1)
    first = RunRecord(run_training(cfg, progress=False))
    # A finished run never changes: found even while another process holds the lock.
    with run_lock(cfg.runs_dir, first.config()["config_hash"]):
        assert run_training(cfg, progress=False) == first.path
    # One in progress elsewhere (lock held, record says running) is not touched.
    metrics = first.metrics()
    first.write_metrics({**metrics, "status": "running"})
    with run_lock(cfg.runs_dir, first.config()["config_hash"]), pytest.raises(RunLocked):
        run_training(cfg, progress=False)
    assert first.metrics()["status"] == "running"


def test_teacher_checkpoint_counts_by_content_not_path(
    tiny_data: dict, tmp_path: Path, teacher_checkpoint: str
) -> None:
    def kd(ckpt: str) -> Path:
        cfg = _cfg(
            tiny_data,
            tmp_path,
            method="kd",
            teacher="resnet14",
            teacher_checkpoint=ckpt,
            epochs=1,
        )
        return run_training(cfg, progress=False)

    first = kd(teacher_checkpoint)
    copy = tmp_path / "elsewhere" / "teacher.pt"
    copy.parent.mkdir()
    shutil.copyfile(teacher_checkpoint, copy)
    assert kd(str(copy)) == first  # same weights under another path: the same run
    torch.manual_seed(7)
    save_weights(create_model("resnet14", 10), copy)
    assert kd(str(copy)) != first  # other weights under that path: a new run


def test_a_method_record_does_not_change_the_run_identity(
    tiny_data: dict, tmp_path: Path, teacher_checkpoint: str
) -> None:
    """AB records its initialisation time; re-running must still find the same run."""
    cfg = _cfg(
        tiny_data,
        tmp_path,
        method="ab",
        teacher="resnet14",
        teacher_checkpoint=teacher_checkpoint,
        epochs=1,
    )
    first = run_training(cfg, progress=False)
    assert "init_seconds" in RunRecord(first).config()["method_record"]
    assert run_training(cfg, progress=False) == first


def test_kd_from_checkpoint_records_teacher(
    tiny_data: dict, tmp_path: Path, teacher_checkpoint: str
) -> None:
    cfg = _cfg(
        tiny_data,
        tmp_path,
        method="kd",
        teacher="resnet14",
        teacher_checkpoint=teacher_checkpoint,
        epochs=1,
        method_params={"T": "4"},
    )
    rec = RunRecord(run_training(cfg, progress=False))
    assert rec.config()["method_hparams"] == {"T": 4.0, "lambda": 0.5}
    assert rec.config()["method_record"] == {"teacher_frozen": True}
    assert 0.0 <= rec.metrics()["teacher_test_acc"] <= 100.0
    assert {"loss_ce", "loss_kd"} <= set(rec.history().columns)


def test_teacher_without_checkpoint_is_trained_first(tiny_data: dict, tmp_path: Path) -> None:
    cfg = _cfg(tiny_data, tmp_path, method="kd", teacher="resnet8", epochs=1, teacher_epochs=1)
    rec = RunRecord(run_training(cfg, progress=False))
    teacher_rec = RunRecord(rec.config()["teacher_run"])
    assert teacher_rec.config()["method"] == "nokd"
    assert teacher_rec.metrics()["status"] == "completed"
    assert len(load_runs(tmp_path / "runs")) == 2


def test_mismatched_teacher_checkpoint_fails_before_any_run_dir(
    tiny_data: dict, tmp_path: Path
) -> None:
    path = tmp_path / "t100.pt"
    save_weights(create_model("resnet8", 100), path)
    cfg = _cfg(tiny_data, tmp_path, method="kd", teacher="resnet8", teacher_checkpoint=str(path))
    with pytest.raises(KdlibError, match="100 classes"):
        run_training(cfg, progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_failure_mid_run_is_recorded(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("kdlib.loop.evaluate", boom)
    with pytest.raises(RuntimeError):
        run_training(_cfg(tiny_data, tmp_path, epochs=1), progress=False)
    df = load_runs(tmp_path / "runs")
    assert list(df["status"]) == ["failed"]
    assert "disk on fire" in df["error"].iloc[0]


def test_non_finite_loss_marks_the_run_diverged(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdlib.methods.nokd import NoKD

    def nan_forward(self, images, labels):
        logits = self.student(images)
        return logits, {"ce": logits.sum() * float("nan")}

    monkeypatch.setattr(NoKD, "forward", nan_forward)
    rec = RunRecord(run_training(_cfg(tiny_data, tmp_path, epochs=3), progress=False))
    metrics = rec.metrics()
    assert metrics["status"] == "diverged"
    assert (metrics["diverged_epoch"], metrics["diverged_step"]) == (1, 0)
    assert "epoch 1, step 0" in metrics["error"]
    assert rec.history().empty
    # a diverged run is a result: running the configuration again returns it untouched
    stamp = (rec.path / "metrics.json").stat().st_mtime_ns
    assert run_training(_cfg(tiny_data, tmp_path, epochs=3), progress=False) == rec.path
    assert (rec.path / "metrics.json").stat().st_mtime_ns == stamp


def test_paper_milestones() -> None:
    assert TrainConfig(epochs=200).milestone_epochs() == [66, 132]
    assert TrainConfig(epochs=350).milestone_epochs() == [115, 231]


def test_rerunning_a_completed_configuration_returns_it_without_training(
    tiny_data: dict, tmp_path: Path
) -> None:
    first = run_training(_cfg(tiny_data, tmp_path, epochs=1), progress=False)
    stamp = (first / "metrics.json").stat().st_mtime_ns
    # where files go, how often to checkpoint and how malloc waits do not make it another run
    again = run_training(
        _cfg(tiny_data, tmp_path, epochs=1, checkpoint_every=3, cpu_allocator="default"),
        progress=False,
    )
    assert again == first
    assert (first / "metrics.json").stat().st_mtime_ns == stamp
    other = run_training(_cfg(tiny_data, tmp_path, epochs=1, seed=3), progress=False)
    assert other != first


def test_a_finished_ab_run_is_found_before_any_data_is_loaded(
    tiny_data: dict,
    tmp_path: Path,
    teacher_checkpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    # AB's setup trains (its init epochs) and a lookup used to load the data and build the
    # method first: its identity is now computed from the settings and the cache's meta.
    cfg = _cfg(
        tiny_data,
        tmp_path,
        method="ab",
        teacher="resnet14",
        teacher_checkpoint=teacher_checkpoint,
        epochs=1,
    )
    first = run_training(cfg, progress=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run must be found without this")

    for name in ("load_dataset", "make_loaders", "build_teachers", "build_method", "build"):
        monkeypatch.setattr(kdlib.train, name, forbidden)
    assert run_training(cfg, progress=False) == first
    # the run's own config.json given to `kdlib train --config` repeats it: found, as is
    capsys.readouterr()
    assert main(["train", "--config", str(first / "config.json"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [str(first)]
    # The early identity is the recorded one, key for key.
    recorded = RunRecord(first).config()
    ident = kdlib.claim.run_identity(
        cfg,
        torch.device("cpu"),
        kdlib.claim.resolve_speed(cfg, torch.device("cpu")),
        recorded["dataset_fingerprint"],
        recorded["num_classes"],
        400,  # the tiny data set's train and test sizes
        200,
    )
    assert ident["config_hash"] == recorded["config_hash"]
    assert {k: v for k, v in ident.items() if k not in ("teacher_run", "method_record")} == {
        k: v
        for k, v in recorded.items()
        if k not in ("teacher_run", "method_record", "state_dir", "run_id")
    }


@pytest.mark.parametrize(
    "speed",
    [
        {"loop": "classic", "num_workers": 0},
        {"precision": "bf16", "channels_last": True},
        {"compile": True, "batch_size": 64},  # 300 images: a last partial batch of 44
    ],
    ids=["classic", "bf16-channels-last", "compile"],
)
def test_every_speed_setting_trains_and_is_recorded(
    speed: dict, tiny_data: dict, tmp_path: Path
) -> None:
    rec = RunRecord(run_training(_cfg(tiny_data, tmp_path, epochs=1, **speed), progress=False))
    assert rec.metrics()["status"] == "completed"
    recorded = rec.config()["speed"]
    for key in ("loop", "precision", "channels_last", "compile"):
        if key in speed:
            assert recorded[key] == speed[key]
    assert rec.metrics()["final_train_loss"] > 0


@pytest.mark.parametrize("method", ["nokd", "uda_nokd"])
def test_a_teacher_free_method_ignores_a_given_teacher(
    method: str, tiny_data: dict, tmp_path: Path, teacher_checkpoint: str
) -> None:
    """A sweep row of nokd with the base's teacher is the same run as nokd alone: the
    teacher is neither loaded nor evaluated nor part of the identity or the run id."""
    given = _cfg(
        tiny_data,
        tmp_path,
        method=method,
        teacher="resnet14",
        teacher_checkpoint=teacher_checkpoint,
        teacher_epochs=3,
        epochs=1,
    )
    rec = RunRecord(run_training(given, progress=False))
    config = rec.config()
    assert config["teacher"] is None and config["teacher_checkpoint"] is None
    assert "teacher_checkpoint_sha256" not in config
    assert "-from-" not in rec.run_id
    assert "teacher_test_acc" not in rec.metrics()
    alone = run_training(_cfg(tiny_data, tmp_path, method=method, epochs=1), progress=False)
    assert alone == rec.path
