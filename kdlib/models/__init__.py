"""Model zoo: every architecture by name, plus safe checkpoint loading and saving.

All models share one calling convention so distillation methods can treat them alike:
``model(x)`` gives logits; ``model(x, features=True)`` gives ``(logits, feats)`` with

- ``feats["stages"]``: each stage's output, the tensor handed to the next stage (after the
  ReLU for the post-activation ResNets; the raw residual sum for pre-activation WRNs),
- ``feats["preact"]``: each stage's output before its final ReLU, i.e. the residual sum
  of its last block (for WRNs the very same tensors as ``"stages"``: a pre-activation
  stage ends without a ReLU; the next block's BN-ReLU is not applied),
- ``feats["embedding"]``: the flattened tensor fed to the final linear layer,

and attributes ``stage_channels`` (channels of each stage output) and ``embedding_dim``.
"""

from __future__ import annotations

# Importing the architecture modules registers their models; the order sets list_models().
from kdlib.models import paper_resnet, resnet, wrn  # noqa: F401
from kdlib.models._resnet_base import relu_description, relus, set_relus
from kdlib.models.checkpoints import load_state_dict, load_weights, save_weights
from kdlib.models.registry import create_model, list_models, model_description, register_model

__all__ = [
    "relu_description",
    "relus",
    "set_relus",
    "create_model",
    "list_models",
    "load_state_dict",
    "load_weights",
    "model_description",
    "register_model",
    "save_weights",
]
