"""Accuracy of a model on a split, with no host synchronisation inside the loop."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from kdlib.speed import autocast


def default_eval_batch_size(device: torch.device) -> int:
    """Large batches feed a GPU; on a CPU small ones stay in cache and run faster."""
    return 1000 if device.type == "cuda" else 100


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Top-1 accuracy (percent), mean cross-entropy and count over ``batches``.

    The model is put in eval mode and restored to its previous mode afterwards;
    ``autocast_dtype`` (bf16) runs it under autocast, as in training.
    """
    was_training = model.training
    model.eval()
    correct = loss_sum = None
    n = 0
    for x, y in batches:
        with autocast(x.device, autocast_dtype):
            logits = model(x).float()
        c = (logits.argmax(1) == y).sum()
        s = nn.functional.cross_entropy(logits, y, reduction="sum")
        correct = c if correct is None else correct + c
        loss_sum = s if loss_sum is None else loss_sum + s
        n += y.shape[0]
    model.train(was_training)
    if n == 0:
        return {"accuracy": float("nan"), "loss": float("nan"), "n": 0, "correct": 0}
    correct_i = int(correct.item())
    return {
        "accuracy": 100.0 * correct_i / n,
        "loss": float(loss_sum.item()) / n,
        "n": n,
        "correct": correct_i,
    }
