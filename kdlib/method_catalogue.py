"""What the analysis side knows about each method, without importing torch.

Figures, tables and the paper's numbers need a method's printed label, its place in the
figures (the paper's Table 3 order first), whether it uses a teacher and whether it has
``variant`` (original | seed). The registry in ``kdlib.methods`` is the truth about what
a method computes; this table says how to show it, and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    """How one method is shown: label, whether it needs a teacher, whether it has variants."""

    name: str
    label: str
    needs_teacher: bool = True
    has_variants: bool = False
    grid: bool = False  # a grid of runs (kdparam, allkd), not one method's rows


# In figure order: the paper's Table 3 rows first, then the rest.
METHODS: tuple[MethodInfo, ...] = (
    MethodInfo("nokd", "NOKD", needs_teacher=False),
    MethodInfo("kd", "KD"),
    MethodInfo("takd", "TAKD"),
    MethodInfo("uda", "UDA", has_variants=True),
    MethodInfo("uda_nokd", "UDA-NOKD", needs_teacher=False),
    MethodInfo("mkd", "MKD"),
    MethodInfo("rkd", "RKD", has_variants=True),
    MethodInfo("sfd", "SFD", has_variants=True),
    MethodInfo("oh", "OH", has_variants=True),
    MethodInfo("pkd", "PKD", has_variants=True),
    MethodInfo("ab", "AB", has_variants=True),
    MethodInfo("triplet", "Triplet", has_variants=True),
    MethodInfo("fitnet", "FitNet"),
    MethodInfo("at", "AT"),
    MethodInfo("dkd", "DKD"),
    MethodInfo("kdparam", "KD (T x lambda grid)", grid=True),
    MethodInfo("allkd", "KD (all teachers)", grid=True),
)
BY_NAME: dict[str, MethodInfo] = {m.name: m for m in METHODS}

# Derived views, for the code that needs only one fact.
METHOD_ORDER: tuple[str, ...] = tuple(m.name for m in METHODS if not m.grid)
TEACHER_FREE: tuple[str, ...] = tuple(m.name for m in METHODS if not m.needs_teacher)
VARIANT_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS if m.has_variants)


def label_of(name: str) -> str:
    """A method's printed label; an unknown one is shown upper-cased."""
    info = BY_NAME.get(name)
    return info.label if info is not None else str(name).upper()
