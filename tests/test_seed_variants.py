"""``variant=seed`` of each method against an independent transcription of what the seed
paper's code (karanchahal/distiller) computes, and the fixed ``at`` and ``fitnet`` against
their authors' formulas.

Every reference below is written from the seed's (or the authors') source, in plain torch
calls on the models' modules, without calling kdlib's losses or its models' forward.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods import TrainContext, create_method, method_class, resolve_params
from kdlib.models import create_model

TOL = {"rel": 1e-5, "abs": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _models(student: str = "resnet8", teacher: str = "resnet14") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return create_model(student, 10), create_model(teacher, 10)


def _batch(n: int = 6, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _total(losses: dict[str, Tensor]) -> float:
    return float(sum(v.item() for v in losses.values()))


# -- the seed's models (models/cifar10/resnet.py), transcribed -------------------------


def seed_block(b: nn.Module, x: Tensor) -> Tensor:
    """BasicBlock.forward: its first line ``F.relu(x)`` is dead; no ReLU after the add."""
    out = F.relu(b.bn1(b.conv1(x)))
    out = b.bn2(b.conv2(out))
    return out + b.shortcut(x)


def seed_layer(stage: nn.Sequential, x: Tensor) -> Tensor:
    for b in stage:
        x = seed_block(b, x)
    return x


def seed_forward(net: nn.Module, x: Tensor, use_relu: bool = True, is_feat: bool = False):
    """ResNetSmall.forward(x, is_feat, use_relu): features after the stage ReLUs."""
    out = net.bn1(net.conv1(x))
    if use_relu:
        out = F.relu(out)
    feat1 = seed_layer(net.layer1, out)
    if use_relu:
        feat1 = F.relu(feat1)
    feat2 = seed_layer(net.layer2, feat1)
    if use_relu:
        feat2 = F.relu(feat2)
    feat3 = F.relu(seed_layer(net.layer3, feat2))  # the last relu is always included
    pool = F.avg_pool2d(feat3, 4).view(feat3.size(0), -1)
    out = net.linear(pool)
    return ([feat1, feat2, feat3], pool, out) if is_feat else out


def seed_extract_feature(net: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """ResNetSmall.extract_feature(x, preReLU=True): no stem or inter-stage ReLU at all."""
    x = net.bn1(net.conv1(x))
    feat1 = seed_layer(net.layer1, x)
    feat2 = seed_layer(net.layer2, feat1)
    feat3 = seed_layer(net.layer3, feat2)
    out = F.avg_pool2d(F.relu(feat3), 4).view(feat3.size(0), -1)
    return [feat1, feat2, feat3], net.linear(out)


def seed_kd_loss(out_s: Tensor, out_t: Tensor, target: Tensor, lam=0.5, T=5.0) -> Tensor:
    """KDTrainer.kd_loss: KLDivLoss(size_average=False) / batch size."""
    loss = F.cross_entropy(out_s, target)
    kl = F.kl_div(F.log_softmax(out_s / T, dim=1), F.softmax(out_t / T, dim=1), reduction="sum")
    return (1 - lam) * loss + lam * T * T * kl / target.shape[0]


def test_the_seed_forward_transcription_matches_the_released_architecture() -> None:
    """Sanity of the reference: kdlib's paper ResNets compute the seed's ``forward``."""
    student, _ = _models()
    x, _ = _batch()
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x))


def test_seed_resnet18_has_no_relu_after_the_add() -> None:
    """The seed's 4-stage ResNet (its ``ResNet.forward``): one ReLU per stage."""
    torch.manual_seed(0)
    net = create_model("resnet18_seed", 10).eval()
    x, _ = _batch(2)

    def reference(x: Tensor) -> Tensor:
        out = F.relu(net.bn1(net.conv1(x)))
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            out = F.relu(seed_layer(stage, out))
        return net.linear(F.avg_pool2d(out, 4).view(x.size(0), -1))

    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x))
        plain = create_model("resnet18", 10).eval()
        plain.load_state_dict(net.state_dict())  # same weights, other function
        assert not torch.allclose(plain(x), net(x))


# -- OH (distillers/oh_distiller.py) --------------------------------------------------


def seed_oh_margin(bn: nn.BatchNorm2d) -> Tensor:
    out = []
    for s, m in zip(bn.weight.data, bn.bias.data, strict=True):
        s, m = abs(s.item()), m.item()
        cdf = 0.5 * (1 + math.erf((-m / s) / math.sqrt(2)))  # norm.cdf(-m / s)
        if cdf > 0.001:
            out.append(-s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + m)
        else:
            out.append(-3 * s)
    return torch.tensor(out).view(1, -1, 1, 1)


