"""The generalization heatmap (kdlib.figures.generalization): each cell a method's gain over
nokd for one teacher -> student pair, checked against SciPy on the fixture's JSON files."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdlib import figures
from kdlib.runs import load_runs
from tests.figures.helpers import FIXTURE, plain, texts


def _heatmap(fig: Figure) -> Axes:
    return next(ax for ax in fig.axes if ax.get_yticklabels())


def _cells(fig: Figure) -> dict[tuple[str, str, str], str]:
    """Each annotated cell by (row, column's budget heading, column's pair): its text."""
    ax = _heatmap(fig)
    rows = {round(t.get_position()[1], 3): t.get_text() for t in ax.get_yticklabels()}
    pairs = {round(t.get_position()[0], 3): t.get_text() for t in ax.get_xticklabels()}
    (top,) = ax.child_axes  # budget headings over column groups parted by vertical lines
    heads = [t.get_text() for t in sorted(top.get_xticklabels(), key=lambda t: t.get_position())]
    bounds = sorted(ln.get_xdata()[0] for ln in ax.lines)
    out = {}
    for t in ax.texts:
        x, y = (round(v, 3) for v in t.get_position())
        head = heads[sum(x > b for b in bounds)]
        out[rows[y], head, pairs[x]] = t.get_text()
    return out


def _gain_and_star(text: str) -> tuple[float, bool, str]:
    value, n = text.split("\n")
    return float(value.rstrip("*")), value.endswith("*"), n


def test_cells_are_welch_gains_of_the_fixture(runs, raw) -> None:
    cells = _cells(figures.generalization_figure(runs))
    e350 = plain(raw, student="resnet8", epochs=350)
    base = e350[e350["method"] == "nokd"]["final_test_acc"]
    checked = 0
    for (row, head, _), text in cells.items():
        if head != "cifar10, 350 epochs":
            continue
        method = {"KD": "kd", "TAKD": "takd", "UDA (seed code)": "uda", "UDA-NOKD": "uda_nokd"}
        ours = e350[e350["method"] == method[row]]["final_test_acc"]
        gain, star, n = _gain_and_star(text)
        assert gain == pytest.approx(ours.mean() - base.mean(), abs=0.005 + 1e-9), row
        p = scipy.stats.ttest_ind(ours, base, equal_var=False).pvalue
        assert star == (p < 0.05) and n == "n=2/2", row
        checked += 1
    assert checked == 4
    # KD ResNet26 -> ResNet8 at 200 epochs: a teacher from its checkpoint and one trained
    # here are two columns; 1.39 and 1.155 over nokd's 89.075
    kd = {pair: _gain_and_star(t)[0] for (r, h, pair), t in cells.items() if r == "KD"}
    assert kd["ResNet26 (checkpoint)→ResNet8"] == pytest.approx(1.39, abs=0.005 + 1e-9)
    assert kd["ResNet26 (trained)→ResNet8"] == pytest.approx(1.155, abs=0.005 + 1e-9)
    assert sum("*\n" in t for t in cells.values()) == sum(
        p < 0.05 for p in figures.gain_table(runs)["p"].dropna()
    )


def test_a_teacher_free_method_has_no_column_of_its_own(runs) -> None:
    fig = figures.generalization_figure(runs)
    pairs = [t.get_text() for t in _heatmap(fig).get_xticklabels()]
    assert not [p for p in pairs if p.startswith(("none", "no teacher"))]
    assert len(pairs) == 8  # 7 teachers at 200 epochs (ResNet26 two ways), one at 350
    uda_nokd = {(h, p) for r, h, p in _cells(fig) if r == "UDA-NOKD"}
    assert uda_nokd == {("cifar10, 350 epochs", "ResNet26→ResNet8")}


def _copy_run(src: Path, dest: Path, **config: object) -> None:
    shutil.copytree(src, dest)
    path = dest / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def test_a_teacher_free_method_is_in_every_column_of_its_budget(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    for seed in (0, 1):  # KD at 350 epochs from a second teacher
        kd = sorted(root.glob(f"*-kd-resnet8-from-resnet26-cifar10-e350-s{seed}"))[0]
        _copy_run(kd, root / f"zz-kd-resnet20-s{seed}", teacher="resnet20")
    with warnings.catch_warnings():
        warnings.simplefilter("error", figures.SettingsWarning)  # each cell is one setting
        cells = _cells(figures.generalization_figure(load_runs(root)))
    uda_nokd = {p: t for (r, h, p), t in cells.items() if r == "UDA-NOKD"}
    assert set(uda_nokd) == {"ResNet20→ResNet8", "ResNet26→ResNet8"}
    assert len(set(uda_nokd.values())) == 1  # one setting, the same gain in both


def test_a_teacher_free_method_alone_gets_a_no_teacher_column(runs) -> None:
    alone = runs[runs["method"].isin(["nokd", "uda_nokd"]) & (runs["epochs"] == 350)]
    fig = figures.generalization_figure(alone)
    assert [t.get_text() for t in _heatmap(fig).get_xticklabels()] == ["no teacher→ResNet8"]
    assert list(_cells(fig)) == [("UDA-NOKD", "cifar10, 350 epochs", "no teacher→ResNet8")]


def _labels_clear(ax: Axes) -> None:
    """Neighbouring x tick labels do not overlap: horizontal ones are narrower than their
    spacing, rotated ones (parallel, anchored alike) are apart by more than a line."""
    renderer = FigureCanvasAgg(ax.figure).get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    for a, b in zip(labels, labels[1:], strict=False):
        angle = math.radians(a.get_rotation())
        dx = ax.transData.transform((b.get_position()[0], 0))[0]
        dx -= ax.transData.transform((a.get_position()[0], 0))[0]
        rotation = a.get_rotation()
        a.set_rotation(0), b.set_rotation(0)
        wa, ha = a.get_window_extent(renderer).size
        wb, _ = b.get_window_extent(renderer).size
        a.set_rotation(rotation), b.set_rotation(rotation)
        if angle == 0:
            assert dx > (wa + wb) / 2, (a.get_text(), b.get_text())
        else:
            assert dx * math.sin(angle) > ha, (a.get_text(), b.get_text())


def test_column_labels_do_not_overlap(runs, tmp_path: Path) -> None:
    fig = figures.generalization_figure(runs)
    figures.save_figure(fig, tmp_path, "generalization", formats=("png",))  # as drawn
    FigureCanvasAgg(fig).draw()
    ax = _heatmap(fig)
    _labels_clear(ax)
    (top,) = ax.child_axes
    _labels_clear(top)
    # the title sits above the budget headings
    renderer = fig.canvas.get_renderer()
    title = ax.title.get_window_extent(renderer)
    assert all(t.get_window_extent(renderer).y1 <= title.y0 for t in top.get_xticklabels())


def test_no_completed_runs_say_so(runs, empty) -> None:
    for df in (empty, runs[runs["status"] != "completed"], pd.DataFrame(columns=["status"])):
        assert "no completed runs" in texts(figures.generalization_figure(df))


def test_runs_of_another_precision_are_a_budget_of_their_own(tmp_path: Path) -> None:
    # nokd and kd at 350 epochs again, in fp32 (the fixture's runs record no precision):
    # two pools of one budget, never one cell picked from them
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    for method in ("nokd-resnet8", "kd-resnet8-from-resnet26"):
        for seed in (0, 1):
            run = sorted(root.glob(f"*-{method}-cifar10-e350-s{seed}"))[0]
            _copy_run(run, root / f"zz-{method}-fp32-s{seed}", speed={"precision": "fp32"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", figures.SettingsWarning)  # each cell is one setting
        cells = _cells(figures.generalization_figure(load_runs(root)))
    kd = {h: t for (r, h, p), t in cells.items() if r == "KD" and "350" in h}
    assert set(kd) == {"cifar10, 350 epochs", "cifar10, 350 epochs\nfp32"}
