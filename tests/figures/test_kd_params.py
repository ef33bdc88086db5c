"""KD's T x lambda heatmap (kdlib.figures.kd_params), against the grid runs' JSON files."""

from __future__ import annotations

import warnings

import pytest
from matplotlib.patches import Rectangle

from kdlib import figures
from tests.figures.helpers import texts


def test_cells_are_the_grid_means_and_the_best_is_outlined(runs, raw) -> None:
    fig = figures.kd_params_figure(runs)
    (ax,) = [a for a in fig.axes if a.get_title()]
    grid = raw[raw["grid"] == "kdparam"]
    means = grid.groupby(["T", "lambda"])["final_test_acc"].agg(["mean", "count"])
    rows = [float(t.get_text()) for t in ax.get_yticklabels()]
    cols = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert rows == [10.0, 5.0, 1.0] and cols == [0.1, 0.5, 0.9]  # largest T on top
    cells = {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(cells) == 9
    for (i, j), text in cells.items():
        mean, count = means.loc[(rows[i], cols[j])]
        assert text == f"{mean:.2f}\nn={count:.0f}", (rows[i], cols[j])
    best_T, best_lambda = means["mean"].idxmax()
    (box,) = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert (rows[int(box.get_y())], cols[int(box.get_x())]) == (best_T, best_lambda)
    assert f"best T={best_T:g}, lambda={best_lambda:g}" in ax.get_title()
    assert "best T=5, lambda=0.5" in texts(fig) and "SYNTHETIC FIXTURE DATA" in texts(fig)


def test_one_panel_per_setting_outside_the_grid(runs, raw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", figures.SettingsWarning)  # tested with the table
        fig = figures.kd_params_figure(runs, grid_only=False)
    titles = [a.get_title().split("\n")[0] for a in fig.axes if a.get_title()]
    kd = raw[raw["method"] == "kd"]
    settings = kd.assign(loaded=kd["teacher_checkpoint"].notna())
    assert len(titles) == len(settings[["teacher", "loaded", "epochs"]].drop_duplicates()) == 8
    assert {
        "ResNet26 (trained)→ResNet8, cifar10, 200 epochs",
        "ResNet26→ResNet8, cifar10, 200 epochs",
        "ResNet26→ResNet8, cifar10, 350 epochs",
    } < set(titles)
    assert sum(not a.axison for a in fig.axes) == 1  # 8 panels on a 3 x 3 grid


@pytest.mark.parametrize("kind", ["empty", "unfinished"])
def test_no_completed_runs_say_so(runs, empty, kind: str) -> None:
    df = empty if kind == "empty" else runs[runs["status"] != "completed"]
    assert "no completed kdparam" in texts(figures.kd_params_figure(df))
