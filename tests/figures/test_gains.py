"""Each method's gain over nokd in Table 3's pair (kdlib.figures.gains): the seeds, the
mean with its Welch interval and the paper's gain, against SciPy on the JSON files."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib.collections import PathCollection

from kdlib import figures
from kdlib.figures.gains import OFF_SCALE, _mark_off_scale, _row_labels, _window
from kdlib.paper import method_key, method_label, paper_results
from tests.figures.helpers import plain, texts


def test_each_panel_draws_seeds_mean_interval_and_the_papers_gain(runs, raw) -> None:
    fig = figures.gains_figure(runs)
    paper = dict(zip(*paper_results("table3")[["method", "accuracy"]].T.values, strict=True))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["200 epochs", "350 epochs (not the paper's 200)"]
    for ax, epochs in zip(panels, (200, 350), strict=True):
        pair = plain(raw, student="resnet8", epochs=epochs)
        pair = pair[pair["teacher"].isna() | pair["teacher_checkpoint"].notna()]
        keys = [method_key(m, v) for m, v in zip(pair["method"], pair["variant"], strict=True)]
        pair = pair.assign(key=keys)
        base = pair[pair["key"] == "nokd"]["final_test_acc"]
        rows = [t.get_text() for t in ax.get_yticklabels()]
        mean = next(ln for ln in ax.lines if ln.get_marker() == "o")
        low, high = (ln for ln in ax.lines if ln.get_marker() == "|")
        (diamonds,) = [c for c in ax.collections if c.get_label().startswith("paper's gain")]
        paper_x = np.ma.filled(diamonds.get_offsets()[:, 0], np.nan)  # none where it has none
        dots = [c for c in ax.collections if isinstance(c, PathCollection)][: len(rows)]
        for i, row in enumerate(rows):
            key = next(k for k in set(pair["key"]) if row == f"{method_label(k)}  n=2/2")
            ours = pair[pair["key"] == key]["final_test_acc"]
            ref = scipy.stats.ttest_ind(ours, base, equal_var=False)
            ci = ref.confidence_interval(0.95)
            assert mean.get_xdata()[i] == pytest.approx(ours.mean() - base.mean()), row
            assert (low.get_xdata()[i], high.get_xdata()[i]) == pytest.approx((ci.low, ci.high))
            seeds = sorted(dots[i].get_offsets()[:, 0])
            assert seeds == pytest.approx(sorted(ours - base.mean())), row
            want = paper[key] - paper["nokd"] if key in paper else math.nan
            assert paper_x[i] == pytest.approx(want, nan_ok=True), row
        taught = pair[pair["teacher"].notna()]  # a teacher-free method has no ResNet26 pair
        assert len(rows) == taught["key"].nunique()
    assert rows == ["KD  n=2/2", "TAKD  n=2/2", "UDA (seed code)  n=2/2"]
    text = texts(fig)
    assert "OH (seed code)  n=2/2" in text and "OH (original)  n=2/2" in text
    assert "ours: each seed (its accuracy − the baseline's mean)" in text
    assert "SYNTHETIC FIXTURE DATA" in text


def test_rows_of_one_label_say_what_differs(runs) -> None:
    # two KD settings in the pair that differ in precision and a method parameter
    g = figures.gain_table(runs)
    kd = g[(g["method"] == "kd") & (g["epochs"] == 200) & (g["teacher_from"] == "checkpoint")]
    twin = kd.assign(setting="other", params="T=4", n=1, precision="bf16")
    labels = _row_labels(pd.concat([kd, twin]))
    assert labels == [f"KD [{kd['setting'].iloc[0]}]  n=2/2", "KD [bf16, T=4]  n=1/2"]


@pytest.mark.parametrize("kind", ["empty", "unfinished"])
def test_no_completed_runs_say_so(runs, empty, kind: str) -> None:
    df = empty if kind == "empty" else runs[runs["status"] != "completed"]
    assert "no completed runs of Table 3's pair" in texts(figures.gains_figure(df))


def test_only_the_released_teachers_runs_count(runs) -> None:
    # Table 2's KD from a ResNet26 trained here is in gain_table, not in this figure
    fig = figures.gains_figure(runs)
    rows = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert sum(r.startswith("KD ") for r in rows) == 2  # one per budget
    assert not any("ResNet" in r for r in rows)
    assert np.isfinite(figures.gain_table(runs)["gain"]).all()


def test_a_collapsed_row_is_marked_at_the_edge_and_the_others_stay_readable(runs) -> None:
    # a copy of the 200-epoch OH (seed code) row whose gain is 50 points below the rest
    g = figures.gain_table(runs)
    g = g[(g["epochs"] == 200) & (g["teacher_from"] == "checkpoint")]
    collapsed = g[g["method"] == "oh"].iloc[:1]
    drop = collapsed["gain"].iloc[0] + 50.0
    collapsed = collapsed.assign(
        setting="collapsed",
        gain=collapsed["gain"] - drop,
        ci_low=collapsed["ci_low"] - drop,
        ci_high=collapsed["ci_high"] - drop,
    )
    both = pd.concat([g, collapsed])
    seeds = pd.DataFrame({"setting": ["collapsed"], "gain": [collapsed["gain"].iloc[0]]})
    lo, hi = _window(both, seeds)
    others = g[["gain", "ci_low", "ci_high", "paper_gain"]].to_numpy(float)
    assert lo <= np.nanmin(others) and np.nanmax(others) <= hi
    assert lo > collapsed["gain"].iloc[0] + OFF_SCALE  # the collapsed row is off the panel
    fig, ax = plt.subplots()
    _mark_off_scale(ax, both.reset_index(drop=True), seeds, (lo, hi))
    (note,) = [t.get_text() for t in ax.texts]
    assert note == f"◀ {collapsed['gain'].iloc[0]:+.2f} (off scale)"
    plt.close(fig)


def test_a_seed_or_interval_end_past_the_edge_is_marked_too() -> None:
    # rows inside the panel whose one seed (a) or interval end (b) reaches far past it
    g = pd.DataFrame(
        {
            "setting": ["ok", "a", "b"],
            "gain": [1.0, 2.0, 0.5],
            "ci_low": [0.5, 1.0, 0.0],
            "ci_high": [1.5, 3.0, 31.0],
        }
    )
    seeds = pd.DataFrame({"setting": ["ok", "a", "a", "a"], "gain": [1.0, 2.0, 2.0, -25.0]})
    fig, ax = plt.subplots()
    _mark_off_scale(ax, g, seeds, (-1.0, 4.0))
    notes = {round(t.xy[1]): t.get_text() for t in ax.texts}
    assert notes == {1: "◀ a seed at -25.00 (off scale)", 2: "interval to +31.00 (off scale) ▶"}
    plt.close(fig)
