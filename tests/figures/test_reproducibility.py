"""Our accuracy beside the paper's (kdlib.figures.reproducibility): what is drawn is every
seed, each method's mean, and the paper's number, as read from the fixture's JSON files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from kdlib import figures
from kdlib.paper import method_key, paper_results
from tests.figures.helpers import plain, texts

METRICS = ("final_test_acc", "test_acc_at_best_val", "best_test_acc")


def _table3_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """Table 3's runs from the JSON files: ResNet8 at 200 epochs, taught by the released
    ResNet26 or by no one, with each method's key (``oh:seed`` for the seed variant)."""
    runs = plain(raw, student="resnet8", epochs=200)
    runs = runs[runs["teacher"].isna() | runs["teacher_checkpoint"].notna()]
    return runs.assign(
        key=[method_key(m, v) for m, v in zip(runs["method"], runs["variant"], strict=True)]
    )


def test_table3_draws_every_seed_each_mean_and_the_papers_number(runs, raw) -> None:
    fig = figures.reproducibility_figure(runs, "table3")
    ax = fig.axes[0]
    t3 = _table3_runs(raw)
    order = [*paper_results("table3")["method"], "oh", "pkd"]  # then what the paper lacks
    assert set(t3["key"]) == set(order)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:3] == ["TAKD\nn=2", "UDA (seed code)\nn=2", "MKD\nn=2"]
    assert labels[-2:] == ["OH (original)\nn=2", "PKD (original)\nn=2"]
    # every seed's three accuracies are dots, and nothing else is
    dots = [
        y for c in ax.collections if isinstance(c, PathCollection) for y in c.get_offsets()[:, 1]
    ]
    want = [v for m in METRICS for v in t3[m]]
    assert Counter(np.round(dots, 6)) == Counter(np.round(want, 6))
    # the mean of each accuracy, in the paper's order, one marker per accuracy
    means = t3.groupby("key")[list(METRICS)].mean().loc[order]
    for metric, marker in zip(METRICS, "os^", strict=True):
        (line,) = [ln for ln in ax.lines if ln.get_marker() == marker and len(ln.get_xdata())]
        assert line.get_ydata() == pytest.approx(means[metric].to_numpy())
        assert np.round(line.get_xdata()).tolist() == list(range(len(order)))
    # the paper's number as a bar over its own entry, none for the unreported two
    (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = bars.get_segments()
    assert [s[0][1] for s in segments] == list(paper_results("table3")["accuracy"])
    assert [np.mean(s[:, 0]) for s in segments] == pytest.approx(range(8))
    text = texts(fig)
    assert "SYNTHETIC FIXTURE DATA" in text and "paper (best epoch)" in text
    assert "ours: epoch chosen on validation (mean ± std)" in text


def test_table2_names_each_teacher_with_its_accuracy(runs, raw) -> None:
    ax = figures.reproducibility_figure(runs, "table2").axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    kd = plain(raw, method="kd", teacher="resnet26", epochs=200, teacher_checkpoint=None)
    ours = kd["teacher_test_acc"].mean()
    assert f"ResNet26\nours {ours:.2f}\npaper 93.41\nn=2" in labels
    assert labels[-1].startswith("WRN16-4\n")
    assert "teacher, and its test accuracy" in ax.get_xlabel()


def test_table4_and_leaving_out_what_the_paper_lacks(runs) -> None:
    every = figures.reproducibility_figures(runs)
    assert set(every) == {f"reproducibility_table{i}" for i in (2, 3, 4)}
    assert "UDA-NOKD\nn=2" in texts(every["reproducibility_table4"])
    fig = figures.reproducibility_figure(runs, "table3", include_unreported=False)
    assert "PKD" not in texts(fig) and "TAKD" in texts(fig)
    with pytest.raises(ValueError, match="unknown table"):
        figures.reproducibility_figure(runs, "table9")


@pytest.mark.parametrize("kind", ["empty", "unfinished"])
def test_no_completed_runs_say_so_beside_the_papers_numbers(runs, empty, kind: str) -> None:
    df = empty if kind == "empty" else runs[runs["status"] != "completed"]
    for name, fig in figures.reproducibility_figures(df).items():
        table = name.removeprefix("reproducibility_")
        assert f"no completed runs for Table {table[-1]} yet" in texts(fig)
        assert "n=0" in texts(fig)
        (bars,) = fig.axes[0].collections  # the paper's numbers are still there
        assert len(bars.get_segments()) == len(paper_results(table))
