"""AB: distillation of activation boundaries (Heo et al., AAAI 2019), then KD training.

AB is an initialisation: before the usual training, the student body and connectors
(1x1 conv + BN per stage, student -> teacher channels; none where the channel counts
already agree, as in the authors' code) are trained for ``init_epochs`` epochs on the
training set to reproduce which neurons of the teacher fire, with the hinge-like
"alternative" loss on pre-ReLU features (``prerelu_features``), margin mu = 1:

    L_AB = sum (s + mu)^2 [s > -mu, t <= 0] + (s - mu)^2 [s <= mu, t > 0]

per stage summed over elements, weighted 1, 1/2, 1/4 from the last stage back, divided
by the batch size and scaled by 3e-3 (the authors' ``loss / 1000 * 3``), optimised with
SGD (lr ``init_lr`` = 0.1 held constant, Nesterov momentum 0.9, weight decay 5e-4, as in
their CIFAR-10 script). The run's epochs then train the student with KD,
``(1 - lambda) * CE + lambda * T^2 * KL`` with ``kd``'s T=5, lambda=0.5, as the seed code
does (the authors' script trained with the soft-target KL alone at T=3, no CE, no T^2);
the connectors are then dropped.

``variant=original`` (default): ``init_epochs`` = 1, the ``distill_epoch`` of the authors'
released CIFAR-10 script (cheap on a CPU), at a constant ``init_lr``, with the models' own
forward. ``variant=seed``, as the seed code ran it: 10 initialisation epochs (its
``DISTILL_EPOCHS``) whose lr follows its MultiStepLR (x0.1 after int(0.33*E) and
int(0.66*E) of those epochs), the stages run without the ReLU between them (the stem's
stays) while initialising. Either way the initialisation epochs come before, and in
addition to, the run's ``--epochs``.

Provenance (an audit against karanchahal/distiller, 2026-12-03): the seed variant is
``distillers/ab_distiller.py`` as of commits bdfaed0-105c60b (Dec 14-17, 2019), with the
ResNets' ``n_channels = [16, 32, 64, 256]`` of that time; on the same weights and batch
it gives the seed code's initialisation loss to 7 digits. From 8f4e4cf (Dec 17) on, the
seed's AB fails on 3-stage ResNets (its student features are viewed to 64 inputs and fed
to a 256-input layer), so the paper's AB rows (Dec 23) must come from the code of Dec
14-17 or a local fix that was never committed. The seed took the initialisation lr from
the run's learning rate (0.1 in the paper's protocol); here ``init_lr`` is a parameter of
its own, 0.1 by default. Known difference of ``variant=original``: the authors' script
keeps the teacher in train mode during the initialisation (batch statistics, its running
statistics moving); here it stays frozen in eval mode.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import Tensor, nn

from kdlib.methods._features import (
    check_prerelu_support,
    check_seed_forward_support,
    check_stages,
    conv_bn_connector,
    prerelu_features,
    stage_weights,
)
from kdlib.methods.base import Distiller, Param, TrainContext, register_method, variant_param
from kdlib.methods.kd import KD, kd_terms
from kdlib.models import relus

INIT_SCALE = 3e-3  # the authors' CIFAR-10 script: loss_alter / 1000 * 3
INIT_MOMENTUM = 0.9
INIT_WEIGHT_DECAY = 5e-4


def ab_loss(source: Tensor, target: Tensor, margin: float = 1.0) -> Tensor:
    """Heo et al.'s activation-boundary hinge loss, summed over all elements."""
    off = (target <= 0) & (source > -margin)  # teacher off, student not off by the margin
    on = (target > 0) & (source <= margin)  # teacher on, student not on by the margin
    return ((source + margin) ** 2 * off + (source - margin) ** 2 * on).sum()


