"""The seed paper's reported numbers, in one place, each with where it comes from.

Ruffy & Chahal (2019), *The State of Knowledge Distillation for Classification*,
arXiv 1912.10850v1. Every figure and summary that compares with the paper reads these
records, so a number is typed in once and its source travels with it.

Only numbers read off the paper are here. The paper's tables also list methods whose
numbers are not recorded here (PKD, AB, triplet, ...): they are left out rather than
guessed, and their runs show up in the figures without a paper mark.

Models and methods use kdlib's names (``resnet8``, ``wrn16_4``, ``uda_nokd``), so a record
matches our run records directly; :func:`model_label` and :func:`method_label` give the
paper's spelling for plots. A method whose seed code differs from its authors' definition
(kdlib's ``-p variant=seed``, see :data:`VARIANT_METHODS`) is keyed ``<method>:seed`` when
it ran as the seed ran it (the paper's numbers come from the seed code, so they are keyed
so), and plain ``<method>`` for the original; their labels say which.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from kdlib.method_catalogue import TEACHER_FREE, VARIANT_METHODS, label_of

PAPER = "Ruffy & Chahal 2019, arXiv 1912.10850v1"

# What each table compares; used as figure titles.
TABLES: dict[str, str] = {
    "table2": "Table 2: KD into ResNet8 from different teachers (CIFAR-10, 200 epochs)",
    "table3": "Table 3: methods, ResNet26 -> ResNet8 (CIFAR-10, 200 epochs)",
    "table4": "Table 4: methods, ResNet26 -> ResNet8 (CIFAR-10, 350 epochs)",
}

# Methods that use no teacher (their paper rows carry ``teacher=None`` and match our
# teacher-free runs of the same student) and methods with a ``variant`` parameter come
# from the one catalogue of methods.
SEED_SUFFIX = ":seed"


def method_key(method: str, variant: object = None) -> str:
    """The key of a method as it ran: ``oh:seed`` for ``variant=seed``, else ``oh``."""
    if not isinstance(method, str) or method.endswith(SEED_SUFFIX):
        return method
    return method + SEED_SUFFIX if variant == "seed" else method


def base_method(key: str) -> str:
    """The kdlib method name of a key (``oh:seed`` -> ``oh``)."""
    return key.removesuffix(SEED_SUFFIX) if isinstance(key, str) else key


@dataclass(frozen=True)
class PaperResult:
    """One accuracy the paper reports, and where it is printed."""

    table: str  # "table2", "table3", "table4"
    method: str  # kdlib method name
    teacher: str | None  # kdlib model name; None for teacher-free methods
    student: str
    epochs: int
    dataset: str
    accuracy: float  # student test accuracy in percent (the paper's best-epoch number)
    source: str
    teacher_accuracy: float | None = None  # the teacher's test accuracy, where reported
    note: str = ""  # anything not printed in the table itself (an assumption, a caveat)


def _table3(method: str, acc: float) -> PaperResult:
    return PaperResult(
        table="table3",
        method=method,
        teacher=None if method in TEACHER_FREE else "resnet26",
        student="resnet8",
        epochs=200,
        dataset="cifar10",
        accuracy=acc,
        source=f"{PAPER}, Table 3",
        teacher_accuracy=None if method in TEACHER_FREE else 93.41,
    )


def _table4(method: str, acc: float) -> PaperResult:
    return PaperResult(
        table="table4",
        method=method,
        teacher=None if method in TEACHER_FREE else "resnet26",
        student="resnet8",
        epochs=350,
        dataset="cifar10",
        accuracy=acc,
        source=f"{PAPER}, Table 4",
        teacher_accuracy=None if method in TEACHER_FREE else 93.41,
        note="" if method in TEACHER_FREE else "teacher taken to be Table 3's ResNet26",
    )


def _table2(teacher: str, teacher_acc: float, acc: float) -> PaperResult:
    return PaperResult(
        table="table2",
        method="kd",
        teacher=teacher,
        student="resnet8",
        epochs=200,
        dataset="cifar10",
        accuracy=acc,
        source=f"{PAPER}, Table 2",
        teacher_accuracy=teacher_acc,
        note="200 epochs: the paper's default schedule, as in Table 3",
    )


# The order within a table is the paper's (Tables 3 and 4 are sorted by accuracy).
PAPER_RESULTS: tuple[PaperResult, ...] = (
    _table2("resnet8", 89.59, 89.48),
    _table2("resnet20", 93.02, 90.16),
    _table2("resnet26", 93.41, 90.40),
    _table2("resnet18_seed", 95.26, 89.50),  # the seed's ResNet-18 (no ReLU after the add)
    _table2("wrn10_1", 88.06, 88.48),
    _table2("wrn16_4", 95.42, 89.58),
    _table3("takd", 90.57),
    _table3("uda:seed", 90.52),
    _table3("mkd", 90.34),
    _table3("kd", 90.33),
    _table3("rkd:seed", 90.22),
    _table3("nokd", 89.42),
    _table3("sfd:seed", 87.47),
    _table3("oh:seed", 87.09),
    _table4("uda:seed", 91.22),
    _table4("takd", 90.97),
    _table4("kd", 90.77),
    _table4("uda_nokd", 90.34),
    _table4("nokd", 89.34),
)

COLUMNS = [
    "table",
    "method",
    "teacher",
    "student",
    "epochs",
    "dataset",
    "accuracy",
    "source",
    "teacher_accuracy",
    "note",
]


def paper_results(table: str | None = None) -> pd.DataFrame:
    """The paper's numbers as a DataFrame (one row per reported accuracy), in paper order.

    ``table`` ("table2", "table3", "table4") keeps one table.
    """
    if table is not None and table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    rows = [dataclasses.asdict(r) for r in PAPER_RESULTS if table is None or r.table == table]
    return pd.DataFrame(rows, columns=COLUMNS)


def method_label(method: str) -> str:
    """The paper's spelling of a method key (``uda_nokd`` -> ``UDA-NOKD``); for a method
    with variants it says which ran (``oh:seed`` -> ``OH (seed code)``, ``oh`` -> ``OH
    (original)``)."""
    base = base_method(method)
    label = label_of(base)
    if base in VARIANT_METHODS:
        label += " (seed code)" if str(method).endswith(SEED_SUFFIX) else " (original)"
    return label


def model_label(model: str | None) -> str:
    """The paper's spelling of a kdlib model name (``wrn16_4`` -> ``WRN16-4``).

    Several teachers (``a,b``) read ``A+B``; no teacher reads ``none``.
    """
    if model is None or (isinstance(model, float) and model != model) or model == "":
        return "none"
    parts = []
    for m in str(model).split(","):
        m = m.strip()
        seed = m.endswith("_seed")  # the seed paper's own variant of an architecture
        m = m.removesuffix("_seed")
        if m.startswith("resnet"):
            parts.append("ResNet" + m[len("resnet") :] + (" (seed)" if seed else ""))
        elif m.startswith("wrn"):
            parts.append("WRN" + m[len("wrn") :].replace("_", "-"))
        else:
            parts.append(m)
    return "+".join(parts)
