"""Each method's gain over nokd in Table 3's pair, per training budget, beside the paper's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdlib.figures.selection import METRICS, missing, numeric, select_runs, settings, teachers_of
from kdlib.figures.style import (
    legend_below,
    message_figure,
    method_sort_key,
    new_figure,
    seaborn_style,
    titled,
)
from kdlib.figures.tables import gain_table
from kdlib.paper import method_label, model_label


def _in_table3_pair(gains: pd.DataFrame) -> pd.DataFrame:
    """Rows of ResNet26 -> ResNet8 on CIFAR-10 with the released (checkpoint) teacher."""
    keep = [
        s == "resnet8" and d == "cifar10" and "resnet26" in teachers_of(t) and src == "checkpoint"
        for s, d, t, src in zip(
            gains["student"], gains["dataset"], gains["teacher"], gains["teacher_from"],
            strict=True,
        )
    ]  # fmt: skip
    return gains[np.asarray(keep, dtype=bool)]


def _row_labels(g: pd.DataFrame) -> list[str]:
    """A method's label (its teacher where not ResNet26), what tells apart settings that
    share it (precision, parameters, else the hash), and its seeds (method/baseline)."""
    names = []
    for _, r in g.iterrows():
        extra = "" if str(r["teacher"]) == "resnet26" else f" ({model_label(r['teacher'])})"
        names.append(method_label(r["method"]) + extra)
    plain = list(names)
    for i, name in enumerate(plain):
        if plain.count(name) > 1:
            r = g.iloc[i]
            extra = [] if missing(r["precision"]) else [str(r["precision"])]
            extra += [r["params"]] if r["params"] else []
            names[i] = f"{name} [{', '.join(extra) or r['setting']}]"
    return [f"{name}  n={n}/{b}" for name, n, b in zip(names, g["n"], g["baseline_n"], strict=True)]


# A gain further than this from the panel's median row (a collapsed run, for example) is
# marked at the panel's edge with its value instead of squeezing every other row together.
OFF_SCALE = 10.0


def _window(g: pd.DataFrame, seeds: pd.DataFrame) -> tuple[float, float]:
    """The panel's x range: 0, the paper's gains, and our values within OFF_SCALE points of
    the median row's gain, with a margin."""
    ours = np.concatenate(
        [g[c].to_numpy(float) for c in ("gain", "ci_low", "ci_high")]
        + [seeds["gain"].to_numpy(float)]
    )
    ours = ours[np.isfinite(ours)]
    centre = float(np.median(g["gain"].to_numpy(float)))
    paper = g["paper_gain"].to_numpy(float)
    shown = np.concatenate(
        [[0.0], paper[np.isfinite(paper)], ours[abs(ours - centre) <= OFF_SCALE]]
    )
    lo, hi = float(shown.min()), float(shown.max())
    pad = max(0.08 * (hi - lo), 0.5)
    return lo - pad, hi + pad


def _mark_off_scale(
    ax: Axes, g: pd.DataFrame, seeds: pd.DataFrame, window: tuple[float, float]
) -> None:
    """What of a row lies outside the panel, written at its edge just above the row (so
    the paper's diamond stays visible): a mean gain with its value; else a seed or an
    interval end that reaches past the edge, with how far."""
    lo, hi = window
    for y, (setting, gain, ci_low, ci_high) in enumerate(
        zip(g["setting"], g["gain"], g["ci_low"], g["ci_high"], strict=True)
    ):
        if not lo <= gain <= hi:
            value, what = float(gain), ""
        else:
            reach = [("a seed at ", v) for v in seeds.loc[seeds["setting"] == setting, "gain"]]
            reach += [("interval to ", ci_low), ("interval to ", ci_high)]
            outside = [(w, float(v)) for w, v in reach if np.isfinite(v) and not lo <= v <= hi]
            if not outside:
                continue
            what, value = max(outside, key=lambda wv: abs(wv[1] - gain))
        left = value < lo
        ax.annotate(
            f"{'◀ ' if left else ''}{what}{value:+.2f} (off scale){'' if left else ' ▶'}",
            xy=(lo if left else hi, y), xytext=(4 if left else -4, 5), textcoords="offset points",
            ha="left" if left else "right", va="bottom", fontsize=8, color="C0",
        )  # fmt: skip


