"""Logit-based methods (kdparam, allkd, takd, mkd, uda, uda_nokd, triplet, dkd): losses
against hand computations or NumPy references, grid expansions, stages, early errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.data.augment import normalize
from kdlib.methods import TrainContext, create_method, list_methods, method_class, resolve_params
from kdlib.methods.uda import denormalize_uint8, view_seed
from tests.method_helpers import (
    INDEX,
    LABELS,
    STUDENT,
    TEACHER,
    Fixed,
    hand_ce,
    hand_kd,
    hand_kl,
    np_ce,
    np_kd,
    np_log_softmax,
    softmax,
)

NEW_METHODS = ("kdparam", "allkd", "takd", "mkd", "uda", "uda_nokd", "triplet", "dkd")

TEACHER2 = [[-1.0, 0.0, 2.5], [1.5, 0.0, 0.0]]


def _total(losses: dict[str, torch.Tensor]) -> float:
    return float(sum(losses.values()).item())


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``kdlib`` expecting exit code 2; return its one-line message."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlib: error:") and "\n" not in err, err
    return err


@pytest.fixture
def ckpt(teacher_checkpoints: dict[str, str]) -> str:
    """A real (randomly initialised) resnet20 checkpoint: validation loads it."""
    return teacher_checkpoints["resnet20"]


def test_new_methods_are_registered_with_one_line_descriptions() -> None:
    assert set(NEW_METHODS) <= set(list_methods())
    for name in NEW_METHODS:
        description = method_class(name).description
        assert description and "\n" not in description and len(description) <= 100


# ---------------------------------------------------------------- kdparam


def _expand(cfg: TrainConfig) -> list[TrainConfig]:
    cls = method_class(cfg.method)
    cfg.validate()
    return cls.expand(cfg, resolve_params(cls, cfg.method_params))


def test_kdparam_expands_to_the_full_t_by_lambda_product(ckpt: str) -> None:
    cfg = TrainConfig(method="kdparam", student="resnet8", teacher="resnet20", epochs=3)
    cfg.teacher_checkpoint = ckpt
    runs = _expand(cfg)
    temps, lambdas = [1.0, 5.0, 10.0, 15.0, 20.0], [0.1, 0.4, 0.5, 0.7, 1.0]
    assert [r.method_params for r in runs] == [
        {"T": T, "lambda": lam} for T, lam in itertools.product(temps, lambdas)
    ]
    assert len({(r.method_params["T"], r.method_params["lambda"]) for r in runs}) == 25
    for run in runs:
        assert (run.method, run.grid) == ("kd", "kdparam")
        assert (run.student, run.teacher, run.teacher_checkpoint, run.epochs) == (
            "resnet8",
            "resnet20",
            ckpt,
            3,
        )
        # each cell really is a KD run with its own T and lambda (the seed code's sweep
        # never set T): its loss is the hand-computed KD loss of that cell
        kd = create_method("kd", Fixed(STUDENT), Fixed(TEACHER), **run.method_params)
        T, lam = run.method_params["T"], run.method_params["lambda"]
        want = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * hand_kd(STUDENT, TEACHER, T)
        assert _total(kd(INDEX, torch.tensor(LABELS))[1]) == pytest.approx(want, rel=1e-4)
    assert cfg.method == "kdparam" and cfg.grid is None  # the grid's own config is untouched


def test_kdparam_custom_lists() -> None:
    cfg = TrainConfig(
        method="kdparam",
        teacher="resnet20",
        method_params={"T_values": "2, 4", "lambda_values": "0,1"},
    )
    runs = _expand(cfg)
    assert [(r.method_params["T"], r.method_params["lambda"]) for r in runs] == [
        (2.0, 0.0),
        (2.0, 1.0),
        (4.0, 0.0),
        (4.0, 1.0),
    ]


@pytest.mark.parametrize(
    ("param", "field"),
    [
        ("T_values=0,5", "T_values"),
        ("T_values=-1", "T_values"),
        ("T_values=hot,5", "T_values"),
        ("T_values=", "T_values"),
        ("T_values=5,5", "T_values"),
        ("lambda_values=0.5,1.5", "lambda_values"),
        ("lambda_values=-0.1", "lambda_values"),
    ],
)
def test_kdparam_bad_values_fail_early(
    param: str, field: str, ckpt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    err = _cli_error(
        ["train", "--method", "kdparam", "--teacher", "resnet20", "--teacher-checkpoint", ckpt]
        + ["-p", param, "--runs-dir", str(runs), "--quiet"],
        capsys,
    )
    assert field in err
    assert not runs.exists()


# ---------------------------------------------------------------- allkd


def test_allkd_default_is_one_kd_run_per_paper_teacher() -> None:
    runs = _expand(TrainConfig(method="allkd", student="resnet8"))
    assert [r.teacher for r in runs] == [
        "resnet8",
        "resnet14",
        "resnet20",
        "resnet26",
        "resnet32",
        "resnet44",
        "resnet56",
    ]
    for run in runs:
        assert (run.method, run.grid, run.student) == ("kd", "allkd", "resnet8")
        assert run.teacher_checkpoint is None  # trained first by the loop
        assert run.method_params == {"T": 5.0, "lambda": 0.5}


def test_allkd_takes_teachers_and_checkpoints_from_the_flags(
    teacher_checkpoints: dict[str, str],
) -> None:
    names = ["resnet14", "resnet20", "wrn16_1"]
    paths = [teacher_checkpoints[n] for n in names]
    cfg = TrainConfig(
        method="allkd",
        teacher=",".join(names),
        teacher_checkpoint=",".join(paths),
        method_params={"T": "4", "lambda": "0.7"},
    )
    runs = _expand(cfg)
    assert [(r.teacher, r.teacher_checkpoint) for r in runs] == list(zip(names, paths, strict=True))
    assert all(r.method_params == {"T": 4.0, "lambda": 0.7} for r in runs)
    assert all(r.grid == "allkd" and r.method == "kd" for r in runs)


def test_allkd_teachers_param() -> None:
    cfg = TrainConfig(method="allkd", method_params={"teachers": "resnet20, resnet32"})
    assert [r.teacher for r in _expand(cfg)] == ["resnet20", "resnet32"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-p", "teachers=resnet8,resnet999"], "resnet999"),
        (["-p", "teachers=resnet8,resnet8"], "duplicates"),
        (["--teacher", "resnet8,resnet14", "-p", "teachers=resnet20"], "not both"),
    ],
)
def test_allkd_bad_teachers_fail_early(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "allkd", "--runs-dir", str(tmp_path / "r"), "--quiet", *extra]
    assert message in _cli_error(argv, capsys)


# ---------------------------------------------------------------- takd


def test_takd_teacher_stage_is_kd_from_the_teacher_into_the_ta(ckpt: str) -> None:
    cfg = TrainConfig(
        method="takd",
        student="resnet8",
        teacher="resnet20",
        teacher_checkpoint=ckpt,
        epochs=7,
        seed=3,
        method_params={"ta": "resnet14", "T": "4", "lambda": "0.7"},
        save_weights=True,
    )
    cfg.validate()
    cls = method_class("takd")
    stage = cls.teacher_stage(cfg, resolve_params(cls, cfg.method_params))
    assert stage.method == "kd"
    assert (stage.student, stage.teacher, stage.teacher_checkpoint) == (
        "resnet14",
        "resnet20",
        ckpt,
    )
    assert stage.method_params == {"T": 4.0, "lambda": 0.7}
    assert (stage.epochs, stage.seed, stage.dataset) == (7, 3, cfg.dataset)
    assert stage.grid is None
    stage.validate()


def test_takd_default_ta_is_resnet20() -> None:
    cls = method_class("takd")
    cfg = TrainConfig(method="takd", teacher="resnet56")
    assert cls.teacher_stage(cfg, resolve_params(cls, {})).student == "resnet20"


def test_takd_student_stage_is_kd_and_records_the_ta() -> None:
    method = create_method("takd", Fixed(STUDENT), Fixed(TEACHER), ta="resnet14", T=4.0)
    _, losses = method(INDEX, torch.tensor(LABELS))
    expected = 0.5 * hand_ce(STUDENT, LABELS) + 0.5 * hand_kd(STUDENT, TEACHER, 4.0)
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    record = method.record()
    assert record["teacher_assistant"] == "resnet14" and record["teacher_frozen"]


@pytest.mark.parametrize(
    ("param", "message"),
    [("ta=resnet999", "resnet999"), ("ta=", "needs a teacher assistant")],
)
def test_takd_without_a_valid_ta_fails_early(
    param: str, message: str, ckpt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    argv = ["train", "--method", "takd", "--teacher", "resnet20", "--teacher-checkpoint", ckpt]
    err = _cli_error(argv + ["-p", param, "--runs-dir", str(runs), "--quiet"], capsys)
    assert message in err
    assert not runs.exists()


def test_takd_records_both_stages_and_links_them(tiny_data: dict, tmp_path: Path) -> None:
    from kdlib.models import create_model, save_weights
    from kdlib.runs import RunRecord
    from kdlib.train import run_method

    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_weights(create_model("resnet8", 10), teacher)
    runs_dir = tmp_path / "runs"
    cfg = TrainConfig(
        method="takd",
        student="resnet8",
        teacher="resnet8",
        teacher_checkpoint=str(teacher),
        epochs=1,
        val_size=100,
        train_limit=50,
        batch_size=50,
        eval_batch_size=200,
        device="cpu",
        runs_dir=str(runs_dir),
        method_params={"ta": "resnet8", "T": 4.0},
        **tiny_data,
    )
    (student_dir,) = run_method(cfg, progress=False)
    student = RunRecord(student_dir).config()
    ta_dir = Path(student["teacher_run"])
    assert ta_dir.parent == runs_dir and ta_dir != student_dir
    run_names = [p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(run_names) == sorted([ta_dir.name, student_dir.name])
    ta = RunRecord(ta_dir).config()
    assert (ta["method"], ta["student"], ta["teacher"]) == ("kd", "resnet8", "resnet8")
    assert ta["method_hparams"] == {"T": 4.0, "lambda": 0.5}
    assert student["method"] == "takd" and student["teacher"] == "resnet8"
    assert student["method_record"]["teacher_assistant"] == "resnet8"
    assert RunRecord(ta_dir).metrics()["status"] == "completed"
    assert RunRecord(student_dir).metrics()["status"] == "completed"


# ---------------------------------------------------------------- mkd


@pytest.mark.parametrize(("T", "lam"), [(5.0, 0.5), (2.0, 0.0), (4.0, 1.0)])
def test_mkd_is_ce_plus_the_mean_of_per_teacher_kd(T: float, lam: float) -> None:
    teachers = nn.ModuleList([Fixed(TEACHER, False), Fixed(TEACHER2, False)])
    method = create_method("mkd", Fixed(STUDENT), teachers, T=T, **{"lambda": lam})
    logits, losses = method(INDEX, torch.tensor(LABELS))
    kd = (hand_kd(STUDENT, TEACHER, T) + hand_kd(STUDENT, TEACHER2, T)) / 2
    expected = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * kd
    assert set(losses) == {"ce", "kd"}
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(logits, torch.tensor(STUDENT))


def test_mkd_mean_probs_variant_distils_the_averaged_teacher() -> None:
    T = 3.0
    method = create_method(
        "mkd", Fixed(STUDENT), [Fixed(TEACHER), Fixed(TEACHER2)], T=T, target="mean_probs"
    )
    _, losses = method(INDEX, torch.tensor(LABELS))
    kl = 0.0
    for s, t1, t2 in zip(STUDENT, TEACHER, TEACHER2, strict=True):
        mean = [(a + b) / 2 for a, b in zip(softmax(t1, T), softmax(t2, T), strict=True)]
        kl += hand_kl(mean, softmax(s, T))
    assert losses["kd"].item() == pytest.approx(0.5 * T * T * kl / 2, rel=1e-5)


def test_mkd_teachers_are_frozen() -> None:
    t1, t2 = nn.Linear(4, 3), nn.Linear(4, 3)
    method = create_method("mkd", nn.Linear(4, 3), nn.ModuleList([t1, t2]))
    method.train()
    assert not t1.training and not t2.training
    _, losses = method(torch.randn(5, 4), torch.randint(0, 3, (5,)))
    sum(losses.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in [*t1.parameters(), *t2.parameters()])
    assert method.record()["num_teachers"] == 2


@pytest.mark.parametrize("teachers", [["--teacher", "resnet20"], []])
def test_mkd_without_two_teachers_fails_early(
    teachers: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "mkd", *teachers, "--runs-dir", str(tmp_path / "r"), "--quiet"]
    assert "teacher" in _cli_error(argv, capsys)


def test_mkd_with_one_teacher_names_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "mkd", "--teacher", "resnet20", "--runs-dir", str(tmp_path)]
    assert "at least two teachers, got 1" in _cli_error(argv, capsys)


# ---------------------------------------------------------------- uda, uda_nokd

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@pytest.mark.parametrize(
    ("mean", "std"),
    [(CIFAR_MEAN, CIFAR_STD), ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)), (None, None)],
)
def test_denormalize_renormalize_round_trips_exactly(mean: tuple | None, std: tuple | None) -> None:
    if mean is None:  # arbitrary statistics, including small stds
        rng = np.random.default_rng(0)
        mean, std = tuple(rng.uniform(0, 1, 3)), tuple(rng.uniform(0.05, 0.5, 3))
    m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    random = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    for pixels in (every_value.contiguous(), random):
        x = normalize(pixels, m, s)
        back = denormalize_uint8(x, m, s)
        assert back.dtype == torch.uint8 and torch.equal(back, pixels)
        assert torch.equal(normalize(back, m, s), x)  # bit-identical re-normalization
        half = normalize(pixels, m, s, dtype=torch.float16)
        assert torch.equal(denormalize_uint8(half, m, s), pixels)


def _ctx(seed: int = 0, mean: tuple = CIFAR_MEAN, std: tuple = CIFAR_STD) -> TrainContext:
    return TrainContext(
        epochs=1,
        steps_per_epoch=1,
        num_classes=5,
        mean=torch.tensor(mean),
        std=torch.tensor(std),
        device=torch.device("cpu"),
        seed=seed,
        train_loader=[],
    )


def _invert(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A deterministic stand-in for AutoAugment: the photographic negative."""
    return 255 - x


