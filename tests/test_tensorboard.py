"""``--tensorboard DIR``: each run's history as TensorBoard scalars, off by default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.errors import KdlibError
from kdlib.plan import check
from kdlib.runs import RunRecord, identity_keys
from kdlib.train import run_training


def test_it_is_off_by_default_and_no_part_of_the_identity(tmp_path: Path) -> None:
    assert TrainConfig().tensorboard is None
    config = TrainConfig(tensorboard=str(tmp_path)).to_dict()
    assert "tensorboard" not in identity_keys(config)


def test_without_the_package_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(KdlibError, match="pip install tensorboard"):
        check(TrainConfig(tensorboard="tb"))


def test_the_flag_comes_from_the_settings_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert main(["train", "--tensorboard", str(afile), "--epochs", "1"]) == 2
    assert "--tensorboard=" in capsys.readouterr().err  # a folder kdlib writes into


@pytest.mark.slow
def test_a_run_writes_its_scalars(tiny_data: dict, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(
        epochs=2,
        batch_size=50,
        val_size=100,
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        tensorboard=str(tmp_path / "tb"),
        **tiny_data,
    )
    rec = RunRecord(run_training(cfg, progress=False))
    (events,) = (tmp_path / "tb" / rec.run_id).glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    history = rec.history()
    for tag in ("train_loss", "test_acc", "val_acc", "lr"):
        scalars = acc.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(list(history[tag]), rel=1e-6)


def test_a_folder_that_cannot_be_written_is_refused_before_the_run_exists(
    tiny_data: dict, tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    cfg = TrainConfig(
        epochs=1,
        val_size=100,
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        tensorboard=str(afile / "tb"),  # below a file: no folder can be made there
        **tiny_data,
    )
    with pytest.raises(KdlibError, match="--tensorboard"):
        run_training(cfg, progress=False)
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]
