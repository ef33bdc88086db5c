"""Feature-based methods (sfd, oh, rkd, pkd, ab, fitnet, at): losses against hand
computations or plain-loop references, gradient flow, and bad-combination errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.errors import KdlibError
from kdlib.methods import TrainContext, create_method
from kdlib.methods._features import model_info, prerelu_features, stage_weights
from kdlib.methods.ab import INIT_SCALE, ab_loss
from kdlib.methods.at import at_loss, attention_map
from kdlib.methods.kd import kd_loss
from kdlib.methods.oh import margin_from_bn, oh_partial_l2
from kdlib.methods.pkd import patience_loss
from kdlib.methods.rkd import rkd_angle_loss, rkd_distance_loss
from kdlib.methods.sfd import sfd_stage_loss
from kdlib.models import create_model
from tests.method_helpers import np_ce


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These tests run tiny batches, which one thread does fastest (no thread contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def _models(student: str = "resnet8", teacher: str = "resnet14") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return create_model(student, 10), create_model(teacher, 10)


def _batch(n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- SFD ------------------------------------------------------------------------------


def _ref_sfd(s: np.ndarray, t: np.ndarray, distance: str) -> float:
    best = 0.0
    for n in range(s.shape[0]):
        sv = [s[n, c].max() for c in range(s.shape[1])]
        tv = [t[n, c].max() for c in range(t.shape[1])]
        diffs = [a - b for a, b in zip(sv, tv, strict=True)]
        d = math.sqrt(sum(x * x for x in diffs)) if distance == "l2" else max(map(abs, diffs))
        best = max(best, d)
    return best


def test_sfd_stage_loss_by_hand() -> None:
    # one sample, two channels: pooled student (3, 1), teacher (0, 5) -> diff (3, -4)
    s = torch.tensor([[[[1.0, 3.0]], [[1.0, -2.0]]]])
    t = torch.tensor([[[[0.0, -1.0]], [[5.0, 2.0]]]])
    assert sfd_stage_loss(s, t, "l2").item() == pytest.approx(5.0)
    assert sfd_stage_loss(s, t, "linf").item() == pytest.approx(4.0)


@pytest.mark.parametrize("distance", ["l2", "linf"])
def test_sfd_stage_loss_matches_loops(distance: str) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    got = sfd_stage_loss(s, t, distance).item()
    assert got == pytest.approx(_ref_sfd(_np(s), _np(t), distance), rel=1e-5)


def test_sfd_linf_is_what_the_seed_code_computes() -> None:
    """The seed code: pairwise_distance of (N, C, 1, 1) pooled maps, then .max()."""
    torch.manual_seed(0)
    s, t = torch.randn(6, 4, 5, 5), torch.randn(6, 4, 5, 5)
    seed = F.pairwise_distance(F.adaptive_max_pool2d(s, 1), F.adaptive_max_pool2d(t, 1)).max()
    assert sfd_stage_loss(s, t, "linf").item() == pytest.approx(seed.item(), abs=2e-6)


def test_sfd_method_sums_stages_of_preact_features() -> None:
    student, teacher = _models()
    method = create_method("sfd", student, teacher, beta=0.5).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    expected = sum(
        _ref_sfd(_np(s), _np(t), "l2") for s, t in zip(sf["preact"], tf["preact"], strict=True)
    )
    assert set(losses) == {"ce", "sfd"}
    assert losses["sfd"].item() == pytest.approx(0.5 * expected, rel=1e-5)
    assert losses["ce"].item() == pytest.approx(np_ce(logits, y), rel=1e-5)
    assert method.record()["variant"] == "original"


# -- OH -------------------------------------------------------------------------------


def _ref_margin(gamma: float, beta: float) -> float:
    s, m = abs(gamma), beta
    cdf = 0.5 * (1 + math.erf((-m / s) / math.sqrt(2)))
    if cdf > 0.001:
        return -s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + m
    return -3 * s


def test_oh_margin_matches_gaussian_formula() -> None:
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 0.1]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -0.3, 1.0]))  # last: P(x<0) ~ 0 -> -3s
    got = margin_from_bn(bn).tolist()
    want = [_ref_margin(g, b) for g, b in [(1.0, 0.0), (-2.0, 1.0), (0.5, -0.3), (0.1, 1.0)]]
    assert got == pytest.approx(want, rel=1e-5)
    assert got[0] == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal mean
    assert got[3] == pytest.approx(-0.3)


def test_oh_partial_l2_by_hand() -> None:
    source = torch.tensor([1.0, -1.0, 0.2, 0.5, -0.3]).view(1, 1, 1, 5)
    target = torch.tensor([-2.0, -2.0, -0.1, 1.0, -0.1]).view(1, 1, 1, 5)
    margin = torch.tensor([-0.5]).view(1, 1, 1, 1)
    # 1.5^2 (below margin: target -> margin) + 0 + 0.3^2 + 0.5^2 (target > 0) + 0
    assert oh_partial_l2(source, target, margin).item() == pytest.approx(2.59)


def test_oh_partial_l2_matches_the_seed_codes_three_cases() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    m = -torch.rand(1, 3, 1, 1)
    ref = 0.0
    for idx in np.ndindex(*s.shape):
        a, b, mm = float(s[idx]), float(t[idx]), float(m[0, idx[1], 0, 0])
        if a > mm and b <= mm:
            ref += (a - mm) ** 2
        elif (a > b and mm < b <= 0) or b > 0:  # the seed code's second and third cases
            ref += (a - b) ** 2
    assert oh_partial_l2(s, t, m).item() == pytest.approx(ref, rel=1e-5)


def test_oh_method_distance_weights_and_normalisation() -> None:
    student, teacher = _models("resnet8", "wrn16_2")
    method = create_method("oh", student, teacher).eval()
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    s_pre, t_pre = prerelu_features(student, sf), prerelu_features(teacher, tf)
    expected = 0.0
    for i, w in enumerate(stage_weights(3)):
        src = method.connectors[i](s_pre[i])
        expected += w * oh_partial_l2(src, t_pre[i], getattr(method, f"margin{i}")).item()
    assert stage_weights(3) == [0.25, 0.5, 1.0]
    assert losses["oh"].item() == pytest.approx(1e-3 * expected / 4, rel=1e-5)


def test_oh_wrn_prerelu_features_are_the_next_bn() -> None:
    model = create_model("wrn16_2").eval()
    x, _ = _batch(2)
    _, feats = model(x, features=True)
    pre = prerelu_features(model, feats)
    assert torch.allclose(pre[0], model.layer2.layer[0].bn1(feats["stages"][0]))
    assert torch.allclose(pre[2], model.bn1(feats["stages"][2]))


def test_oh_teacher_frozen_by_default_and_seed_variant_runs_teacher_in_train_mode() -> None:
    student, teacher = _models()
    frozen = create_method("oh", student, teacher)
    frozen.train()
    assert not teacher.training
    assert frozen.record()["teacher_frozen"] is True

    student, teacher = _models()
    seed = create_method("oh", student, teacher, variant="seed")
    seed.train()
    assert teacher.training
    before = teacher.layer1[0].bn1.running_mean.clone()
    x, y = _batch()
    sum(seed(x, y)[1].values()).backward()
    assert not torch.equal(before, teacher.layer1[0].bn1.running_mean)  # batch statistics
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not any(p is q for p in seed.trainable_parameters() for q in teacher.parameters())
    record = seed.record()
    assert record["teacher_frozen"] is False and record["variant"] == "seed"


# -- RKD ------------------------------------------------------------------------------


def _huber_mean(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d * d, d - 0.5).mean())


def _ref_rkd_distance(s: np.ndarray, t: np.ndarray) -> float:
    def dists(e: np.ndarray) -> np.ndarray:
        n = len(e)
        d = np.array(
            [[math.dist(e[i], e[j]) if i != j else 0.0 for j in range(n)] for i in range(n)]
        )
        return d / d[~np.eye(n, dtype=bool)].mean()

    return _huber_mean(dists(s), dists(t))


def _ref_rkd_angle(s: np.ndarray, t: np.ndarray) -> float:
    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(np.linalg.norm(v), 1e-12)

    def angles(e: np.ndarray) -> np.ndarray:
        n = len(e)
        return np.array(
            [
                unit(e[j] - e[i]) @ unit(e[k] - e[i])
                for i in range(n)
                for j in range(n)
                for k in range(n)
            ]
        )

    return _huber_mean(angles(s), angles(t))


def test_rkd_losses_match_loops() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 4) * 3  # embedding sizes may differ
    assert rkd_distance_loss(s, t).item() == pytest.approx(
        _ref_rkd_distance(_np(s), _np(t)), rel=1e-5
    )
    assert rkd_angle_loss(s, t).item() == pytest.approx(_ref_rkd_angle(_np(s), _np(t)), rel=1e-5)


def test_rkd_is_invariant_to_scale_and_translation() -> None:
    torch.manual_seed(0)
    t = torch.randn(6, 8)
    s = 3.0 * t + 1.0
    assert rkd_distance_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", [rkd_distance_loss, rkd_angle_loss])
def test_rkd_losses_are_float32_under_bf16_autocast(loss) -> None:
    """Training runs under bf16 autocast; the RKD terms must still be computed in float32
    (bf16 matmuls lose ~20% on distances of offset, post-ReLU-like embeddings)."""
    torch.manual_seed(0)
    s = torch.relu(torch.randn(8, 64)) + 3.0
    t = 2 * torch.relu(torch.randn(8, 256)) + 3.0
    expected = loss(s, t).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(s, t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-3)


def test_rkd_distance_loss_of_a_single_sample_is_zero() -> None:
    assert rkd_distance_loss(torch.randn(1, 4), torch.randn(1, 6)).item() == 0.0


def test_rkd_method_terms_and_seed_kd_variant() -> None:
    student, teacher = _models()
    method = create_method("rkd", student, teacher).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    t_logits, tf = teacher(x, features=True)
    s_e, t_e = _np(sf["embedding"]), _np(tf["embedding"])
    assert set(losses) == {"ce", "rkd_dist", "rkd_angle"}
    assert losses["rkd_dist"].item() == pytest.approx(25 * _ref_rkd_distance(s_e, t_e), rel=1e-4)
    assert losses["rkd_angle"].item() == pytest.approx(50 * _ref_rkd_angle(s_e, t_e), rel=1e-4)

    seed = create_method("rkd", student, teacher, variant="seed").eval()
    assert seed.hparams["lambda"] == 0.5  # the seed variant's default
    _, losses = seed(x, y)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())
    assert losses["ce"].item() == pytest.approx(0.5 * np_ce(logits, y), rel=1e-5)
    assert seed.record()["variant"] == "seed"


# -- PKD ------------------------------------------------------------------------------


def _ref_patience(s: list[np.ndarray], t: list[np.ndarray], normalize: bool) -> float:
    def vec(stages: list[np.ndarray], n: int) -> list[float]:
        out: list[float] = []
        for x in stages:
            v = [float(x[n, c].mean()) for c in range(x.shape[1])]
            norm = math.sqrt(sum(a * a for a in v)) if normalize else 1.0
            out += [a / norm for a in v]
        return out

    diffs = [
        (a - b) ** 2
        for n in range(s[0].shape[0])
        for a, b in zip(vec(s, n), vec(t, n), strict=True)
    ]
    return sum(diffs) / len(diffs)


@pytest.mark.parametrize("normalize", [True, False])
def test_pkd_patience_loss_matches_loops(normalize: bool) -> None:
    torch.manual_seed(0)
    s = [torch.randn(3, 2, 4, 4), torch.randn(3, 5, 2, 2)]
    t = [torch.randn(3, 2, 4, 4), torch.randn(3, 5, 2, 2)]
    ref = _ref_patience([_np(a) for a in s], [_np(a) for a in t], normalize)
    assert patience_loss(s, t, normalize).item() == pytest.approx(ref, rel=1e-5)


def test_pkd_method_is_kd_plus_ten_times_patience() -> None:
    student, teacher = _models()
    method = create_method("pkd", student, teacher).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    t_logits, tf = teacher(x, features=True)
    ref = _ref_patience([_np(a) for a in sf["stages"]], [_np(a) for a in tf["stages"]], True)
    assert set(losses) == {"ce", "kd", "patience"}
    assert losses["patience"].item() == pytest.approx(10 * ref, rel=1e-4)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())


# -- AT -------------------------------------------------------------------------------


def test_at_loss_by_hand() -> None:
    # student map mean_c f^2 = (1, 2) -> (1, 2)/sqrt5; teacher (2, 0) -> (1, 0)
    s = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])
    t = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])
    assert attention_map(s).flatten().tolist() == pytest.approx([1 / 5**0.5, 2 / 5**0.5])
    assert at_loss(s, t).item() == pytest.approx(1 - 1 / 5**0.5, rel=1e-6)


def test_at_loss_matches_loops_with_different_channel_counts() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 5, 5), torch.randn(3, 7, 5, 5)

    def amap(f: np.ndarray, n: int) -> list[float]:
        a = [(f[n, :, i, j] ** 2).mean() for i in range(5) for j in range(5)]
        norm = math.sqrt(sum(v * v for v in a))
        return [v / norm for v in a]

    sq = [
        (a - b) ** 2
        for n in range(3)
        for a, b in zip(amap(_np(s), n), amap(_np(t), n), strict=True)
    ]
    assert at_loss(s, t).item() == pytest.approx(sum(sq) / len(sq), rel=1e-5)


def test_at_method_is_beta_times_sum_over_stages() -> None:
    student, teacher = _models()
    method = create_method("at", student, teacher).eval()
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    total = sum(at_loss(s, t).item() for s, t in zip(sf["stages"], tf["stages"], strict=True))
    assert losses["at"].item() == pytest.approx(1000 * total, rel=1e-5)


# -- FitNet ---------------------------------------------------------------------------


@pytest.mark.parametrize(("teacher", "relu"), [("resnet14", True), ("wrn16_2", False)])
def test_fitnet_hint_is_beta_times_mse_of_regressed_middle_stage(teacher: str, relu: bool) -> None:
    student, t_model = _models("resnet8", teacher)
    method = create_method("fitnet", student, t_model).eval()
    assert isinstance(method.regressor[-1], nn.ReLU) is relu
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = t_model(x, features=True)
    r = _np(method.regressor(sf["stages"][1]))
    h = _np(tf["stages"][1])
    assert r.shape == h.shape == (4, t_model.stage_channels[1], 16, 16)
    assert losses["hint"].item() == pytest.approx(100 * float(((r - h) ** 2).mean()), rel=1e-5)


# -- AB -------------------------------------------------------------------------------


def test_ab_loss_by_hand() -> None:
    source = torch.tensor([0.5, -2.0, 0.5, 2.0, -0.5])
    target = torch.tensor([-1.0, -1.0, 1.0, 1.0, 0.0])
    # off & s > -1: 1.5^2; off & s <= -1: 0; on & s <= 1: 0.5^2; on & s > 1: 0; t=0 is off
    assert ab_loss(source, target, 1.0).item() == pytest.approx(2.25 + 0.25 + 0.25)


def test_ab_loss_is_zero_when_boundaries_agree_by_the_margin() -> None:
    target = torch.tensor([-3.0, 2.0, 0.0])
    assert ab_loss(torch.tensor([-1.5, 1.0, -1.0]), target, 1.0).item() == 0.0


def _ctx(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> TrainContext:
    return TrainContext(
        epochs=1,
        steps_per_epoch=len(batches),
        num_classes=10,
        mean=torch.zeros(3),
        std=torch.ones(3),
        device=torch.device("cpu"),
        seed=0,
        train_loader=batches,
    )


def test_ab_init_phase_trains_student_and_connectors_then_drops_them() -> None:
    student, teacher = _models("resnet8", "wrn16_2")  # 16/32/64 -> 32/64/128: connectors
    method = create_method("ab", student, teacher, init_epochs=2)
    x, y = _batch(8)
    loss, agree = method.init_loss(x)
    expected = 0.0
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    s_pre, t_pre = prerelu_features(student, sf), prerelu_features(teacher, tf)
    for i, w in enumerate(stage_weights(3)):
        expected += w * ab_loss(method.connectors[i](s_pre[i]), t_pre[i]).item()
    assert loss.item() == pytest.approx(INIT_SCALE * expected / 8, rel=1e-4)
    assert agree.shape == (3,) and bool(((agree >= 0) & (agree <= 1)).all())

    conv_before = student.conv1.weight.detach().clone()
    conn_before = method.connectors[0][0].weight.detach().clone()
    teacher_before = [p.detach().clone() for p in teacher.parameters()]
    method.setup(_ctx([_batch(8, seed=2), _batch(8, seed=3)]))
    assert not torch.equal(conv_before, student.conv1.weight)
    assert not torch.equal(conn_before, method.connectors[0][0].weight)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.parameters(), strict=True))
    trainable = {id(p) for p in method.trainable_parameters()}
    assert trainable == {id(p) for p in student.parameters()}  # no connectors, no teacher
    record = method.record()
    assert record["init_epochs_done"] == 2 and len(record["init_last_epoch_agreement"]) == 3
    assert record["connectors"] == [True, True, True] and record["teacher_frozen"] is True


def test_ab_training_is_kd_and_no_connectors_for_equal_channels() -> None:
    student, teacher = _models()
    method = create_method("ab", student, teacher, init_epochs=0).eval()
    assert all(isinstance(c, nn.Identity) for c in method.connectors)
    x, y = _batch()
    logits, losses = method(x, y)
    t_logits = teacher(x)
    assert set(losses) == {"ce", "kd"}
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())
    method.setup(_ctx([]))
    assert method.record()["init_epochs_done"] == 0


# -- gradients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "teacher", "params", "connector_attr"),
    [
        ("sfd", "resnet14", {}, None),
        ("sfd", "wrn16_2", {"projection": "true"}, "projections"),
        ("oh", "wrn16_2", {}, "connectors"),
        ("rkd", "resnet14", {}, None),
        ("pkd", "resnet14", {}, None),
        ("ab", "resnet14", {"init_epochs": 0}, None),
        ("fitnet", "resnet14", {}, "regressor"),
        ("at", "wrn16_2", {}, None),
    ],
)
def test_gradients_reach_student_and_connectors_not_the_frozen_teacher(
    method: str, teacher: str, params: dict, connector_attr: str | None
) -> None:
    student, t_model = _models("resnet8", teacher)
    distiller = create_method(method, student, t_model, **params)
    distiller.train()
    x, y = _batch()
    _, losses = distiller(x, y)
    feature_terms = [k for k in losses if k not in ("ce", "kd")]
    sum(losses.values()).backward()
    assert student.conv1.weight.grad is not None and student.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in t_model.parameters())
    assert not t_model.training
    if connector_attr is not None:
        module = getattr(distiller, connector_attr)
        assert all(p.grad is not None for p in module.parameters())
    # the feature term alone also reaches the student's first convolution
    if feature_terms:
        student.zero_grad(set_to_none=True)
        _, losses = distiller(x, y)
        sum(losses[k] for k in feature_terms).backward()
        assert student.conv1.weight.grad is not None
        assert student.conv1.weight.grad.abs().sum() > 0


# -- bad combinations -----------------------------------------------------------------

BAD = [
    ("sfd", "resnet8", "resnet18", {}, "same number of stages"),
    ("sfd", "resnet8", "resnet18", {"projection": "true"}, "same number of stages"),
    ("sfd", "resnet8", "wrn16_2", {}, "projection=true"),
    ("oh", "resnet8", "resnet18", {}, "same number of stages"),
    ("pkd", "resnet8", "resnet18", {}, "same number of stages"),
    ("pkd", "resnet8", "wrn16_2", {}, "equal channel counts"),
    ("ab", "resnet8", "resnet34", {}, "same number of stages"),
    ("at", "wrn16_1", "resnet10", {}, "same number of stages"),
    ("fitnet", "resnet8", "resnet18", {"hint_stage": "3"}, "hint_stage=3 is out of range"),
    ("sfd", "resnet8", "resnet14", {"variant": "paper"}, "allowed: original or seed"),
    ("oh", "wrn16_1", "wrn16_2", {"variant": "seed"}, "seed paper's ResNets only"),
    ("sfd", "wrn16_1", "wrn28_1", {"variant": "seed"}, "seed paper's ResNets only"),
]


@pytest.mark.parametrize(("method", "student", "teacher", "params", "message"), BAD)
def test_bad_combination_fails_validation(
    method: str, student: str, teacher: str, params: dict, message: str
) -> None:
    cfg = TrainConfig(method=method, student=student, teacher=teacher, method_params=params)
    with pytest.raises(KdlibError, match=message) as e:
        cfg.validate()
    assert method in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("method", "student", "teacher", "params", "message"), BAD[:3] + BAD[5:6])
def test_bad_combination_exits_2_from_the_cli(
    method: str,
    student: str,
    teacher: str,
    params: dict,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    argv = ["train", "--method", method, "--student", student, "--teacher", teacher]
    for key, value in params.items():
        argv += ["-p", f"{key}={value}"]
    runs = tmp_path / "runs"
    code = main([*argv, "--epochs", "1", "--quiet", "--runs-dir", str(runs)])
    _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not runs.exists()


@pytest.mark.parametrize(
    ("method", "student", "teacher", "params"),
    [
        ("sfd", "resnet8", "wrn16_2", {"projection": "true"}),
        ("oh", "resnet8", "wrn40_2", {}),
        ("rkd", "resnet8", "resnet18", {}),
        ("ab", "wrn16_1", "resnet26", {}),
        ("fitnet", "resnet8", "resnet34", {}),
        ("at", "resnet8", "wrn16_4", {}),
        ("pkd", "resnet8", "resnet26", {}),
    ],
)
def test_good_combinations_validate(method: str, student: str, teacher: str, params: dict) -> None:
    TrainConfig(method=method, student=student, teacher=teacher, method_params=params).validate()


def test_model_info_shapes() -> None:
    info = model_info("resnet18")
    assert info.channels == [64, 128, 256, 512]
    assert info.sizes == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert info.post_relu == (True,) * 4 and model_info("wrn16_1").post_relu == (False,) * 3
