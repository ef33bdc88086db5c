"""Training curves (kdlib.figures.curves): the mean over seeds with its band, against the
fixture's history.csv files read with pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D

from kdlib import figures
from kdlib.figures.curves import curve_values
from kdlib.paper import method_label
from tests.figures.helpers import plain, texts


def _histories(runs: pd.DataFrame) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in runs["history"]]


def _lines(ax: Axes) -> list[Line2D]:
    """The lines drawn with data (seaborn adds empty ones for its legend)."""
    return [ln for ln in ax.get_lines() if len(ln.get_xdata())]


def test_mean_curves_average_over_seeds(runs, raw) -> None:
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    curves = figures.mean_curves(sel)
    with_history = sel[[(Path(p) / "history.csv").exists() for p in sel["path"]]]
    assert set(curves["label"]) == {method_label(m) for m in with_history["method"]}
    kd = curves[(curves["label"] == "KD") & (curves["column"] == "test_acc")]
    assert list(kd["epoch"]) == list(range(1, 201)) and (kd["n"] == 2).all()
    hist = _histories(
        plain(raw, method="kd", teacher="resnet26", epochs=200).dropna(subset=["history"])
    )
    want = np.mean([h["test_acc"] for h in hist], axis=0)
    assert kd["mean"].to_numpy() == pytest.approx(want)
    assert kd["std"].to_numpy() == pytest.approx(
        np.std([h["test_acc"] for h in hist], axis=0, ddof=1)
    )


def test_training_curves_draw_each_mean_and_its_seed_band(runs, raw) -> None:
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    fig = figures.training_curves_figure(sel)
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in panels] == [
        "test accuracy (%)",
        "validation accuracy (%)",
        "training loss (all terms)",
    ]
    assert panels[2].get_yscale() == "log"
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert names[:3] == ["NOKD", "KD", "TAKD"] and "PKD (original)" in names
    kd = plain(raw, method="kd", teacher="resnet26", epochs=200).dropna(subset=["history"])
    want = np.mean([h["val_acc"] for h in _histories(kd)], axis=0)
    line = _lines(panels[1])[names.index("KD")]
    assert line.get_xdata().tolist() == list(range(1, 201))
    assert line.get_ydata() == pytest.approx(want)
    bands = [c for c in panels[1].collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(names)  # two seeds each: every line has its band
    (band,) = [b for b, c in zip(bands, names, strict=True) if c == "KD"]
    std = np.std([h["val_acc"] for h in _histories(kd)], axis=0, ddof=1)
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx((want + std).max())
    assert "Training curves (mean ± std over seeds)" in texts(fig)


def test_run_curves_figure_draws_each_run_as_it_is(runs, raw, tmp_path: Path) -> None:
    dirs = list(figures.select_runs(runs, method="kd", teacher="resnet26", epochs=200)["path"])
    dirs = [d for d in dirs if (Path(d) / "history.csv").exists()]
    fig = figures.run_curves_figure([*dirs, tmp_path])  # a folder without epochs is left out
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [len(_lines(ax)) for ax in panels] == [2, 2, 2]
    assert not [c for ax in panels for c in ax.collections if isinstance(c, PolyCollection)]
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == [Path(d).name for d in dirs]
    for path, line in zip(dirs, _lines(panels[0]), strict=True):
        want = pd.read_csv(Path(path) / "history.csv")["test_acc"]
        assert line.get_ydata() == pytest.approx(want.to_numpy())
    assert "no recorded epochs" in texts(figures.run_curves_figure([tmp_path]))


@pytest.mark.parametrize("kind", ["empty", "unfinished"])
def test_no_completed_runs_say_so(runs, empty, kind: str) -> None:
    df = empty if kind == "empty" else runs[runs["status"] != "completed"]
    assert "no completed runs" in texts(figures.training_curves_figure(df))
    assert figures.mean_curves(df).empty


def test_settings_that_differ_in_precision_say_which_and_unrecorded_columns_get_no_panel(
    runs,
) -> None:
    sel = figures.select_runs(runs, method="kd", student="resnet8", teacher="resnet26", epochs=200)
    kd = sel[[(Path(p) / "history.csv").exists() for p in sel["path"]]].iloc[:2]
    # the two seeds as two settings, one per precision, that kept no validation split
    kd = kd.assign(setting_hash=["a" * 10, "b" * 10], **{"speed.precision": ["fp32", "bf16"]})
    histories = {
        str(r): pd.read_csv(Path(p) / "history.csv").drop(columns="val_acc")
        for r, p in zip(kd["run_id"], kd["path"], strict=True)
    }
    values = curve_values(kd, histories=histories)
    assert set(values["label"]) == {"KD (fp32)", "KD (bf16)"}
    fig = figures.training_curves_figure(kd, histories=histories)
    panels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert panels == ["test accuracy (%)", "training loss (all terms)"]
