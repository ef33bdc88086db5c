"""KD's accuracy over its temperature T and weight lambda, as annotated heatmaps: the paper
tunes KD this way before comparing it with other methods."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from kdlib.figures.selection import METRICS
from kdlib.figures.style import message_figure, new_figure, seaborn_style, titled
from kdlib.figures.tables import kd_param_table
from kdlib.paper import model_label

_PANEL = ["teacher", "teacher_from", "student", "dataset", "epochs"]


def kd_params_figure(
    df: pd.DataFrame, metric: str = "final_test_acc", grid_only: bool = True
) -> Figure:
    """Heatmap of KD accuracy over temperature T (rows, largest on top) and weight lambda
    (columns): each cell the mean over seeds and their number, the best cell outlined.

    One panel per teacher -> student setting (:func:`kd_param_table`: a teacher from its
    checkpoint and one trained here are separate panels).
    """
    table = kd_param_table(df, metric=metric, grid_only=grid_only)
    heading = titled(f"KD accuracy over T x lambda ({METRICS.get(metric, metric)})", df)
    if table.empty:
        return message_figure("no completed kdparam (T x lambda) runs yet", heading)
    panels = list(table.groupby(_PANEL).groups)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    n_t, n_lam = table["T"].nunique(), table["lambda"].nunique()
    width, height = max(4.2, 0.95 * n_lam + 2.4), max(3.4, 0.6 * n_t + 2.0)
    fig, axes = new_figure(ncols * width, nrows * height, nrows, ncols)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels, strict=False):
        sub = table[table[_PANEL].eq(pd.Series(panel, index=_PANEL)).all(axis=1)]
        grid = sub.pivot(index="T", columns="lambda", values="mean")
        grid = grid.sort_index(ascending=False).sort_index(axis=1)
        counts = sub.pivot(index="T", columns="lambda", values="n").reindex_like(grid)
        text = grid.map(lambda v: f"{v:.2f}") + "\nn=" + counts.map(lambda n: f"{n:.0f}")
        with seaborn_style():
            sns.heatmap(
                grid, annot=text.fillna("").to_numpy(), fmt="", cmap="viridis", ax=ax,
                linewidths=1.0, linecolor="white", annot_kws={"fontsize": 8},
                cbar_kws={"label": "test accuracy (%)", "shrink": 0.85},
                xticklabels=[f"{v:g}" for v in grid.columns],
                yticklabels=[f"{v:g}" for v in grid.index],
            )  # fmt: skip
        bi, bj = np.unravel_index(np.nanargmax(grid.to_numpy(dtype=float)), grid.shape)
        ax.add_patch(Rectangle((bj, bi), 1, 1, fill=False, edgecolor="red", lw=2.5))
        ax.set_facecolor("0.9")  # cells not run
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("lambda (weight of the KD term)")
        ax.set_ylabel("T (temperature)")
        teacher, source, student, dataset, epochs = panel
        trained = " (trained)" if source == "trained" else ""
        ax.set_title(
            f"{model_label(teacher)}{trained}→{model_label(student)}, {dataset}, {epochs} epochs\n"
            f"best T={grid.index[bi]:g}, lambda={grid.columns[bj]:g}",
            fontsize=9,
        )
    fig.suptitle(heading)
    return fig