def _linear(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def _np_logits(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    return x.reshape(len(x), -1) @ w.T + b


def _np_normalize(pixels: np.ndarray) -> np.ndarray:
    m = np.array(CIFAR_MEAN).reshape(1, 3, 1, 1)
    s = np.array(CIFAR_STD).reshape(1, 3, 1, 1)
    return (pixels / 255.0 - m) / s


@pytest.fixture
def batch() -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """uint8 pixels, the normalized batch the loop would give, and labels."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(6, 3, 4, 4), dtype=np.uint8)
    x = normalize(torch.from_numpy(pixels), CIFAR_MEAN, CIFAR_STD)
    return pixels, x, torch.tensor([0, 1, 2, 3, 4, 0])


@pytest.mark.parametrize(("T", "lam"), [(5.0, 0.5), (2.0, 0.8)])
def test_uda_is_half_kd_on_clean_plus_half_kd_on_the_augmented_view(
    batch: tuple, T: float, lam: float
) -> None:
    pixels, x, labels = batch
    student, teacher = _linear(0), _linear(1)
    method = create_method("uda", student, teacher, T=T, **{"lambda": lam})
    method.augment_fn = _invert
    method.setup(_ctx())
    logits, losses = method(x, labels)

    clean, aug = _np_normalize(pixels.astype(float)), _np_normalize(255.0 - pixels)
    s, sa = _np_logits(student, clean), _np_logits(student, aug)
    t, ta = _np_logits(teacher, clean), _np_logits(teacher, aug)  # teacher sees the same view
    y = labels.numpy()
    expected = {
        "ce": 0.5 * (1 - lam) * np_ce(s, y),
        "kd": 0.5 * lam * np_kd(s, t, T),
        "ce_aug": 0.5 * (1 - lam) * np_ce(sa, y),
        "kd_aug": 0.5 * lam * np_kd(sa, ta, T),
    }
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert np.allclose(logits.detach().numpy(), s, atol=1e-4)  # accuracy on the clean view


def test_uda_with_identity_augmentation_is_kd(batch: tuple) -> None:
    _, x, labels = batch
    student, teacher = _linear(0), _linear(1)
    uda = create_method("uda", student, teacher)
    uda.augment_fn = lambda p, g: p.clone()
    uda.setup(_ctx())
    kd = create_method("kd", student, teacher)
    assert _total(uda(x, labels)[1]) == pytest.approx(_total(kd(x, labels)[1]), rel=1e-5)


def test_uda_augments_with_a_generator_seeded_from_the_run_seed(batch: tuple) -> None:
    _, x, _ = batch
    seen: list[torch.Generator | None] = []

    def spy(p: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        seen.append(g)
        return p

    method = create_method("uda", _linear(0), _linear(1))
    method.augment_fn = spy
    method.setup(_ctx(seed=7))
    method.augmented(x)
    reference = torch.Generator().manual_seed(view_seed(7))
    assert seen[0] is method.augment_generator
    assert torch.equal(seen[0].get_state(), reference.get_state())
    assert view_seed(7) != 7 and view_seed(7) != view_seed(8)
    assert method.record()["augment_seed"] == view_seed(7)


def test_uda_real_autoaugment_view_is_repeatable_and_pixel_exact() -> None:
    pytest.importorskip("kdlib.data.autoaugment")
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    x = normalize(pixels, CIFAR_MEAN, CIFAR_STD)
    views = []
    for seed in (3, 3, 4):
        method = create_method("uda_nokd", _linear(0))
        method.setup(_ctx(seed=seed))
        views.append(method.augmented(x))
    assert torch.equal(views[0], views[1])  # same seed, same views
    assert not torch.equal(views[0], views[2])
    assert not torch.equal(views[0], x)  # 16 images: some sub-policy changes something
    m, s = torch.tensor(CIFAR_MEAN), torch.tensor(CIFAR_STD)
    assert torch.equal(normalize(denormalize_uint8(views[0], m, s), m, s), views[0])


def test_uda_needs_setup_before_training(batch: tuple) -> None:
    _, x, labels = batch
    method = create_method("uda", _linear(0), _linear(1))
    with pytest.raises(RuntimeError, match="setup"):
        method(x, labels)


@pytest.mark.parametrize(
    ("direction", "T", "weight"),
    [("clean_target", 1.0, 1.0), ("clean_target", 2.0, 0.3), ("aug_target", 1.0, 2.0)],
)
def test_uda_nokd_is_ce_plus_consistency(
    batch: tuple, direction: str, T: float, weight: float
) -> None:
    pixels, x, labels = batch
    student = _linear(0)
    method = create_method("uda_nokd", student, T=T, weight=weight, direction=direction)
    method.augment_fn = _invert
    method.setup(_ctx())
    _, losses = method(x, labels)
    s = _np_logits(student, _np_normalize(pixels.astype(float)))
    sa = _np_logits(student, _np_normalize(255.0 - pixels))
    # np_kd(a, b) is T^2 KL(p_b || p_a): the second argument is the distribution compared to.
    kl = np_kd(sa, s, T) if direction == "clean_target" else np_kd(s, sa, T)
    assert losses["ce"].item() == pytest.approx(np_ce(s, labels.numpy()), rel=1e-4)
    assert losses["consistency"].item() == pytest.approx(weight * kl, rel=1e-4)


class _Recorder(nn.Module):
    """Wraps a model and keeps each output (with its gradient) for inspection."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        out.retain_grad()
        self.outputs.append(out)
        return out


@pytest.mark.parametrize("direction", ["clean_target", "aug_target"])
def test_uda_nokd_consistency_has_no_gradient_through_the_clean_view(
    batch: tuple, direction: str
) -> None:
    _, x, labels = batch
    student = _Recorder(_linear(0))
    method = create_method("uda_nokd", student, direction=direction)
    method.augment_fn = _invert
    method.setup(_ctx())
    _, losses = method(x, labels)
    losses["consistency"].backward()
    clean, aug = student.outputs
    assert clean.grad is None
    assert aug.grad is not None and aug.grad.abs().sum() > 0


def test_uda_nokd_with_identity_augmentation_is_ce(batch: tuple) -> None:
    _, x, labels = batch
    method = create_method("uda_nokd", _linear(0))
    method.augment_fn = lambda p, g: p
    method.setup(_ctx())
    logits, losses = method(x, labels)
    assert losses["consistency"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["ce"].item() == pytest.approx(np_ce(logits, labels), rel=1e-5)
    assert not method.needs_teacher and method.teacher is None


# ---------------------------------------------------------------- triplet


def _hand_one_minus_cos(a: list[list[float]], b: list[list[float]]) -> float:
    total = 0.0
    for u, v in zip(a, b, strict=True):
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        total += 1 - dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))
    return total / len(a)


@pytest.mark.parametrize(("T", "lam", "weight"), [(5.0, 0.5, 0.5), (4.0, 0.3, 2.0)])
def test_triplet_is_kd_plus_weighted_cosine_embedding_loss(
    T: float, lam: float, weight: float
) -> None:
    method = create_method(
        "triplet", Fixed(STUDENT), Fixed(TEACHER), T=T, weight=weight, **{"lambda": lam}
    )
    _, losses = method(INDEX, torch.tensor(LABELS))
    cos = _hand_one_minus_cos(STUDENT, TEACHER)
    assert losses["cosine"].item() == pytest.approx(weight * cos, rel=1e-5)
    expected = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * hand_kd(STUDENT, TEACHER, T)
    assert _total(losses) == pytest.approx(expected + weight * cos, rel=1e-5)
    reference = nn.CosineEmbeddingLoss()(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.ones(2)
    )
    assert cos == pytest.approx(reference.item(), rel=1e-5)


def test_triplet_seed_code_variant_replaces_ce_with_the_cosine_term() -> None:
    method = create_method("triplet", Fixed(STUDENT), Fixed(TEACHER), variant="seed")
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert set(losses) == {"cosine", "kd"}
    expected = 0.5 * _hand_one_minus_cos(STUDENT, TEACHER) + 0.5 * hand_kd(STUDENT, TEACHER, 5.0)
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    assert "no CE" in method.record()["loss"]


# ---------------------------------------------------------------- dkd


def _np_dkd(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, beta: float, T: float):
    """TCKD and NCKD the way the authors' code computes them (masking with -1000)."""
    b = len(y)
    gt = np.zeros_like(s)
    gt[np.arange(b), y] = 1.0

    def binary(z: np.ndarray) -> np.ndarray:
        p = np.exp(np_log_softmax(z / T))
        return np.stack([(p * gt).sum(1), (p * (1 - gt)).sum(1)], axis=1)

    bs, bt = binary(s), binary(t)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum() * T**2 / b
    ls, lt = np_log_softmax(s / T - 1000.0 * gt), np_log_softmax(t / T - 1000.0 * gt)
    nckd = (np.exp(lt) * (lt - ls)).sum() * T**2 / b
    return alpha * tckd, beta * nckd


@pytest.mark.parametrize(("alpha", "beta", "T"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_the_reference_formula(alpha: float, beta: float, T: float) -> None:
    rng = np.random.default_rng(2)
    s, t = rng.normal(0, 3, (6, 10)), rng.normal(0, 3, (6, 10))
    y = rng.integers(0, 10, 6)
    method = create_method(
        "dkd", Fixed(s.tolist()), Fixed(t.tolist()), alpha=alpha, beta=beta, T=T, warmup=0
    )
    _, losses = method(torch.arange(6), torch.from_numpy(y))
    tckd, nckd = _np_dkd(s, t, y, alpha, beta, T)
    s32 = s.astype(np.float32).astype(float)  # the model holds float32 logits
    assert losses["ce"].item() == pytest.approx(np_ce(s32, y), rel=1e-5)
    assert losses["tckd"].item() == pytest.approx(tckd, rel=1e-4)
    assert losses["nckd"].item() == pytest.approx(nckd, rel=1e-4)


def test_dkd_hand_computation_on_three_classes() -> None:
    """TCKD and NCKD written out with plain floats for the 3-class example."""
    T = 2.0
    method = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER), T=T, alpha=1.0, beta=1.0)
    method.on_epoch_start(20)
    _, losses = method(INDEX, torch.tensor(LABELS))
    tckd = nckd = 0.0
    for s, t, y in zip(STUDENT, TEACHER, LABELS, strict=True):
        ps, pt = softmax(s, T), softmax(t, T)
        tckd += hand_kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        others = [c for c in range(3) if c != y]
        nckd += hand_kl(softmax([t[c] for c in others], T), softmax([s[c] for c in others], T))
    assert losses["tckd"].item() == pytest.approx(T * T * tckd / 2, rel=1e-5)
    assert losses["nckd"].item() == pytest.approx(T * T * nckd / 2, rel=1e-5)


def test_dkd_warms_the_kd_terms_up_linearly() -> None:
    method = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER))
    assert method.hparams == {"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup": 20, "ce_weight": 1.0}
    method.on_epoch_start(20)
    _, full = method(INDEX, torch.tensor(LABELS))
    for epoch, factor in [(1, 0.05), (10, 0.5), (20, 1.0), (150, 1.0)]:
        method.on_epoch_start(epoch)
        _, losses = method(INDEX, torch.tensor(LABELS))
        assert losses["ce"].item() == pytest.approx(full["ce"].item())
        for term in ("tckd", "nckd"):
            assert losses[term].item() == pytest.approx(factor * full[term].item(), rel=1e-6)
    no_warmup = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER), warmup=0)
    no_warmup.on_epoch_start(1)
    assert no_warmup(INDEX, torch.tensor(LABELS))[1]["nckd"].item() == pytest.approx(
        full["nckd"].item()
    )


def test_dkd_is_zero_kd_when_student_equals_teacher() -> None:
    method = create_method("dkd", Fixed(TEACHER), Fixed(TEACHER), warmup=0)
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert losses["tckd"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["nckd"].item() == pytest.approx(0.0, abs=1e-6)
