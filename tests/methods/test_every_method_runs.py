"""Every registered method completes a 1-epoch CPU run on 512 images with a full record."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.config import TrainConfig
from kdlib.methods import GridMethod, list_methods, method_class
from kdlib.runs import RunRecord
from kdlib.train import run_method

pytestmark = pytest.mark.slow  # one real training run per method and variant

# Small grids so that grid methods stay quick in CI; their full defaults are tested elsewhere.
GRID_PARAMS = {
    "kdparam": {"T_values": "1,5", "lambda_values": "0.5"},
}


def _teacher_args(name: str, checkpoints: dict[str, str]) -> dict:
    cls = method_class(name)
    if cls.multi_teacher:
        return {
            "teacher": "resnet14,resnet20",
            "teacher_checkpoint": f"{checkpoints['resnet14']},{checkpoints['resnet20']}",
        }
    if cls.needs_teacher:
        return {"teacher": "resnet14", "teacher_checkpoint": checkpoints["resnet14"]}
    return {}


def _one_epoch(
    method: str, params: dict, checkpoints: dict[str, str], data: dict, runs: Path
) -> TrainConfig:
    """One CPU epoch of ``method`` with ``params`` on the 512-image data set."""
    return TrainConfig(
        method=method,
        student="resnet8",
        epochs=1,
        seed=0,
        val_size=128,
        device="cpu",
        runs_dir=str(runs),
        method_params=params,
        **_teacher_args(method, checkpoints),
        **data,
    )


@pytest.mark.parametrize("method", list_methods())
def test_one_epoch_run_writes_a_full_record(
    method: str, small_data: dict, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    cls = method_class(method)
    params = dict(GRID_PARAMS.get(method, {}))
    if "ta" in cls.params:
        params["ta"] = "resnet8"
    cfg = _one_epoch(method, params, teacher_checkpoints, small_data, tmp_path)
    run_dirs = run_method(cfg, progress=False)
    assert run_dirs
    if issubclass(cls, GridMethod):
        assert len(run_dirs) > 1
    for run_dir in run_dirs:
        rec = RunRecord(run_dir)
        metrics = rec.metrics()
        assert metrics["status"] == "completed", metrics.get("error")
        assert metrics["final_test_acc"] is not None
        assert len(rec.history()) == 1
        config = rec.config()
        assert config["train_size"] == 512
        assert "method_record" in config
    final = RunRecord(run_dirs[-1]).config()
    assert final["method"] == method or final.get("grid") == method


SEED_VARIANTS = [m for m in list_methods() if "variant" in method_class(m).params]


@pytest.mark.parametrize("method", SEED_VARIANTS)
def test_the_seed_variant_runs_and_is_recorded(
    method: str, small_data: dict, teacher_checkpoints: dict, tmp_path: Path
) -> None:
    params = {"variant": "seed", **({"init_epochs": 1} if method == "ab" else {})}
    cfg = _one_epoch(method, params, teacher_checkpoints, small_data, tmp_path)
    (run_dir,) = run_method(cfg, progress=False)
    rec = RunRecord(run_dir)
    assert rec.metrics()["status"] == "completed", rec.metrics().get("error")
    config = rec.config()
    assert config["method_hparams"]["variant"] == "seed"
    assert config["method_record"]["variant"] == "seed"