def seed_oh_distillation_loss(source: Tensor, target: Tensor, margin: Tensor) -> Tensor:
    loss = (
        (source - margin) ** 2 * ((source > margin) & (target <= margin)).float()
        + (source - target) ** 2 * ((source > target) & (target > margin) & (target <= 0)).float()
        + (source - target) ** 2 * (target > 0).float()
    )
    return torch.abs(loss).sum()


def test_oh_seed_variant_is_the_seed_loss_on_the_relu_less_forward() -> None:
    student, teacher = _models()
    ref_s, ref_t = copy.deepcopy(student), copy.deepcopy(teacher)
    method = create_method("oh", student, teacher, variant="seed")
    connectors = copy.deepcopy(method.connectors)
    method.train()
    assert teacher.training  # the seed keeps its teacher in train mode
    x, y = _batch()
    logits, losses = method(x, y)

    ref_s.train(), ref_t.train(), connectors.train()
    s_feats, s_out = seed_extract_feature(ref_s, x)
    t_feats, _ = seed_extract_feature(ref_t, x)
    bns = [getattr(ref_t, f"layer{i}")[-1].bn2 for i in (1, 2, 3)]  # get_bn_before_relu
    distill = 0.0
    for i in range(3):
        src = connectors[i](s_feats[i])
        distill = distill + seed_oh_distillation_loss(
            src, t_feats[i].detach(), seed_oh_margin(bns[i])
        ) / 2 ** (3 - i - 1)
    expected = F.cross_entropy(s_out, y) + distill / x.shape[0] / 1000
    torch.testing.assert_close(logits, s_out)
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
    # the teacher's running statistics moved as in the seed (batch statistics)
    torch.testing.assert_close(teacher.layer1[0].bn1.running_mean, ref_t.layer1[0].bn1.running_mean)

    # OHTrainer.validate evaluates the student with use_relu=False
    method.eval()
    ref_s.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(ref_s, x, use_relu=False))
    assert method.record()["variant"] == "seed"
    assert "ReLU-less" in method.record()["student_forward"]
    # the teacher is ReLU-less only inside the loss: its accuracy is measured as it is
    assert teacher.relu_after_stem and teacher.relu_between_stages


def test_oh_original_variant_keeps_the_relus_and_a_frozen_teacher() -> None:
    student, teacher = _models()
    method = create_method("oh", student, teacher)
    method.train()
    assert not teacher.training
    x, _ = _batch()
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x, use_relu=True))


# -- AB (distillers/ab_distiller.py) --------------------------------------------------


def seed_alt_l2(source: Tensor, target: Tensor, margin: float) -> Tensor:
    loss = (source + margin) ** 2 * ((source > -margin) & (target <= 0)).float() + (
        source - margin
    ) ** 2 * ((source <= margin) & (target > 0)).float()
    return torch.abs(loss).sum()


def seed_ab_init_loss(s_net: nn.Module, t_net: nn.Module, x: Tensor) -> Tensor:
    """AB_distill_Resnet.forward + DistillTrainer.calculate_loss (equal channels: the
    connectors are empty Sequentials)."""
    res0_t = F.relu(t_net.bn1(t_net.conv1(x)))
    res1_t = seed_layer(t_net.layer1, res0_t)
    res2_t = seed_layer(t_net.layer2, res1_t)
    res3_t = seed_layer(t_net.layer3, res2_t)
    res0_s = F.relu(s_net.bn1(s_net.conv1(x)))
    res1_s = seed_layer(s_net.layer1, res0_s)
    res2_s = seed_layer(s_net.layer2, res1_s)
    res3_s = seed_layer(s_net.layer3, res2_s)
    n = x.shape[0]
    loss = seed_alt_l2(res3_s, res3_t.detach(), 1.0) / n
    loss = loss + seed_alt_l2(res2_s, res2_t.detach(), 1.0) / n / 2
    loss = loss + seed_alt_l2(res1_s, res1_t.detach(), 1.0) / n / 4
    return loss / 1000 * 3


def _ctx(loader: list, epochs: int = 1) -> TrainContext:
    return TrainContext(
        epochs=epochs,
        steps_per_epoch=len(loader),
        num_classes=10,
        mean=torch.zeros(3),
        std=torch.ones(3),
        device=torch.device("cpu"),
        seed=0,
        train_loader=loader,
    )


