"""Training curves per epoch: the mean over seeds of each setting with its seed band, and
the curves of given run directories (the run notebook's live view)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kdlib.figures.selection import col, completed, missing, params_of, settings, teacher_from
from kdlib.figures.style import message_figure, new_figure, seaborn_style, tell_apart, titled
from kdlib.paper import method_label, model_label
from kdlib.runs import RunRecord

CURVE_COLUMNS = ("test_acc", "val_acc", "train_loss")
_CURVE_LABELS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_loss": "training loss (all terms)",
    "train_acc": "training accuracy (%)",
    "lr": "learning rate",
}
_BY = ("method", "teacher", "student", "dataset", "epochs")


def load_histories(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-epoch history of each run in ``df`` (by run_id); runs without one are skipped."""
    return _histories(zip(col(df, "run_id"), col(df, "path"), strict=True))


def _histories(runs: Iterable[tuple[Any, Any]]) -> dict[str, pd.DataFrame]:
    """Per-epoch history of each ``(name, run directory)`` that has one, by name."""
    out = {}
    for name, path in runs:
        if missing(path):
            continue
        hist = RunRecord(path).history()
        if not hist.empty and "epoch" in hist.columns:
            out[str(name)] = hist
    return out


def _group_labels(df: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """A label per run from the ``by`` columns that vary (constant ones say nothing)."""
    # missing values do not count: "NOKD" and "KD" say enough, not "NOKD none"
    varying = [c for c in by if col(df, c).dropna().astype(str).nunique() > 1] or [by[0]]
    show = {"method": method_label, "teacher": model_label, "student": model_label}
    show["epochs"] = lambda v: "e?" if missing(v) else f"e{int(v)}"
    parts = [col(df, c).map(show.get(c, str)).astype(str) for c in varying]
    return pd.Series([" ".join(p) for p in zip(*parts, strict=True)], index=df.index)


def _long(
    histories: Mapping[str, pd.DataFrame], labels: Mapping[str, str], columns: Sequence[str]
) -> pd.DataFrame:
    """One row per (run, epoch, column) of ``histories``: label, run_id, epoch, column, value."""
    frames = []
    for run_id, label in labels.items():
        hist = histories[run_id]
        present = [c for c in columns if c in hist.columns]
        long = hist[["epoch", *present]].melt(id_vars="epoch", var_name="column")
        frames.append(long.assign(label=label, run_id=run_id))
    data = pd.concat(frames, ignore_index=True)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    return data.dropna(subset=["value"])[["label", "run_id", "epoch", "column", "value"]]


def _what_differs(run: pd.DataFrame) -> str:
    """A run's method parameters and precision: what names its line where one label covers
    settings that differ in them (``KD (fp32)``, ``KD (bf16)``, as the summary tables)."""
    precision = col(run, "speed.precision").iloc[0]
    parts = [params_of(run), "" if missing(precision) else str(precision)]
    return "; ".join(p for p in parts if p)


def curve_values(
    df: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] = _BY,
    columns: Sequence[str] = CURVE_COLUMNS,
) -> pd.DataFrame:
    """Long table (label, run_id, epoch, column, value) of the completed runs' curves.

    A label is the runs of one setting: where the ``by`` columns name runs of several
    settings, each gets its own label saying what tells it apart (``KD (teacher
    trained)``, its method parameters, else its setting hash).
    """
    runs = completed(df)
    histories = load_histories(runs) if histories is None else histories
    runs = runs[col(runs, "run_id").astype(str).isin(list(histories))]
    if runs.empty:
        return pd.DataFrame(columns=["label", "run_id", "epoch", "column", "value"])
    labels = tell_apart(
        list(_group_labels(runs, by)),
        list(settings(runs)),
        list(teacher_from(runs)),
        [_what_differs(runs.loc[[i]]) for i in runs.index],
    )
    return _long(histories, dict(zip(runs["run_id"].astype(str), labels, strict=True)), columns)


def mean_curves(
    df: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] = _BY,
    columns: Sequence[str] = CURVE_COLUMNS,
) -> pd.DataFrame:
    """Long table (label, epoch, column, mean, std, n): each group's curves averaged over
    seeds (:func:`curve_values`, one setting per label)."""
    values = curve_values(df, histories=histories, by=by, columns=columns)
    agg = values.groupby(["label", "epoch", "column"], sort=False)["value"]
    return agg.agg(mean="mean", std="std", n="count").reset_index()


def curves_figure(
    values: pd.DataFrame, columns: Sequence[str] = CURVE_COLUMNS, title: str = ""
) -> Figure:
    """Plot a :func:`curve_values` table: one panel per column, one line per label (the
    mean over its runs, with a +- std band where it has several)."""
    if values.empty:
        return message_figure("no completed runs with a history to plot", title)
    fig, axes = new_figure(4.3 * len(columns) + 2.0, 3.9, 1, len(columns))
    labels = list(dict.fromkeys(values["label"]))
    seeds = values.groupby("label")["run_id"].nunique().max() > 1  # a band needs two runs
    # Few epochs (a run that just started): mark each one, so a single epoch is a dot.
    marker = "o" if values["epoch"].nunique() <= 20 else None
    for k, (ax, column) in enumerate(zip(axes[0], columns, strict=True)):
        sub = values[values["column"] == column]
        with seaborn_style():
            sns.lineplot(
                data=sub, x="epoch", y="value", hue="label", hue_order=labels, ax=ax,
                errorbar="sd" if seeds else None, linewidth=1.2, legend=k == 0,
                marker=marker, markersize=4,
            )  # fmt: skip
        ax.set_ylabel(_CURVE_LABELS.get(column, column))
        if sub.empty:
            ax.text(0.5, 0.5, f"no {column} recorded", transform=ax.transAxes, ha="center")
        elif column == "train_loss" and (sub["value"] > 0).all():
            ax.set_yscale("log")
    legend = axes[0, 0].get_legend()
    if legend is not None:
        handles, names = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        legend.remove()
        fig.legend(handles, names, loc="outside right center", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def training_curves_figure(
    df: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] = _BY,
    columns: Sequence[str] = CURVE_COLUMNS,
    title: str = "Training curves (mean ± std over seeds)",
) -> Figure:
    """Test and validation accuracy and training loss per epoch, mean +- std over seeds.

    One line per group of runs (by default per method and setting; only the parts that
    differ between the runs name a line). Select the runs first, e.g. with
    :func:`select_runs`. The training loss includes each method's own terms, so compare
    its shape across methods, not its level. A column no run recorded (validation
    accuracy where the runs kept no validation split) gets no panel.
    """
    runs = completed(df)
    values = curve_values(runs, histories=histories, by=by, columns=columns)
    heading = titled(title, runs)
    if values.empty:
        return message_figure("no completed runs with a history for these settings yet", heading)
    recorded = [c for c in columns if c in set(values["column"])]  # e.g. no val_acc: no split
    return curves_figure(values, columns=recorded, title=heading)


def run_curves_figure(
    run_dirs: Iterable[str | Path], columns: Sequence[str] = CURVE_COLUMNS
) -> Figure:
    """Learning curves of given run directories, one line each (whatever their status)."""
    histories = _histories((Path(d).name, d) for d in run_dirs)
    if not histories:
        return message_figure("these runs have no recorded epochs yet", "Learning curves")
    values = _long(histories, {r: r for r in histories}, columns)
    return curves_figure(values, columns=columns, title="Learning curves")
