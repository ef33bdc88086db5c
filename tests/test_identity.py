"""Run identities do not move: the config hashes of one tiny configuration per method
family, pinned as computed by kdlib before the seed variants came (commit 3d42493), so a
refactor that changes what a run is called, and would orphan the runs in ``runs/``, fails.

Methods whose computation changed on purpose get a new identity instead: at and fitnet
through ``revision``, SFD's seed variant alone through ``revision_for`` (checked below),
the seed-variant methods through their ``variant``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlib.config import TrainConfig
from kdlib.models import create_model, save_weights
from kdlib.runs import RunRecord, config_hash
from kdlib.train import run_training

PINNED = {
    "nokd": "8dd0a182e2",
    "kd": "66cf710e32",
    "kd_T4": "e14c6c3912",
    "takd": "de8e9a5389",
    "mkd": "e13870eee3",
    "dkd": "8be2512e34",
    "uda_nokd": "4e901cc544",
    "kd_trained_teacher": "647998c5b1",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pinned-teachers")
    out = {}
    for name, seed in (("resnet14", 123), ("resnet20", 124)):
        torch.manual_seed(seed)
        path = root / f"{name}.pt"
        save_weights(create_model(name, 10), path)
        out[name] = str(path)
    return out


def _cases(ck: dict[str, str]) -> dict[str, dict]:
    t14 = {"teacher": "resnet14", "teacher_checkpoint": ck["resnet14"]}
    return {
        "nokd": {"method": "nokd"},
        "kd": {"method": "kd", **t14},
        "kd_T4": {"method": "kd", **t14, "method_params": {"T": 4}},
        "takd": {"method": "takd", **t14, "method_params": {"ta": "resnet8"}},
        "mkd": {
            "method": "mkd",
            "teacher": "resnet14,resnet20",
            "teacher_checkpoint": f"{ck['resnet14']},{ck['resnet20']}",
        },
        "dkd": {"method": "dkd", **t14},
        "uda_nokd": {"method": "uda_nokd"},
        "kd_trained_teacher": {"method": "kd", "teacher": "resnet8", "teacher_epochs": 1},
    }


def _run(tiny_data: dict, tmp_path: Path, **settings) -> RunRecord:
    cfg = TrainConfig(
        student="resnet8",
        epochs=1,
        seed=0,
        batch_size=50,
        val_size=100,
        device="cpu",
        precision="fp32",
        channels_last=False,
        runs_dir=str(tmp_path / "runs"),
        **tiny_data,
        **settings,
    )
    return RunRecord(run_training(cfg, progress=False))


@pytest.mark.parametrize("case", list(PINNED))
def test_config_hash_is_pinned(
    case: str, tiny_data: dict, tmp_path: Path, checkpoints: dict[str, str]
) -> None:
    rec = _run(tiny_data, tmp_path, **_cases(checkpoints)[case])
    assert rec.config()["config_hash"] == PINNED[case]


def test_a_revised_method_is_another_run(
    tiny_data: dict, tmp_path: Path, checkpoints: dict[str, str]
) -> None:
    rec = _run(tiny_data, tmp_path, method="at", teacher="resnet14",
               teacher_checkpoint=checkpoints["resnet14"])  # fmt: skip
    config = rec.config()
    assert config["method_revision"] == 1  # at: beta, not beta / 2

    before = {k: v for k, v in config.items() if k != "method_revision"}
    assert config_hash(before) != config["config_hash"]


def test_a_fix_to_one_variant_gives_that_variant_alone_a_new_identity() -> None:
    # SFD's seed variant was fixed (revision 1: PyTorch 1.3's pairwise_distance); the
    # original variant computes what it did, and its recorded runs must still be found.
    from kdlib.claim import resolve_speed, run_identity

    cpu = torch.device("cpu")
    hashes = {}
    for variant, revision in (("seed", 1), ("original", None)):
        cfg = TrainConfig(
            method="sfd", teacher="resnet26", method_params={"variant": variant}, device="cpu"
        )
        config = run_identity(cfg, cpu, resolve_speed(cfg, cpu), "fingerprint", 10, 50000, 10000)
        assert config.get("method_revision") == revision, variant
        before = {k: v for k, v in config.items() if k != "method_revision"}
        hashes[variant] = (config_hash(before), config["config_hash"])
    assert hashes["seed"][0] != hashes["seed"][1]
    assert hashes["original"][0] == hashes["original"][1]


STUDY_RUNS = sorted((Path(__file__).resolve().parents[1] / "runs").glob("*/config.json"))


@pytest.mark.shared_data  # their teacher checkpoints count by content
@pytest.mark.parametrize("config_path", STUDY_RUNS, ids=[p.parent.name for p in STUDY_RUNS])
def test_the_study_runs_keep_their_identity(config_path: Path, shared_data: Path) -> None:
    """Every run recorded in runs/ is found again: its identity, computed afresh from its
    recorded settings and data set, is the hash it was recorded under."""
    import json

    from kdlib.claim import run_identity
    from kdlib.data import DATASETS
    from kdlib.speed import Speed

    recorded = json.loads(config_path.read_text())
    cfg = TrainConfig.from_run(recorded)
    if cfg.teacher_checkpoint:  # recorded relative to the repository root
        root = config_path.parents[2]
        cfg.teacher_checkpoint = ",".join(
            str(root / p) if p else "" for p in cfg.teacher_checkpoints()
        )
    spec = DATASETS[cfg.dataset]
    ident = run_identity(
        cfg,
        torch.device("cpu"),
        Speed(**recorded["speed"]),
        recorded["dataset_fingerprint"],
        spec.num_classes,
        spec.counts["train"],
        spec.counts["test"],
    )
    assert ident["config_hash"] == recorded["config_hash"]
    assert config_hash(recorded) == recorded["config_hash"]