def test_ab_seed_variant_initialises_with_the_seed_loss_and_schedule() -> None:
    student, teacher = _models("resnet8", "resnet26")  # 64 = 64 channels: no connectors
    teacher.eval()
    ref_s, ref_t = copy.deepcopy(student).train(), copy.deepcopy(teacher)
    x, y = _batch()
    with torch.no_grad():
        expected = seed_ab_init_loss(ref_s, ref_t, x).item()

    hparams = resolve_params(method_class("ab"), {"variant": "seed"})
    assert hparams["init_epochs"] == 10  # the seed's DISTILL_EPOCHS
    method = create_method("ab", student, teacher, variant="seed", init_epochs=1)
    method.setup(_ctx([(x, y)]))
    # one batch, one epoch: the recorded loss is the seed's on the initial weights
    assert method.init_stats["init_last_epoch_loss"] == pytest.approx(expected, **TOL)
    # afterwards KD trains with the models' own forward again
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x))

    # the seed's MultiStepLR over its 10 init epochs: x0.1 after int(3.3) and int(6.6)
    method = create_method("ab", *_models("resnet8", "resnet26"), variant="seed")
    method.setup(_ctx([(x[:2], y[:2])]))
    assert method.init_stats["init_lrs"] == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 4)
    original = create_method("ab", *_models("resnet8", "resnet26"), init_epochs=3)
    original.setup(_ctx([(x[:2], y[:2])]))
    assert original.init_stats["init_lrs"] == pytest.approx([0.1] * 3)


# -- PKD (distillers/pkd_distiller.py) ------------------------------------------------


def test_pkd_seed_variant_is_kd_plus_ten_times_mse_of_the_flat_maps() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("pkd", student, teacher, variant="seed").eval()
    x, y = _batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)
    t_feats, _, t_out = seed_forward(teacher, x, is_feat=True)
    s_pat = torch.cat([f.view(f.size(0), -1) for f in s_feats], dim=1)
    t_pat = torch.cat([f.view(f.size(0), -1) for f in t_feats], dim=1)
    expected = seed_kd_loss(s_out, t_out, y) + 10 * F.mse_loss(t_pat.float(), s_pat.float())
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


# -- RKD (distillers/rkd_distiller.py) ------------------------------------------------


def seed_pdist(e: Tensor, eps: float = 1e-12) -> Tensor:
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def seed_rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    t_d = seed_pdist(teacher)
    t_d = t_d / t_d[t_d > 0].mean()
    d = seed_pdist(student)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)


def seed_rkd_angle(student: Tensor, teacher: Tensor) -> Tensor:
    td = teacher.unsqueeze(0) - teacher.unsqueeze(1)
    norm_td = F.normalize(td, p=2, dim=2)
    t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
    sd = student.unsqueeze(0) - student.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(s_angle, t_angle)


def test_rkd_seed_variant_is_kd_plus_distance_and_angle_without_at() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("rkd", student, teacher, variant="seed").eval()
    x, y = _batch()
    _, losses = method(x, y)
    _, s_pool, s_out = seed_forward(student, x, is_feat=True)
    _, t_pool, t_out = seed_forward(teacher, x, is_feat=True)
    expected = (
        seed_kd_loss(s_out, t_out, y)
        + 25.0 * seed_rkd_distance(s_pool, t_pool)
        + 50.0 * seed_rkd_angle(s_pool, t_pool)
    )  # its at_loss is computed, never added
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


# -- SFD (distillers/fd_distiller.py) -------------------------------------------------


def seed_get_layers(net: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """get_layers over the children conv1, bn1, layer1..3 (ReLU after each non-conv)."""
    feats = []
    out = x
    for layer in (net.conv1, net.bn1, net.layer1, net.layer2, net.layer3):
        out = seed_layer(layer, out) if isinstance(layer, nn.Sequential) else layer(out)
        feats.append(out)
        if not isinstance(layer, nn.Conv2d):
            out = F.relu(out)
    out = F.avg_pool2d(out, 4).view(out.size(0), -1)
    return feats, net.linear(out)


def test_sfd_seed_variant_is_the_seed_feature_loss_with_the_stem() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("sfd", student, teacher, variant="seed").eval()
    x, y = _batch()
    _, losses = method(x, y)
    s_feats, s_out = seed_get_layers(student, x)
    t_feats, _ = seed_get_layers(teacher, x)
    feature_loss = 0.0
    for s, t in zip(s_feats, t_feats, strict=True):
        s1 = F.adaptive_max_pool2d(s, (1, 1))
        t1 = F.adaptive_max_pool2d(t, (1, 1))
        feature_loss = feature_loss + F.pairwise_distance(s1, t1).max()
    expected = F.cross_entropy(s_out, y) + feature_loss
    assert len(s_feats) == 5
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


# -- TRIPLET (trainer.py TripletTrainer) ----------------------------------------------


def test_triplet_seed_variant_is_the_seed_loss() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("triplet", student, teacher, variant="seed").eval()
    x, y = _batch()
    _, losses = method(x, y)
    out_s, out_t = seed_forward(student, x), seed_forward(teacher, x)
    lam, T = 0.5, 5.0
    cos = F.cosine_embedding_loss(out_s, out_t, torch.ones(y.shape[0]))
    kl = F.kl_div(F.log_softmax(out_s / T, dim=1), F.softmax(out_t / T, dim=1), reduction="sum")
    expected = (1 - lam) * cos + lam * T * T * kl / y.shape[0]
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


# -- the two fixed bugs, against their authors' formulas ------------------------------


def test_at_is_ce_plus_1000_times_the_authors_at_loss() -> None:
    """szagoruyko/attention-transfer: at(x) = normalize(x.pow(2).mean(1).view(n, -1)),
    at_loss = (at(x) - at(y)).pow(2).mean(), loss = CE + beta * sum(at_losses)."""
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("at", student, teacher).eval()
    x, y = _batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)  # stage outputs
    t_feats, _, _ = seed_forward(teacher, x, is_feat=True)

    def at(f: Tensor) -> Tensor:
        return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))

    at_losses = [(at(s) - at(t)).pow(2).mean() for s, t in zip(s_feats, t_feats, strict=True)]
    expected = F.cross_entropy(s_out, y) + 1000.0 * sum(at_losses)
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