@register_method
class AB(Distiller):
    """AB initialisation of student + connectors in ``setup``, then KD."""

    name = "ab"
    description = (
        "activation boundaries (Heo et al. 2019): init the student body for init_epochs "
        "with the AB hinge loss on pre-ReLU features, then KD"
    )
    needs_teacher = True
    params = {
        "init_epochs": Param(
            1,
            "epochs of AB initialisation before the run's epochs (variant=seed: 10)",
            lambda v: v >= 0,
            "an integer >= 0",
        ),
        "init_lr": Param(
            0.1,
            "learning rate of the initialisation (constant; variant=seed: its first value)",
            lambda v: v > 0,
            "> 0",
        ),
        "margin": Param(1.0, "margin mu of the AB loss", lambda v: v >= 0, "a number >= 0"),
        "T": KD.params["T"],
        "lambda": KD.params["lambda"],
        "variant": variant_param(
            "10 init epochs with a MultiStepLR, no ReLU between the stages while initialising"
        ),
    }
    seed_defaults = {"init_epochs": 10}

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        check_prerelu_support(cls.name, cfg)
        check_stages(cls.name, cfg, spatial=True)
        check_seed_forward_support(cls.name, cfg, hparams)

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        s_ch, t_ch = student.stage_channels, self.teacher.stage_channels
        self.connectors = nn.ModuleList(
            nn.Identity() if s == t else conv_bn_connector(s, t)
            for s, t in zip(s_ch, t_ch, strict=True)
        )
        self.weights = stage_weights(len(s_ch))
        self.init_stats: dict[str, Any] = {"init_epochs_done": 0}

    def init_loss(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The AB initialisation loss of a batch, and per stage the fraction of positions
        where student (through its connector) and teacher agree on firing (> 0)."""
        _, s_feats = self.student(images, features=True)
        _, t_feats = self.teacher_features(images)
        with torch.no_grad():
            t_pre = prerelu_features(self.teacher, t_feats)
        s_pre = prerelu_features(self.student, s_feats)
        total = images.new_zeros((), dtype=torch.float32)
        agree = []
        for i, (s, t) in enumerate(zip(s_pre, t_pre, strict=True)):
            source = self.connectors[i](s).float()
            total = total + self.weights[i] * ab_loss(source, t.float(), self.hparams["margin"])
            agree.append(((source > 0) == (t > 0)).float().mean().detach())
        return INIT_SCALE * total / images.shape[0], torch.stack(agree)

    def setup(self, ctx: TrainContext) -> None:
        """Run the AB initialisation, then freeze the connectors (KD training ignores them)."""
        super().setup(ctx)
        epochs = self.hparams["init_epochs"]
        connector_params = list(self.connectors.parameters())
        if ctx.resuming:  # the checkpoint holds the student and connectors after the init
            self.init_stats = {"init_epochs_done": 0, "init_skipped": "resumed from a checkpoint"}
        elif epochs > 0:
            params = [p for p in self.student.parameters() if p.requires_grad]
            optimizer = torch.optim.SGD(
                params + connector_params,
                lr=self.hparams["init_lr"],
                momentum=INIT_MOMENTUM,
                nesterov=True,
                weight_decay=INIT_WEIGHT_DECAY,
            )
            seed = self.hparams["variant"] == "seed"
            milestones = sorted({int(f * epochs) for f in (0.33, 0.66) if int(f * epochs) > 0})
            schedule = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones if seed else [], gamma=0.1
            )
            start = time.time()
            self.train()
            with contextlib.ExitStack() as stack:
                if seed:  # no ReLU between the stages while initialising, as the seed
                    for model in (self.student, self.teacher):
                        stack.enter_context(relus(model, after_stem=True, between_stages=False))
                lrs, loss_sum, agree_sum, batches = self._initialise(
                    ctx, optimizer, schedule, epochs
                )
            self.init_stats = {
                "init_lrs": lrs,
                "init_epochs_done": epochs,
                "init_seconds": round(time.time() - start, 2),
                "init_last_epoch_loss": float(loss_sum.item()) / max(batches, 1),
                "init_last_epoch_agreement": [
                    round(float(a) / max(batches, 1), 4) for a in agree_sum.tolist()
                ],
            }
        for p in connector_params:
            p.requires_grad_(False)

    def _initialise(
        self, ctx: TrainContext, optimizer: torch.optim.Optimizer, schedule: Any, epochs: int
    ) -> tuple[list[float], Tensor, Tensor, int]:
        """The initialisation epochs (float32, as the authors' and the seed's code); the
        lr of each, and the last epoch's summed loss, agreement and batch count."""
        lrs: list[float] = []
        loss_sum = torch.zeros((), device=ctx.device)
        agree_sum = torch.zeros(len(self.weights), device=ctx.device)
        batches = 0
        for _ in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            loss_sum = torch.zeros((), device=ctx.device)
            agree_sum = torch.zeros(len(self.weights), device=ctx.device)
            batches = 0
            for images, _labels in ctx.train_loader:
                loss, agree = self.init_loss(images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
                agree_sum += agree
                batches += 1
            schedule.step()
        return lrs, loss_sum, agree_sum, batches

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        logits = self.student(images)
        return logits, kd_terms(logits, self.teacher_logits(images), labels, T, lam)

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "variant": self.hparams["variant"],
            **self.init_stats,
            "connectors": [not isinstance(c, nn.Identity) for c in self.connectors],
        }
