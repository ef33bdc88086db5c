"""KDPARAM: KD over a grid of temperatures T and weights lambda, one run per cell.

The seed paper's sweep meant to vary both T and lambda, but its code assigned T with a typo
(``params_s["T_student"]: T``, an annotation, not an assignment), so every cell ran with the
default T. Here each cell really sets both: the grid is the full product T_values x
lambda_values, and each cell is an ordinary ``kd`` run recorded with ``grid="kdparam"``.
All cells share the teacher: give its checkpoint. Without one, each cell's run trains the
teacher first; a loop that reuses a completed run of the same configuration (the teacher
run is the same for every cell) then trains it only once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdlib.methods.base import GridMethod, Param, register_method


def parse_floats(text: str) -> list[float]:
    """The numbers of a comma-separated list such as ``"1,5,10"`` (ValueError if malformed)."""
    values = [float(v) for v in str(text).split(",") if v.strip()]
    if not values or len(set(values)) != len(values):
        raise ValueError(text)
    return values


def _all(text: str, ok: Any) -> bool:
    try:
        return all(ok(v) for v in parse_floats(text))
    except ValueError:
        return False


@register_method
class KDParam(GridMethod):
    """Grid of ``kd`` runs: every (T, lambda) in T_values x lambda_values, T outer."""

    name = "kdparam"
    description = "grid: KD for every T in T_values x lambda in lambda_values (one run per cell)"
    needs_teacher = True
    params = {
        "T_values": Param(
            "1,5,10,15,20",
            "temperatures to try, comma-separated",
            lambda v: _all(v, lambda t: t > 0),
            "distinct comma-separated numbers > 0, e.g. 1,5,10",
        ),
        "lambda_values": Param(
            "0.1,0.4,0.5,0.7,1.0",
            "KD weights to try, comma-separated",
            lambda v: _all(v, lambda x: 0.0 <= x <= 1.0),
            "distinct comma-separated numbers in [0, 1], e.g. 0.1,0.5,1.0",
        ),
    }

    @classmethod
    def expand(cls, cfg: Any, hparams: dict[str, Any]) -> list[Any]:
        """One ``kd`` config per (T, lambda) cell, each recording ``grid="kdparam"``."""
        return [
            replace(cfg, method="kd", method_params={"T": T, "lambda": lam}, grid=cls.name)
            for T in parse_floats(hparams["T_values"])
            for lam in parse_floats(hparams["lambda_values"])
        ]
