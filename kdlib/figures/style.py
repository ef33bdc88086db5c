"""What every figure shares: the seaborn look, titles that flag synthetic runs, row order
and labels that tell settings apart, and the figure that says there is nothing to plot.

Figures are built without pyplot (no global state, no backend needed): a
``matplotlib.figure.Figure`` whose axes are created inside seaborn's style context, so
the notebooks stay thin and a test or a script can rebuild the same figure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdlib.figures.selection import is_synthetic
from kdlib.method_catalogue import METHOD_ORDER
from kdlib.paper import base_method

SYNTHETIC_NOTE = "SYNTHETIC FIXTURE DATA"


@contextmanager
def seaborn_style() -> Iterator[None]:
    """seaborn's whitegrid look for what is drawn inside, the global rcParams untouched."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        yield


def new_figure(
    width: float, height: float, nrows: int = 1, ncols: int = 1, **kw: Any
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure and its grid of axes (always 2-d), in seaborn's style."""
    with seaborn_style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def titled(text: str, df: pd.DataFrame) -> str:
    """``text``, with a second line saying so where any run is a synthetic fixture."""
    return f"{text}\n[{SYNTHETIC_NOTE}]" if is_synthetic(df) else text


def method_sort_key(method: str) -> tuple[int, str]:
    """The paper's order; a method's seed-code variant right after its original."""
    base = base_method(method)
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def message_figure(message: str, heading: str = "") -> Figure:
    """A figure that says why there is nothing to plot (instead of raising)."""
    fig, axes = new_figure(6, 2.5)
    ax = axes[0, 0]
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    if heading:
        ax.set_title(heading)
    return fig


def legend_below(fig: Figure, ax: Axes, extra: Sequence[tuple[Any, str]] = (), ncols: int = 2):
    """Move ``ax``'s legend (seaborn's, plus ``extra`` (handle, label) pairs) under the
    figure, where it cannot cover data."""
    handles, labels = [h for h, _ in extra], [label for _, label in extra]
    legend = ax.get_legend()
    if legend is not None:
        handles += list(legend.legend_handles)
        labels += [t.get_text() for t in legend.get_texts()]
        legend.remove()
    unique = dict(zip(labels, handles, strict=True))  # a label drawn twice is listed once
    handles, labels = list(unique.values()), list(unique)
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False
        )


def tell_apart(
    labels: Sequence[str],
    setting: Sequence[str],
    sources: Sequence[Any],
    params: Sequence[str],
) -> list[str]:
    """``labels`` made distinct per setting: where one label covers several settings,
    each says what tells it apart (where its teacher came from, its method parameters,
    else its setting hash)."""
    n = len(labels)

    def clashes(keys: Sequence[Any]) -> set[Any]:
        seen: dict[Any, set[str]] = {}
        for k, s in zip(keys, setting, strict=True):
            seen.setdefault(k, set()).add(s)
        return {k for k, ss in seen.items() if len(ss) > 1}

    out = list(labels)
    for label in clashes(out):
        idx = [i for i in range(n) if out[i] == label]
        vary_source = len({sources[i] for i in idx}) > 1
        vary_params = len({params[i] for i in idx}) > 1
        for i in idx:
            parts = []
            if vary_source and sources[i]:
                parts.append(f"teacher {sources[i]}")
            if vary_params and params[i]:
                parts.append(params[i])
            if parts:
                out[i] = f"{labels[i]} ({'; '.join(parts)})"
    for label in clashes(out):
        for i in range(n):
            if out[i] == label:
                out[i] = f"{out[i]} [setting {setting[i]}]"
    return out
