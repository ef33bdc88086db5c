"""Our accuracy next to the paper's number, one entry per row of the paper's Tables 2-4."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kdlib.figures.selection import METRICS, col, missing, numeric
from kdlib.figures.style import legend_below, new_figure, seaborn_style, titled
from kdlib.figures.tables import table_entries
from kdlib.paper import TABLES, method_label, model_label, paper_results
from kdlib.stats import mean_std

# Each accuracy's legend entry, marker and colour (seaborn's default palette).
_FLAVOURS = {
    f"ours: {METRICS[m]} (mean ± std)": (m, marker, colour)
    for m, marker, colour in (
        ("final_test_acc", "o", "C0"),
        ("test_acc_at_best_val", "s", "C2"),
        ("best_test_acc", "^", "C1"),
    )
}
_DODGE = 0.8 - 0.8 / len(_FLAVOURS)  # pointplot's spread that matches the swarms' dodge


def _tidy(runs: pd.DataFrame, entry: int) -> pd.DataFrame:
    """One row per run and accuracy of an entry: (entry, accuracy, value)."""
    frames = [
        pd.DataFrame({"entry": entry, "accuracy": name, "value": numeric(runs, m)})
        for name, (m, _, _) in _FLAVOURS.items()
    ]
    return pd.concat(frames, ignore_index=True).dropna(subset=["value"])


def reproducibility_figure(
    df: pd.DataFrame,
    table: str = "table3",
    paper: pd.DataFrame | None = None,
    include_unreported: bool = True,
) -> Figure:
    """Our accuracy per method (or per teacher, Table 2) next to the paper's number.

    For each entry: every seed as a dot and mean +- std as a marker with error bar, for
    the final epoch, the validation-chosen epoch and the best test epoch side by side,
    the paper's number as a red bar, and the precision and number of seeds under the
    entry's name (an entry shows one setting, of either precision).
    ``include_unreported`` adds the methods we ran in the table's setting that the paper
    gives no number for. Only one setting's runs make an entry (see ``summary_table``).
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    paper = paper_results() if paper is None else paper
    by_teacher = paper[paper["table"] == table]["method"].nunique() == 1  # Table 2
    labels, papers, frames = [], [], []
    for info, runs in table_entries(df, table, paper):
        if not include_unreported and missing(info["paper"]):
            continue
        if by_teacher:
            ours = mean_std(numeric(runs, "teacher_test_acc"))[0]
            theirs = info.get("paper_teacher_acc", math.nan)
            accs = ["–" if missing(v) else f"{v:.2f}" for v in (ours, theirs)]
            label = f"{model_label(info['teacher'])}\nours {accs[0]}\npaper {accs[1]}"
        else:
            label = method_label(info["method"])
        frames.append(_tidy(runs, len(labels)))
        precision = sorted({str(v) for v in col(runs, "speed.precision") if not missing(v)})
        seeds = ", ".join([*precision, f"n={len(runs)}"])
        labels.append(f"{label}\n{seeds}")
        papers.append(info["paper"])

    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    fig, axes = new_figure(max(6.0, 1.1 * len(labels) + 2.5), 5.0)
    ax = axes[0, 0]
    with seaborn_style():
        if not tidy.empty:
            common = dict(data=tidy, x="entry", y="value", hue="accuracy", ax=ax)
            common.update(order=range(len(labels)), hue_order=list(_FLAVOURS))
            common.update(palette=[c for _, _, c in _FLAVOURS.values()])
            sns.swarmplot(
                **common, dodge=True, size=4, edgecolor="white", linewidth=0.6, zorder=4,
                legend=False,
            )  # fmt: skip
            markers = [m for _, m, _ in _FLAVOURS.values()]
            sns.pointplot(
                **common, dodge=_DODGE, errorbar="sd", markers=markers, linestyle="none",
                capsize=0.15, err_kws={"linewidth": 1.5},
            )  # fmt: skip
        bars = [(i, p) for i, p in enumerate(papers) if not missing(p)]
        extra = []
        if bars:
            handle = ax.hlines(
                [p for _, p in bars], [i - 0.42 for i, _ in bars], [i + 0.42 for i, _ in bars],
                color="tab:red", lw=2.5, zorder=1,
            )  # fmt: skip
            extra.append((handle, "paper (best epoch)"))
    ax.set_xticks(range(len(labels)), labels, fontsize=9)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("teacher, and its test accuracy (ours, the paper's)" if by_teacher else "")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(titled(TABLES[table], df))
    if tidy.empty:
        note = f"no completed runs for {table.replace('table', 'Table ')} yet"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=12)
    legend_below(fig, ax, extra)
    return fig


def reproducibility_figures(
    df: pd.DataFrame, tables: Iterable[str] = tuple(TABLES), paper: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """:func:`reproducibility_figure` of each table, keyed ``reproducibility_<table>``."""
    return {f"reproducibility_{t}": reproducibility_figure(df, t, paper=paper) for t in tables}
