"""Figures, summaries, the paper's numbers and the t-test, on the synthetic fixture runs."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kdlib import figures
from kdlib.io import read_json
from kdlib.paper import method_label, model_label, paper_results
from kdlib.runs import load_runs
from kdlib.stats import betainc, mean_std, student_t_cdf, student_t_sf2, welch_ttest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "runs"


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return load_runs(FIXTURE)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return load_runs(tmp_path_factory.mktemp("no-runs"))


def _texts(fig: Figure) -> str:
    """All text drawn on a figure (titles, annotations, tick labels), to assert on."""
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.texts]
        parts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the paper


def test_paper_tables_hold_the_reported_numbers() -> None:
    p = paper_results()
    assert list(p.columns[:8]) == [
        "table",
        "method",
        "teacher",
        "student",
        "epochs",
        "dataset",
        "accuracy",
        "source",
    ]
    t3 = paper_results("table3")
    assert dict(zip(t3["method"], t3["accuracy"], strict=True)) == {
        "takd": 90.57,
        "uda": 90.52,
        "mkd": 90.34,
        "kd": 90.33,
        "rkd": 90.22,
        "nokd": 89.42,
        "sfd": 87.47,
        "oh": 87.09,
    }
    assert set(t3["epochs"]) == {200} and set(t3["student"]) == {"resnet8"}
    assert set(t3["teacher"].dropna()) == {"resnet26"}
    assert t3.loc[t3["method"] == "nokd", "teacher"].isna().all()
    t4 = paper_results("table4")
    assert dict(zip(t4["method"], t4["accuracy"], strict=True)) == {
        "uda": 91.22,
        "takd": 90.97,
        "kd": 90.77,
        "uda_nokd": 90.34,
        "nokd": 89.34,
    }
    assert set(t4["epochs"]) == {350}
    t2 = paper_results("table2")
    got = {r.teacher: (r.teacher_accuracy, r.accuracy) for r in t2.itertuples()}
    assert got == {
        "resnet8": (89.59, 89.48),
        "resnet20": (93.02, 90.16),
        "resnet26": (93.41, 90.40),
        "resnet18": (95.26, 89.50),
        "wrn10_1": (88.06, 88.48),
        "wrn16_4": (95.42, 89.58),
    }
    assert set(t2["method"]) == {"kd"}
    assert p["source"].str.contains("1912.10850").all()
    for table, source in zip(p["table"], p["source"], strict=True):
        assert source.endswith(f"Table {table[-1]}")
    assert not p.duplicated(["table", "method", "teacher"]).any()
    with pytest.raises(ValueError, match="unknown table"):
        paper_results("table9")


def test_paper_labels() -> None:
    assert model_label("wrn16_4") == "WRN16-4"
    assert model_label("resnet26") == "ResNet26"
    assert model_label("resnet26,wrn16_1") == "ResNet26+WRN16-1"
    assert model_label(None) == model_label(float("nan")) == "none"
    assert method_label("uda_nokd") == "UDA-NOKD"
    assert method_label("newmethod") == "NEWMETHOD"


# ----------------------------------------------------------------------------- statistics


def test_student_t_cdf_matches_closed_forms_and_critical_values() -> None:
    for t in (-3.0, -0.4, 0.0, 0.7, 12.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    # two-sided 5% critical values of Student's t
    assert student_t_sf2(2.228138852, 10) == pytest.approx(0.05, abs=1e-8)
    assert student_t_sf2(2.776445105, 4) == pytest.approx(0.05, abs=1e-8)
    assert student_t_sf2(1.959963985, 1e8) == pytest.approx(0.05, abs=1e-6)  # -> normal
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # polynomial closed form


def test_student_t_cdf_matches_numerical_integration() -> None:
    df, t = 5.5, 1.7
    x = np.linspace(-400.0, t, 2_000_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    tail = 0.5 * student_t_sf2(400.0, df)  # the integral's missing left tail
    integral = float(np.sum((pdf[1:] + pdf[:-1]) * np.diff(x)) / 2)  # trapezoid rule
    assert student_t_cdf(t, df) == pytest.approx(integral + tail, abs=1e-7)


def test_welch_ttest_known_value() -> None:
    # Welch's test on two samples of 15 with unequal variances (the worked example of
    # the Wikipedia article on Welch's t-test): t = -2.46, df = 25.0, p = 0.021.
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    r = welch_ttest(a, b)
    assert r.t == pytest.approx(-2.4553564, abs=1e-6)
    assert r.df == pytest.approx(24.98853, abs=1e-4)
    assert r.p == pytest.approx(0.021378, abs=1e-5)
    assert welch_ttest(b, a).p == pytest.approx(r.p)
    # hand-checked: t = -3/sqrt(2.5), df = 6.25/1.0625
    r = welch_ttest([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert r.t == pytest.approx(-3 / math.sqrt(2.5)) and r.df == pytest.approx(6.25 / 1.0625)


def test_welch_ttest_degenerate_samples_are_nan() -> None:
    assert math.isnan(welch_ttest([90.0], [89.0, 89.5]).p)  # one seed: no spread to judge
    assert math.isnan(welch_ttest([90.0, 90.0], [89.0, 89.0]).p)  # zero variance
    assert math.isnan(welch_ttest([90.0, None, float("nan")], [89.0, 89.5]).p)
    assert mean_std([1.0, None, float("nan"), 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert math.isnan(mean_std([]).__getitem__(0))


# ----------------------------------------------------------------------------- fixture


def test_fixture_is_synthetic_and_up_to_date(tmp_path: Path) -> None:
    from tests.make_fixture_runs import make_fixture_runs

    df = load_runs(FIXTURE)
    assert df["synthetic_fixture"].eq(True).all()
    fresh = make_fixture_runs(tmp_path / "runs")
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in FIXTURE.iterdir())
    hint = "the fixture is stale: rerun python -m tests.make_fixture_runs"
    for run in FIXTURE.iterdir():
        a, b = run / "history.csv", fresh / run.name / "history.csv"
        assert a.exists() == b.exists() and (not a.exists() or filecmp.cmp(a, b, False)), hint
        for name in ("config.json", "env.json", "metrics.json"):
            old, new = read_json(run / name), read_json(fresh / run.name / name)
            old.pop("config_hash", None), new.pop("config_hash", None)  # follows kdlib.runs
            assert old == new, f"{run.name}/{name}: {hint}"


# ----------------------------------------------------------------------------- summaries


def test_summary_table_follows_the_paper_and_counts_completed_runs_only(runs) -> None:
    s = figures.summary_table(runs, table="table3")
    methods = list(s["method"])
    assert methods[:8] == list(paper_results("table3")["method"])
    assert methods[8:] == ["pkd"]  # ran in the setting, no paper number
    assert (s["n_seeds"] == 2).all()
    assert all(seeds == [0, 1] for seeds in s["seeds"])  # the running/failed seed 9 never counts
    kd = s[s["method"] == "kd"].iloc[0]
    sel = figures.select_runs(runs, method="kd", teacher="resnet26", epochs=200)
    assert kd["final_mean"] == pytest.approx(sel["final_test_acc"].mean())
    assert kd["best_mean"] == pytest.approx(sel["best_test_acc"].mean())
    assert kd["final_std"] == pytest.approx(sel["final_test_acc"].std())
    assert kd["paper"] == 90.33
    assert kd["delta"] == pytest.approx(kd["best_mean"] - 90.33)
    assert math.isnan(s[s["method"] == "pkd"].iloc[0]["paper"])
    md = figures.format_summary(s)
    assert "| TAKD | ResNet26 → ResNet8 | 200 | 2 |" in md and md.count("\n") == len(s) + 2

    every = figures.summary_table(runs)
    assert len(every) == 19  # 9 + 5 + 5 settings (Table 2's ResNet26 is Table 3's KD)
    uda_nokd = every[every["method"] == "uda_nokd"].iloc[0]
    assert uda_nokd["table"] == "table4" and uda_nokd["paper"] == 90.34
    wrn = every[every["teacher"] == "wrn16_4"].iloc[0]
    assert wrn["table"] == "table2" and wrn["paper"] == 89.58


def test_summary_of_a_table_without_runs_lists_the_paper(empty) -> None:
    s = figures.summary_table(empty, table="table4")
    assert list(s["method"]) == list(paper_results("table4")["method"])
    assert (s["n_seeds"] == 0).all() and s["final_mean"].isna().all()
    assert "–" in figures.format_summary(s)
    assert "Table 2" in figures.summary_markdown(empty)


def test_gain_table_against_a_direct_computation(runs) -> None:
    g = figures.gain_table(runs)
    row = g[(g["method"] == "kd") & (g["teacher"] == "resnet26") & (g["epochs"] == 200)].iloc[0]
    kd = figures.select_runs(runs, method="kd", teacher="resnet26", epochs=200)
    nokd = figures.select_runs(runs, method="nokd", epochs=200)
    assert row["gain"] == pytest.approx(kd["final_test_acc"].mean() - nokd["final_test_acc"].mean())
    assert row["p"] == pytest.approx(welch_ttest(kd["final_test_acc"], nokd["final_test_acc"]).p)
    assert (row["n"], row["baseline_n"]) == (2, 2)
    assert "nokd" not in set(g["method"])
    assert len(g[g["method"] == "uda_nokd"]) == 1  # only at 350 epochs, against that nokd
    assert len(g) == 17


def test_kd_param_table_uses_the_grid_runs(runs) -> None:
    t = figures.kd_param_table(runs)
    assert len(t) == 9 and set(t["T"]) == {1.0, 5.0, 10.0} and set(t["lambda"]) == {0.1, 0.5, 0.9}
    best = t.loc[t["mean"].idxmax()]
    assert (best["T"], best["lambda"]) == (5.0, 0.5)
    # without grid_only, the plain KD runs (T=5, lambda=0.5 by default) join that cell
    wide = figures.kd_param_table(runs, grid_only=False)
    cell = wide[(wide["T"] == 5.0) & (wide["lambda"] == 0.5) & (wide["teacher"] == "resnet26")]
    assert cell["n"].tolist() == [3, 2]  # 200 epochs: 2 plain + 1 grid run; 350: 2 plain


def test_mean_curves_average_over_seeds(runs) -> None:
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    curves = figures.mean_curves(sel)
    assert set(curves["label"]) == {method_label(m) for m in sel["method"]}
    kd = curves[(curves["label"] == "KD") & (curves["column"] == "test_acc")]
    assert list(kd["epoch"]) == list(range(1, 201)) and (kd["n"] == 2).all()
    hist = figures.load_histories(sel[sel["method"] == "kd"])
    direct = np.mean([h["test_acc"].iloc[-1] for h in hist.values()])
    assert kd["mean"].iloc[-1] == pytest.approx(direct)


# ----------------------------------------------------------------------------- figures


def test_every_figure_renders_the_fixture_runs(runs, tmp_path: Path) -> None:
    figs = figures.reproducibility_figures(runs)
    assert set(figs) == {f"reproducibility_table{i}" for i in (2, 3, 4)}
    text = _texts(figs["reproducibility_table3"])
    assert "SYNTHETIC FIXTURE DATA" in text and "TAKD" in text and "PKD" in text
    assert "no completed runs" not in text
    assert "WRN16-4" in _texts(figs["reproducibility_table2"])
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    figs.update(
        generalization=figures.generalization_figure(runs),
        kd_params=figures.kd_params_figure(runs),
        training_curves=figures.training_curves_figure(sel),
        run_curves=figures.run_curves_figure(sel["path"].iloc[:2]),
    )
    assert "+1.39" in _texts(figs["generalization"])  # KD ResNet26 -> ResNet8, 200 epochs
    assert "best T=5, lambda=0.5" in _texts(figs["kd_params"])
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        (path,) = figures.save_figure(fig, tmp_path, name, formats=("png",))  # SVG: below
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["empty", "unfinished"])
def test_figures_of_no_completed_runs_say_so(runs, empty, kind: str) -> None:
    df = empty if kind == "empty" else runs[runs["status"] != "completed"]
    assert len(figures.completed(df)) == 0
    for fig in figures.reproducibility_figures(df).values():
        assert "no completed runs" in _texts(fig)
    assert "no completed runs" in _texts(figures.generalization_figure(df))
    assert "no completed kdparam" in _texts(figures.kd_params_figure(df))
    assert "no completed runs" in _texts(figures.training_curves_figure(df))
    assert figures.gain_table(df).empty and figures.kd_param_table(df).empty
    assert figures.mean_curves(df).empty


def test_runs_table_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    df = figures.runs_table(tmp_path / "not-yet")
    assert df.empty and "status" in df.columns
    assert "no completed runs" in _texts(figures.generalization_figure(df))


def test_save_figure_is_atomic_and_reproducible(runs, tmp_path: Path) -> None:
    fig = figures.kd_params_figure(runs)
    first = figures.save_figure(fig, tmp_path / "a", "kd")
    again = figures.save_figure(fig, tmp_path / "b", "kd")
    fresh = figures.save_figure(figures.kd_params_figure(runs), tmp_path / "c", "kd")
    assert [p.name for p in first] == ["kd.png", "kd.svg"]
    assert not list(tmp_path.rglob("*.tmp"))
    for a, b, c in zip(first, again, fresh, strict=True):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    assert b"<svg" in first[1].read_bytes()[:1000]
    assert fig.get_dpi() == 100  # saving leaves the figure as it was


def test_smoke_runs_on_part_of_the_test_split_never_count() -> None:
    import pandas as pd

    from kdlib.figures import completed

    df = pd.DataFrame(
        {"status": ["completed", "completed", "failed"], "test_limit": [None, 500, None]}
    )
    assert list(completed(df).index) == [0]