def _draw_budget(ax: Axes, g: pd.DataFrame, seeds: pd.DataFrame, level: float) -> None:
    """One budget's panel: each seed's gain, the mean with its Welch interval, the paper's."""
    order = [
        (method_sort_key(m), "" if missing(p) else str(p))  # one method's pools: bf16, fp32
        for m, p in zip(g["method"], g["precision"], strict=True)
    ]
    g = g.iloc[sorted(range(len(g)), key=lambda i: order[i])]
    labels = _row_labels(g)
    row = dict(zip(g["setting"], labels, strict=True))
    seeds = seeds[seeds["setting"].isin(list(row))].assign(row=lambda s: s["setting"].map(row))
    y = np.arange(len(g))
    with seaborn_style():
        sns.swarmplot(
            data=seeds, x="gain", y="row", order=labels, ax=ax, color="0.2", size=4,
            edgecolor="white", linewidth=0.6, zorder=5,
        )  # fmt: skip
        low = np.nan_to_num((g["gain"] - g["ci_low"]).to_numpy(float), nan=0.0)
        high = np.nan_to_num((g["ci_high"] - g["gain"]).to_numpy(float), nan=0.0)
        ax.errorbar(
            g["gain"], y, xerr=[low, high], fmt="o", color="C0", capsize=4, ms=7, zorder=3,
            label=f"ours: mean gain, {level:.0%} Welch interval",
        )  # fmt: skip
        ax.scatter(
            g["paper_gain"], y, marker="D", s=40, color="tab:red", zorder=4,
            label="paper's gain (Table 3, 200 epochs)",
        )  # fmt: skip
    ax.scatter(
        [], [], color="0.2", s=16, label="ours: each seed (its accuracy − the baseline's mean)"
    )
    ax.axvline(0.0, color="0.3", lw=0.9)
    ax.set_ylabel("")
    window = _window(g, seeds)
    ax.set_xlim(*window)
    _mark_off_scale(ax, g, seeds, window)


def _seed_gains(df: pd.DataFrame, gains: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each run of a gain row's setting: its accuracy minus that row's baseline mean."""
    runs = select_runs(df)
    runs = runs.assign(setting=settings(runs), value=numeric(runs, metric))
    base = dict(zip(gains["setting"], gains["baseline_mean"], strict=True))
    runs = runs[runs["setting"].isin(list(base))]
    return runs.assign(gain=runs["value"] - runs["setting"].map(base))[["setting", "gain"]]


def gains_figure(
    df: pd.DataFrame,
    metric: str = "final_test_acc",
    baseline: str = "nokd",
    level: float = 0.95,
) -> Figure:
    """Each method's gain over nokd in Table 3's pair (ResNet26 -> ResNet8, CIFAR-10, the
    released teacher), one panel per budget: each seed's accuracy minus the baseline's
    mean as a dot, the mean gain with its Welch interval (:func:`gain_table`; no bar
    below 2 seeds), and the paper's gain (its Table 3 number minus its nokd, at 200
    epochs) as a red diamond. The seed-code and original variants of a method are
    separate rows; each row says its seeds (method/baseline). A row further than
    ``OFF_SCALE`` points from the panel's median is written at the panel's edge.
    """
    gains = _in_table3_pair(gain_table(df, metric=metric, baseline=baseline))
    heading = titled(
        f"Gain over {method_label(baseline)}, ResNet26 → ResNet8, CIFAR-10 "
        f"({METRICS.get(metric, metric)}; mean, {level:.0%} Welch interval over seeds)",
        df,
    )
    if gains.empty:
        return message_figure(
            "no completed runs of Table 3's pair with a nokd baseline yet", heading
        )
    seeds = _seed_gains(df, gains, metric)
    budgets = sorted(gains["epochs"].unique())
    rows = max(len(gains[gains["epochs"] == e]) for e in budgets)
    fig, axes = new_figure(5.5 * len(budgets) + 2.5, 0.42 * rows + 2.4, 1, len(budgets))
    for ax, epochs in zip(axes[0], budgets, strict=True):
        _draw_budget(ax, gains[gains["epochs"] == epochs], seeds, level)
        ax.set_title(f"{epochs} epochs" + ("" if epochs == 200 else " (not the paper's 200)"))
        ax.set_xlabel(f"gain over {method_label(baseline)} (accuracy points)")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylim(rows - 0.5, -0.5)  # rows equally spaced in every panel, from the top
    handles, labels = axes[0, 0].get_legend_handles_labels()
    entries = sorted(zip(handles, labels, strict=True), key=lambda e: ("seed" not in e[1], e[1]))
    legend_below(fig, axes[0, 0], entries, ncols=3)
    fig.suptitle(heading, fontsize=10)
    return fig