def test_fitnet_regressor_is_repdistillers_convreg() -> None:
    """RepDistiller's ConvReg for equal spatial sizes: Conv2d(s_C, t_C, kernel_size=(1 + s_H
    - t_H, 1 + s_W - t_W)) with its default bias, BN, ReLU; loss CE + 100 * MSE."""
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("fitnet", student, teacher).eval()
    conv, bn = method.regressor[0], method.regressor[1]
    assert conv.kernel_size == (1, 1) and conv.bias is not None
    assert (conv.in_channels, conv.out_channels) == (32, 32)
    x, y = _batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)
    t_feats, _, _ = seed_forward(teacher, x, is_feat=True)
    regressed = F.relu(bn(F.conv2d(s_feats[1], conv.weight, conv.bias)))
    expected = F.cross_entropy(s_out, y) + 100.0 * F.mse_loss(regressed, t_feats[1])
    assert _total(losses) == pytest.approx(expected.item(), **TOL)


def test_uda_seed_variant_is_kd_on_clean_and_on_the_seed_policy_of_the_raw_image() -> None:
    """UDATrainer.calculate_loss: kd_loss(clean) / 2 + kd_loss(aug) / 2, where the aug view
    is its CIFAR10Policy on the dataset image before crop+flip (UDADataset), normalized."""
    from kdlib.data import DeviceLoader, normalize
    from kdlib.data.seed_autoaugment import seed_cifar10_autoaugment
    from kdlib.methods.uda import view_seed

    student, teacher = _models("resnet8", "resnet26")
    teacher.eval()
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (12, 32, 32, 3), generator=g, dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (12,), generator=g).numpy()
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    loader = DeviceLoader(images, labels, 6, mean=mean, std=std, shuffle=True, augment=True)
    method = create_method("uda", student, teacher, variant="seed")
    ctx = _ctx(loader)
    ctx.mean, ctx.std = torch.tensor(mean), torch.tensor(std)
    method.setup(ctx)
    method.train()
    x, y = next(iter(loader))
    raw = loader.last_raw.clone()
    ref_s = copy.deepcopy(student)
    logits, losses = method(x, y)

    view = seed_cifar10_autoaugment(raw, torch.Generator().manual_seed(view_seed(0)))
    aug = normalize(view, torch.tensor(mean), torch.tensor(std))
    ref_s.train()
    with torch.no_grad():
        out_s, out_t = seed_forward(ref_s, x), seed_forward(teacher, x)
        aug_s, aug_t = seed_forward(ref_s, aug), seed_forward(teacher, aug)
    expected = seed_kd_loss(out_s, out_t, y) / 2 + seed_kd_loss(aug_s, aug_t, y) / 2
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
    # the view came from the raw images, not from the cropped and flipped batch
    pixels = (x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) * 255
    assert not torch.equal(pixels.round().clamp(0, 255).to(torch.uint8), raw)
    assert method.record()["variant"] == "seed" and "raw image" in method.record()["augmentation"]


def test_uda_seed_variant_needs_the_fast_loop() -> None:
    from kdlib.config import TrainConfig
    from kdlib.errors import KdlibError

    cfg = TrainConfig(
        method="uda",
        teacher="resnet26",
        method_params={"variant": "seed"},
        device="cpu",
        loop="classic",
    )
    with pytest.raises(KdlibError, match="--loop fast"):
        cfg.validate()
