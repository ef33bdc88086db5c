"""ALLKD: KD into one student from each teacher of a list, one run per teacher.

The seed paper's experiment of how teacher size affects KD (its ``test_allkd``, teachers
resnet8 ... resnet56). Each run is an ordinary ``kd`` run recorded with ``grid="allkd"``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdlib.errors import KdlibError
from kdlib.methods.base import GridMethod, Param, register_method
from kdlib.methods.kd import KD
from kdlib.models import list_models

DEFAULT_TEACHERS = "resnet8,resnet14,resnet20,resnet26,resnet32,resnet44,resnet56"


def _names(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


@register_method
class AllKD(GridMethod):
    """Teachers come from ``--teacher a,b,c`` (with ``--teacher-checkpoint pa,pb,pc``, or
    trained first by the loop), else from the ``teachers`` parameter (trained first)."""

    name = "allkd"
    description = "grid: KD into the student from each teacher of a list (resnet8..resnet56)"
    multi_teacher = True
    params = {
        "teachers": Param(
            DEFAULT_TEACHERS,
            "teachers when --teacher is not given, comma-separated",
            lambda v: bool(_names(v)),
            "comma-separated model names (see `kdlib models`)",
        ),
        "T": KD.params["T"],
        "lambda": KD.params["lambda"],
    }

    @classmethod
    def teachers(cls, cfg: Any, hparams: dict[str, Any]) -> list[str]:
        """The teacher list this grid runs over."""
        return cfg.teacher_names() or _names(hparams["teachers"])

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        if cfg.teacher and "teachers" in cfg.method_params:
            raise KdlibError(
                "method 'allkd': give the teachers either as --teacher a,b,c or as "
                "-p teachers=a,b,c, not both"
            )
        names = cls.teachers(cfg, hparams)
        unknown = [t for t in names if t not in list_models()]
        if unknown:
            raise KdlibError(
                f"method 'allkd': parameter teachers: unknown model {unknown[0]!r}; "
                f"valid: {', '.join(list_models())}"
            )
        if len(set(names)) != len(names):
            raise KdlibError(f"method 'allkd': teacher list {','.join(names)} has duplicates")

    @classmethod
    def expand(cls, cfg: Any, hparams: dict[str, Any]) -> list[Any]:
        """One ``kd`` config per teacher (with its checkpoint, if given)."""
        names = cls.teachers(cfg, hparams)
        checkpoints = cfg.teacher_checkpoints() or [None] * len(names)
        kd_params = {"T": hparams["T"], "lambda": hparams["lambda"]}
        return [
            replace(
                cfg,
                method="kd",
                teacher=name,
                teacher_checkpoint=ckpt or None,
                method_params=dict(kd_params),
                grid=cls.name,
            )
            for name, ckpt in zip(names, checkpoints, strict=True)
        ]
