"""UDA and UDA without KD (kdlib/methods/uda.py): the two views, the augmentation's seed,
the consistency term, and the seed variant against the seed's code."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from kdlib.data.augment import normalize
from kdlib.methods import TrainContext, create_method
from kdlib.methods.uda import denormalize_uint8, view_seed
from kdlib.plan import check
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np_ce, np_kd, train_context
from tests.methods.helpers import total as _total
from tests.seed_reference import TOL, reference_total, seed_forward, seed_kd_loss

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


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


# -- the seed variant (UDATrainer), against the seed's code ---------------------------


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
    ctx = train_context(loader)
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
    assert reference_total(losses) == pytest.approx(expected.item(), **TOL)
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
        check(cfg)
