"""TAKD: teacher-assistant KD (Mirzadeh et al., AAAI 2020), teacher -> TA -> student.

A mid-sized teacher assistant (TA) bridges a large capacity gap: the TA is first trained
by KD from the teacher, then the student by KD from the TA. Both stages use the same T,
lambda and epochs, as in the seed paper's code (its default TA is resnet20). The TA stage
is an ordinary, separately recorded ``kd`` run; the student's run links to it through
``teacher_run``.

One difference from the seed paper's code: it hands the student the TA checkpoint with the
best *test* accuracy; here the student gets the TA's final weights (no test-set selection).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdlib.errors import KdlibError
from kdlib.methods.base import Param, register_method
from kdlib.methods.kd import KD
from kdlib.models import list_models


@register_method
class TAKD(KD):
    """Student stage: plain KD (``kd``'s loss) from the TA that ``teacher_stage`` trained."""

    name = "takd"
    description = "teacher-assistant KD: KD teacher -> TA (ta=resnet20), then KD TA -> student"
    needs_teacher = True
    params = {
        **KD.params,
        "ta": Param("resnet20", "teacher assistant architecture", allowed="a model name"),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        ta = hparams["ta"]
        if not ta:
            raise KdlibError(
                "method 'takd' needs a teacher assistant: -p ta=MODEL (default resnet20; "
                f"valid: {', '.join(list_models())})"
            )
        if ta not in list_models():
            raise KdlibError(
                f"method 'takd': parameter ta={ta!r} is not a model; valid: "
                f"{', '.join(list_models())}"
            )

    @classmethod
    def teacher_stage(cls, cfg: Any, hparams: dict[str, Any]) -> Any | None:
        """The TA run: ``kd`` from ``--teacher`` into the TA, same T, lambda, epochs, seed."""
        return replace(
            cfg,
            method="kd",
            student=hparams["ta"],
            method_params={"T": hparams["T"], "lambda": hparams["lambda"]},
            save_weights=False,
            grid=None,
        )

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "teacher_assistant": self.hparams["ta"],
            "stages": "kd --teacher -> TA (the run in teacher_run), then kd TA -> this student",
            "ta_weights": "final (the seed paper's code used the TA's best-test-accuracy epoch)",
        }
