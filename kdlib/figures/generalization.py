"""Does a method help beyond the setting it was tuned for? Its gain over nokd per
teacher -> student pair, as an annotated heatmap."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kdlib.figures.selection import METRICS, SettingsWarning, missing
from kdlib.figures.style import message_figure, method_sort_key, new_figure, seaborn_style, titled
from kdlib.figures.tables import gain_table
from kdlib.method_catalogue import TEACHER_FREE
from kdlib.paper import base_method, method_label, model_label

_BUDGET = ["dataset", "epochs", "student"]  # what a teacher-free method shares with a column


def _columns(gains: pd.DataFrame) -> pd.DataFrame:
    """``gains`` with each row's column: its teacher -> student pair (``pair``; where the
    teacher came from where a pair was run both ways) in its budget (``budget``).

    Where a budget holds runs of several precisions (the CPU campaign's bf16 and fp32
    pools), each precision is a budget of its own. A teacher-free method (UDA-NOKD) is
    shown in every column of its student and budget (its gain does not depend on a
    teacher), in a column of its own ("no teacher") only where no method with a teacher
    was run there."""
    budget = [f"{d}, {e} epochs" for d, e in gains[["dataset", "epochs"]].values]
    if "precision" in gains:  # pools of different precision are columns of their own
        precision = gains["precision"].where(~gains["precision"].map(missing), "")
        several = precision.groupby(budget).transform("nunique") > 1
        budget = [
            f"{b}\n{p}" if m and p else b  # a second line: headings stay column-wide
            for b, p, m in zip(budget, precision, several, strict=True)
        ]
    gains = gains.assign(budget=budget)
    free = gains["method"].map(base_method).isin(TEACHER_FREE)
    taught = gains[~free]
    both = taught.groupby(["teacher", *_BUDGET])["teacher_from"].transform("nunique") > 1
    teacher = [model_label(t) for t in taught["teacher"]]
    teacher = [
        f"{t} ({src})" if b else t
        for t, src, b in zip(teacher, taught["teacher_from"], both, strict=True)
    ]
    taught = taught.assign(
        pair=[f"{t}→{model_label(s)}" for t, s in zip(teacher, taught["student"], strict=True)]
    )
    pairs = taught[[*_BUDGET, "pair"]].drop_duplicates()
    rows = [taught]
    for _, r in gains[free].iterrows():
        same = pairs.loc[pairs[_BUDGET].eq(r[_BUDGET]).all(axis=1), "pair"].tolist()
        same = same or [f"no teacher→{model_label(r['student'])}"]
        rows.append(pd.DataFrame([r] * len(same)).assign(pair=same))
    return pd.concat(rows, ignore_index=True)


def _one_cell_each(gains: pd.DataFrame) -> pd.DataFrame:
    """Where a (method row, pair) cell matched several settings, the one with the most
    seeds (then the smallest hash), with a ``SettingsWarning``."""
    gains = gains.assign(_rank=-gains["n"]).sort_values(["_rank", "setting"], kind="stable")
    clash = gains.duplicated(["row", "budget", "pair"], keep="first")
    if clash.any():
        warnings.warn(
            f"generalization figure: {int(clash.sum())} cell(s) matched several settings; "
            "showing the one with the most seeds, leaving out settings "
            + ", ".join(gains.loc[clash, "setting"]),
            SettingsWarning,
            stacklevel=3,
        )
    return gains[~clash]


def generalization_figure(
    df: pd.DataFrame,
    metric: str = "final_test_acc",
    alpha: float = 0.05,
    baseline: str = "nokd",
) -> Figure:
    """Heatmap of each method's gain over nokd per teacher -> student pair.

    Cells show the mean gain in points, ``*`` where Welch's t-test over seeds gives
    p < ``alpha``, and the seeds (method/baseline); grey cells were not run. Whether a
    method helps only for some pairs is the paper's generalization question.

    Each cell is one setting of :func:`gain_table`: a method's rows name the method
    parameters given (``SFD (projection=True)``), and a pair that was run with a teacher
    from a checkpoint and with one trained here is two columns (``(checkpoint)``,
    ``(trained)``). Should one cell still match several settings, the one with the most
    seeds (then the smallest hash) is shown, with a ``SettingsWarning``.
    """
    gains = gain_table(df, metric=metric, baseline=baseline)
    heading = titled(f"Gain over {method_label(baseline)} ({METRICS.get(metric, metric)})", df)
    if gains.empty:
        return message_figure(
            f"no completed runs with a {baseline} baseline in the same setting yet", heading
        )
    gains = _columns(gains)
    label = [method_label(m) for m in gains["method"]]
    params = [f" ({p})" if p else "" for p in gains["params"]]
    gains = _one_cell_each(gains.assign(row=[a + b for a, b in zip(label, params, strict=True)]))
    stars = ["*" if not missing(p) and p < alpha else "" for p in gains["p"]]
    seeds = zip(gains["gain"], stars, gains["n"], gains["baseline_n"], strict=True)
    gains = gains.assign(text=[f"{g:+.2f}{s}\nn={n}/{b}" for g, s, n, b in seeds])
    key = ["budget", "pair"]
    columns = list(dict.fromkeys(map(tuple, gains.sort_values([*_BUDGET, *key])[key].values)))
    methods = gains.drop_duplicates("row").set_index("row")["method"]
    rows = sorted(methods.index, key=lambda r: (*method_sort_key(methods[r]), r))
    gain = gains.pivot(index="row", columns=key, values="gain").reindex(rows).astype(float)
    gain = gain.reindex(columns=pd.MultiIndex.from_tuples(columns, names=key))
    text = gains.pivot(index="row", columns=key, values="text").reindex_like(gain).fillna("")

    vmax = float(np.nanmax(np.abs(gain.to_numpy()))) or 1.0
    fig, axes = new_figure(max(6.0, 1.2 * len(columns) + 3.5), max(3.5, 0.55 * len(rows) + 2.8))
    ax = axes[0, 0]
    with seaborn_style():
        sns.heatmap(
            gain, annot=text.to_numpy(), fmt="", cmap="RdBu", vmin=-vmax,
            vmax=vmax, linewidths=1.0, linecolor="white", ax=ax, annot_kws={"fontsize": 8},
            cbar_kws={"label": "gain (accuracy points)"},
            xticklabels=[p for _, p in columns], yticklabels=rows,
        )  # fmt: skip
    ax.set_facecolor("0.9")  # the cells not run
    ax.grid(False)
    ax.tick_params(axis="x", labelsize=8, rotation=30)
    for tick in ax.get_xticklabels():
        tick.set(ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", rotation=0)
    # each budget's columns under one heading on top, groups parted by a line
    budgets = [b for b, _ in columns]
    groups = list(dict.fromkeys(budgets))
    starts = [budgets.index(b) for b in groups]
    ends = [len(budgets) - budgets[::-1].index(b) for b in groups]
    top = ax.secondary_xaxis("top")
    top.set_xticks([(a + b) / 2 for a, b in zip(starts, ends, strict=True)], groups, fontsize=9)
    top.tick_params(length=0)
    top.spines["top"].set_visible(False)
    for x in starts[1:]:
        ax.axvline(x, color="0.25", lw=1.5)
    ax.set_xlabel(
        f"teacher → student   (grey: not run; * Welch p < {alpha:g}; n = seeds method/baseline)"
    )
    ax.set_ylabel("")
    ax.set_title(heading)
    return fig
