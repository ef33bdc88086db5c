"""UDA and UDA-NOKD: training on a clean and an AutoAugment view of every batch.

UDA ("UDA distillation", the seed paper's best method, after Xie et al. 2019's unsupervised
data augmentation): KD on the clean batch plus KD on an AutoAugment view of the same
batch, each weighted 1/2; the teacher sees the same augmented view as the student.

UDA-NOKD: the same two views without a teacher: CE on the clean view plus UDA's
consistency loss between the student's own predictions on the two views.

The loop hands us normalized float images. The AutoAugment view is made on the device by
recovering the exact uint8 pixels (de-normalize, round, clamp), applying the CIFAR-10
policy with an independent sub-policy per image (``kdlib.data.autoaugment``), and
normalizing again the way the loader does. The view is drawn from the method's own device
generator, seeded from the run's seed, so a run is repeatable.

Difference from the seed paper's code: its augmented view is AutoAugment applied to the
raw image, without the random crop and flip the clean view gets; here AutoAugment is
applied on top of the loader's crop+flip (the loop only gives us the augmented batch),
which is also what the UDA paper does for CIFAR-10. ``variant=seed`` (UDA only) does what the
seed code did: its own AutoAugment port (``kdlib.data.seed_autoaugment``: other magnitudes,
bicubic shears, fractional translations, unsigned rotations) applied to the image as it
is in the dataset, without the crop and flip the clean view gets (the fast loop's loader
keeps each batch's raw images for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.data.augment import normalize
from kdlib.data.autoaugment import cifar10_autoaugment
from kdlib.data.seed_autoaugment import seed_cifar10_autoaugment
from kdlib.errors import KdlibError
from kdlib.methods.base import Distiller, Param, TrainContext, register_method, variant_param
from kdlib.methods.kd import KD, kd_loss, kd_terms

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def denormalize_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Invert ``normalize``: the uint8 pixels (B, C, H, W) a normalized batch came from.

    Exact for float32 and float16 batches: their rounding error is below half a pixel
    level, so rounding recovers each original value. Not for bfloat16 (off by up to 1).
    """
    m = mean.to(device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = std.to(device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = x.float() * (s * 255.0) + m * 255.0
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def view_seed(seed: int) -> int:
    """Seed of the view generator, derived from the run's seed so that it differs from the
    loader's (seeded with the run's seed itself) and the two draw unrelated numbers."""
    return (seed * 6364136223846793005 + 1442695040888963407) % 2**63


class _TwoViews(Distiller):
    """Shared by UDA and UDA-NOKD: the AutoAugment view of a batch, made on the device.

    The generator is an attribute of the distiller itself, so the loop's checkpoints save
    and restore its state with the others (a resumed run draws the same views).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        self.augment_fn: Augment = cifar10_autoaugment  # tests may swap it before setup

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.pixel_mean = torch.as_tensor(ctx.mean, device=ctx.device, dtype=torch.float32)
        self.pixel_std = torch.as_tensor(ctx.std, device=ctx.device, dtype=torch.float32)
        self.augment_seed = view_seed(ctx.seed)
        self.augment_generator = torch.Generator(device=ctx.device)
        self.augment_generator.manual_seed(self.augment_seed)
        if self.seed_view():
            if not hasattr(ctx.train_loader, "keep_raw"):
                raise KdlibError(
                    f"method {self.name!r}: -p variant=seed augments the raw images, which "
                    "only the fast loop's loader keeps; use --loop fast"
                )
            ctx.train_loader.keep_raw = True

    def seed_view(self) -> bool:
        """Whether the view is the seed code's (its AutoAugment port, on the raw image)."""
        return self.hparams.get("variant") == "seed"

    @torch.no_grad()
    def augmented(self, images: torch.Tensor) -> torch.Tensor:
        """The AutoAugment view of ``images``, normalized like them (no gradient)."""
        if not hasattr(self, "augment_generator"):
            raise RuntimeError(f"method {self.name!r}: call setup(ctx) before training")
        if self.seed_view():
            raw = getattr(self.ctx.train_loader, "last_raw", None)
            if raw is None or raw.shape[0] != images.shape[0]:
                raise RuntimeError(
                    f"method {self.name!r}: variant=seed needs the raw images of this batch "
                    "from the training loader (train through it)"
                )
            view = seed_cifar10_autoaugment(raw, self.augment_generator)
        else:
            pixels = denormalize_uint8(images, self.pixel_mean, self.pixel_std)
            view = self.augment_fn(pixels, self.augment_generator)
        out = normalize(view, self.pixel_mean, self.pixel_std, images.dtype)
        if images.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def record(self) -> dict[str, Any]:
        if self.seed_view():
            augmentation = (
                "the seed code's AutoAugment port (CIFAR-10 policy, its magnitudes), one "
                "sub-policy per image, fill 128, applied to the raw image (no crop+flip)"
            )
        else:
            augmentation = (
                "AutoAugment CIFAR-10 policy, one sub-policy per image, fill 128, "
                "applied to the loader's batch (after its crop+flip, if on)"
            )
        return {
            **super().record(),
            "augmentation": augmentation,
            "augment_seed": getattr(self, "augment_seed", None),
        }


@register_method
class UDA(_TwoViews):
    """1/2 KD(clean view) + 1/2 KD(AutoAugment view); the teacher sees both views too."""

    name = "uda"
    description = "KD on the clean batch + KD on its AutoAugment view, each 1/2 (seed's best)"
    needs_teacher = True
    params = {
        **KD.params,
        "variant": variant_param(
            "its own AutoAugment port, other magnitudes, on the image without crop+flip"
        ),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        if hparams["variant"] == "seed" and cfg.loop != "fast":
            raise KdlibError(
                "method 'uda': -p variant=seed augments the raw images, which only the fast "
                "loop keeps; use --loop fast"
            )

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        aug = self.augmented(images)
        logits = self.student(images)
        logits_aug = self.student(aug)  # separate passes: BN sees each view alone, as the seed
        teacher_logits, teacher_aug = self.teacher_logits(torch.cat([images, aug])).chunk(2)
        clean = kd_terms(logits, teacher_logits, labels, T, lam)
        view = kd_terms(logits_aug, teacher_aug, labels, T, lam)
        return logits, {
            **{k: 0.5 * v for k, v in clean.items()},
            **{f"{k}_aug": 0.5 * v for k, v in view.items()},
        }

    def record(self) -> dict[str, Any]:
        return {**super().record(), "variant": self.hparams["variant"]}


DIRECTIONS = ("clean_target", "aug_target")


@register_method
class UDANoKD(_TwoViews):
    """CE(clean) + weight * T^2 * consistency KL between the student's two views.

    ``direction=clean_target`` (default, UDA's definition): KL(p_clean || p_aug), the
    prediction on the clean view is the fixed target (no gradient) and the prediction on
    the augmented view is pulled to it; in PyTorch's order that is
    ``kl_div(log_softmax(aug/T), softmax(clean/T).detach())``.
    ``direction=aug_target``: KL(p_aug || p_clean), the clean prediction still fixed, the
    augmented one now the first argument (``kl_div(log_softmax(clean/T).detach(),
    softmax(aug/T))``). Temperature T (default 1, both views) with the T^2 factor, which is
    1 at T=1; UDA's optional sharpening and confidence masking are not used.
    """

    name = "uda_nokd"
    description = "UDA without a teacher: CE(clean) + weight*KL(student(clean) || student(aug))"
    params = {
        "weight": Param(1.0, "weight of the consistency loss", lambda v: v >= 0, "a number >= 0"),
        "T": Param(1.0, "softmax temperature of both views", lambda v: v > 0, "a number > 0"),
        "direction": Param(
            "clean_target",
            "clean_target: KL(clean || aug) as UDA; aug_target: KL(aug || clean)",
            lambda v: v in DIRECTIONS,
            " or ".join(DIRECTIONS),
        ),
    }

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, None, **hparams)  # a teacher, if given, is not used

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, weight = self.hparams["T"], self.hparams["weight"]
        aug = self.augmented(images)
        logits = self.student(images)
        logits_aug = self.student(aug)
        target = logits.detach()
        if self.hparams["direction"] == "clean_target":
            consistency = kd_loss(logits_aug, target, T)  # T^2 KL(p_clean || p_aug)
        else:
            consistency = kd_loss(target, logits_aug, T)  # T^2 KL(p_aug || p_clean)
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "consistency": weight * consistency,
        }

    def record(self) -> dict[str, Any]:
        kl = (
            "KL(p_clean || p_aug)"
            if self.hparams["direction"] == "clean_target"
            else ("KL(p_aug || p_clean)")
        )
        return {**super().record(), "consistency": f"{kl}, no gradient through the clean view"}
