"""Figures, summaries, the paper's numbers and the t-test, on the synthetic fixture runs."""

from __future__ import annotations

import filecmp
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib.figure import Figure

from kdlib import figures
from kdlib.io import read_json
from kdlib.paper import method_label, model_label, paper_results
from kdlib.runs import load_runs
from kdlib.stats import difference_interval, mean_std, welch_ttest

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
        "uda:seed": 90.52,
        "mkd": 90.34,
        "kd": 90.33,
        "rkd:seed": 90.22,
        "nokd": 89.42,
        "sfd:seed": 87.47,
        "oh:seed": 87.09,
    }
    assert set(t3["epochs"]) == {200} and set(t3["student"]) == {"resnet8"}
    assert set(t3["teacher"].dropna()) == {"resnet26"}
    assert t3.loc[t3["method"] == "nokd", "teacher"].isna().all()
    t4 = paper_results("table4")
    assert dict(zip(t4["method"], t4["accuracy"], strict=True)) == {
        "uda:seed": 91.22,
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
        "resnet18_seed": (95.26, 89.50),
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


def test_welch_ttest_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for na, nb in ((2, 2), (3, 5), (7, 4)):
        a, b = rng.normal(90, 0.3, na), rng.normal(89.5, 0.8, nb)
        r, ref = welch_ttest(a, b), scipy.stats.ttest_ind(a, b, equal_var=False)
        assert (r.t, r.df, r.p) == (ref.statistic, ref.df, ref.pvalue)


def test_difference_interval_is_the_welch_t_interval() -> None:
    # Computed here from its formula, independently of SciPy's interval code.
    a, b = [90.1, 90.5, 89.8], [89.0, 89.9, 89.2, 89.4]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = np.mean(a) - np.mean(b)
    lo, hi = difference_interval(a, b)
    assert lo == pytest.approx(diff - half, abs=1e-12) and hi == pytest.approx(
        diff + half, abs=1e-12
    )
    assert difference_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5)  # no spread at all
    assert all(math.isnan(x) for x in difference_interval([1.0], [0.5, 0.7]))


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


# Literal numbers read off the fixture (tests/make_fixture_runs.py, seeds 0 and 1), so
# the tests do not recompute them with the code under test:
# Table 3 KD, released ResNet26 checkpoint: final_test_acc 90.39, 90.54 (mean 90.465,
# std 0.15/sqrt(2)); best_test_acc 90.61, 90.74 (mean 90.675).
# Table 2 KD, ResNet26 trained first: final_test_acc 90.50, 89.96 (mean 90.23); best
# 90.88, 90.23 (mean 90.555); its teachers scored 93.19 and 93.65 (mean 93.42).
# nokd ResNet8, 200 epochs: final_test_acc 89.29, 88.86 (mean 89.075).
KD_T3_FINAL, KD_T3_BEST, KD_T3_STD = 90.465, 90.675, 0.15 / math.sqrt(2)
KD_T2_FINAL, KD_T2_BEST, KD_T2_TEACHER = 90.23, 90.555, 93.42
NOKD_FINAL = 89.075


def test_summary_table_follows_the_paper_and_counts_completed_runs_only(runs) -> None:
    s = figures.summary_table(runs, table="table3")
    methods = list(s["method"])
    assert methods[:8] == list(paper_results("table3")["method"])
    # ran in the setting, no paper number: the original OH (the paper's is the seed's), PKD
    assert methods[8:] == ["oh", "pkd"]
    assert (s["n_seeds"] == 2).all()
    assert all(seeds == [0, 1] for seeds in s["seeds"])  # the running/failed seed 9 never counts
    assert set(s["teacher_from"].dropna()) == {"checkpoint"}
    kd = s[s["method"] == "kd"].iloc[0]
    assert kd["final_mean"] == pytest.approx(KD_T3_FINAL)
    assert kd["best_mean"] == pytest.approx(KD_T3_BEST)
    assert kd["final_std"] == pytest.approx(KD_T3_STD)
    assert kd["paper"] == 90.33
    assert kd["delta"] == pytest.approx(KD_T3_BEST - 90.33)
    assert math.isnan(s[s["method"] == "pkd"].iloc[0]["paper"])
    md = figures.format_summary(s)
    assert "| TAKD | ResNet26 → ResNet8 | 200 | 2 |" in md and md.count("\n") == len(s) + 2

    every = figures.summary_table(runs)
    # 10 Table 3 (with the original OH) + 5 Table 4 + 6 Table 2 settings + the 5 teachers
    # Table 2 trained first
    # (its ResNet8 teacher is Table 3's nokd run)
    assert len(every) == 26 and not every.duplicated("setting").any()
    uda_nokd = every[every["method"] == "uda_nokd"].iloc[0]
    assert uda_nokd["table"] == "table4" and uda_nokd["paper"] == 90.34
    wrn = every[every["teacher"] == "wrn16_4"].iloc[0]
    assert wrn["table"] == "table2" and wrn["paper"] == 89.58
    kd26 = every[(every["method"] == "kd") & (every["teacher"] == "resnet26")]
    kd26 = kd26[kd26["epochs"] == 200].set_index("teacher_from")
    assert kd26.loc["checkpoint", "table"] == "table3" and kd26.loc["trained", "table"] == "table2"
    md = figures.format_summary(every)
    assert "| KD (teacher checkpoint) | ResNet26 → ResNet8 | 200 | 2 |" in md
    assert "| KD (teacher trained) | ResNet26 → ResNet8 | 200 | 2 |" in md


def test_runs_of_different_settings_are_never_pooled(runs) -> None:
    # KD ResNet26 -> ResNet8, 200 epochs, was run from the released checkpoint (Table 3)
    # and from a ResNet26 trained first (Table 2): pooling by method and models alone
    # would give 4 "seeds" of one number (mean 90.3475).
    sel = figures.select_runs(runs, method="kd", teacher="resnet26", epochs=200)
    assert len(sel) == 4 and figures.settings(sel).nunique() == 2
    t3 = figures.summary_table(runs, table="table3").set_index("method").loc["kd"]
    t2 = figures.summary_table(runs, table="table2").set_index("teacher").loc["resnet26"]
    assert (t3["n_seeds"], t3["teacher_from"]) == (2, "checkpoint")
    assert (t2["n_seeds"], t2["teacher_from"]) == (2, "trained")
    assert t3["setting"] != t2["setting"]
    assert t3["final_mean"] == pytest.approx(KD_T3_FINAL)
    assert t2["final_mean"] == pytest.approx(KD_T2_FINAL)
    assert t2["best_mean"] == pytest.approx(KD_T2_BEST)
    assert t2["teacher_acc"] == pytest.approx(KD_T2_TEACHER)
    with pytest.raises(ValueError, match="pooling runs of 2 settings"):
        figures._group_stats(sel)


def test_fixture_table2_is_recorded_like_the_shipped_sweep(runs) -> None:
    done = figures.completed(runs)
    kd = done[(done["method"] == "kd") & done["grid"].isna()]
    t2 = kd[kd["teacher_checkpoint"].isna()]
    assert sorted(set(t2["teacher"])) == sorted(paper_results("table2")["teacher"])
    assert set(runs["grid"].dropna()) == {"kdparam"}  # paper_table2.yaml is plain kd
    ids = set(runs["run_id"])
    for _, r in t2.iterrows():  # each KD run names its teacher's own nokd run
        teacher_run = runs[runs["run_id"] == Path(r["teacher_run"]).name].iloc[0]
        assert teacher_run["run_id"] in ids and teacher_run["method"] == "nokd"
        assert (teacher_run["student"], teacher_run["seed"]) == (r["teacher"], r["seed"])
        assert r["teacher_test_acc"] == teacher_run["final_test_acc"]
    released = kd[kd["teacher_checkpoint"].notna()]
    assert released["teacher_checkpoint_sha256"].notna().all()


def _copy_run(src: Path, dest: Path, **config: object) -> None:
    shutil.copytree(src, dest)
    path = dest / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def test_a_seed_run_twice_counts_once_and_settings_of_equal_standing_warn(
    runs, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    kd0 = sorted(root.glob("*-kd-resnet8-from-resnet26-cifar10-e200-s0"))[0]
    _copy_run(kd0, root / "zz-copy-of-kd-s0")  # the same setting and seed again
    _copy_run(kd0, root / "zz-kd-lr0.05-s0", lr=0.05)  # released teacher, another lr
    df = load_runs(root)
    with pytest.warns(figures.SettingsWarning, match="repeat a seed"):
        assert len(figures.completed(df)) == len(figures.completed(runs)) + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t3 = figures.summary_table(df, table="table3").set_index("method").loc["kd"]
    assert any("2 different settings match" in str(w.message) for w in caught)
    # the rule: the setting with the most seeds (2) over the one-seed lr=0.05 setting
    assert (t3["n_seeds"], t3["final_mean"]) == (2, pytest.approx(KD_T3_FINAL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = figures.summary_table(df)
    md = figures.format_summary(every)
    assert md.count("| KD (teacher checkpoint) [setting ") == 2
    assert "| KD (teacher trained) | ResNet26 → ResNet8 | 200 | 2 |" in md


def test_summary_of_a_table_without_runs_lists_the_paper(empty) -> None:
    s = figures.summary_table(empty, table="table4")
    assert list(s["method"]) == list(paper_results("table4")["method"])
    assert (s["n_seeds"] == 0).all() and s["final_mean"].isna().all()
    assert "–" in figures.format_summary(s)
    assert "Table 2" in figures.summary_markdown(empty)


def test_gain_table_against_numbers_from_the_fixture(runs) -> None:
    g = figures.gain_table(runs)
    kd = g[(g["method"] == "kd") & (g["teacher"] == "resnet26") & (g["epochs"] == 200)]
    assert sorted(kd["teacher_from"]) == ["checkpoint", "trained"]  # two settings, two rows
    row = kd[kd["teacher_from"] == "checkpoint"].iloc[0]
    assert row["gain"] == pytest.approx(KD_T3_FINAL - NOKD_FINAL)  # 1.39
    # Welch's t on (90.39, 90.54) vs (89.29, 88.86): t = 1.39 / sqrt(0.01125/2 + 0.09245/2)
    assert row["t"] == pytest.approx(6.1044, abs=1e-4)
    assert row["p"] == pytest.approx(0.07107, abs=1e-5)
    trained = kd[kd["teacher_from"] == "trained"].iloc[0]
    assert trained["gain"] == pytest.approx(KD_T2_FINAL - NOKD_FINAL)  # 1.155
    assert (row["n"], row["baseline_n"]) == (2, 2)
    assert row["baseline_setting"] == trained["baseline_setting"]
    assert "nokd" not in set(g["method"])
    assert len(g[g["method"] == "uda_nokd"]) == 1  # only at 350 epochs, against that nokd
    assert len(g) == 19  # 8 Table 3 (+ the original OH) + 4 Table 4 + 6 Table 2 settings
    # the 95% Welch interval of the gain, against SciPy's own Welch test
    from scipy import stats as scipy_stats

    t3 = figures.select_runs(runs, student="resnet8", epochs=200)
    t3 = t3[figures.teacher_from(t3).isin(["checkpoint", None])]
    kd_acc = t3[t3["method"] == "kd"]["final_test_acc"]
    nokd_acc = t3[t3["method"] == "nokd"]["final_test_acc"]
    ref = scipy_stats.ttest_ind(kd_acc, nokd_acc, equal_var=False).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.low, ref.high))
    # the paper's gain in Table 3's pair: its number minus its nokd's 89.42
    assert row["paper_gain"] == pytest.approx(90.33 - 89.42)
    oh = g[(g["method"] == "oh:seed") & (g["epochs"] == 200)].iloc[0]
    assert oh["paper_gain"] == pytest.approx(87.09 - 89.42)
    assert math.isnan(g[(g["method"] == "oh") & (g["epochs"] == 200)].iloc[0]["paper_gain"])


def test_kd_param_table_uses_the_grid_runs(runs) -> None:
    t = figures.kd_param_table(runs)
    assert len(t) == 9 and set(t["T"]) == {1.0, 5.0, 10.0} and set(t["lambda"]) == {0.1, 0.5, 0.9}
    best = t.loc[t["mean"].idxmax()]
    assert (best["T"], best["lambda"]) == (5.0, 0.5)
    # without grid_only, the plain KD runs (T=5, lambda=0.5 by default) are other settings:
    # never pooled with the grid's cell, which keeps the grid's run
    with pytest.warns(figures.SettingsWarning, match="2 different settings"):
        wide = figures.kd_param_table(runs, grid_only=False)
    cell = wide[(wide["T"] == 5.0) & (wide["lambda"] == 0.5) & (wide["teacher"] == "resnet26")]
    assert sorted(zip(cell["teacher_from"], cell["epochs"], cell["n"], strict=True)) == [
        ("checkpoint", 200, 1),
        ("checkpoint", 350, 2),
        ("trained", 200, 2),
    ]


def test_mean_curves_average_over_seeds(runs) -> None:
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    curves = figures.mean_curves(sel)
    with_history = sel[[(Path(p) / "history.csv").exists() for p in sel["path"]]]
    assert set(curves["label"]) == {method_label(m) for m in with_history["method"]}
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
    figs["gains"] = figures.gains_figure(runs)
    text = _texts(figs["gains"])
    assert "OH (seed code)  n=2/2" in text and "OH (original)  n=2/2" in text
    assert "200 epochs" in text and "350 epochs (not the paper's 200)" in text
    text = _texts(figs["generalization"])
    assert "+1.39" in text and "+1.15" in text  # KD ResNet26 -> ResNet8, 200 epochs
    assert "ResNet26 (checkpoint)→ResNet8" in text and "ResNet26 (trained)→ResNet8" in text
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
    assert "no completed runs" in _texts(figures.gains_figure(df))
    assert "no completed kdparam" in _texts(figures.kd_params_figure(df))
    assert "no completed runs" in _texts(figures.training_curves_figure(df))
    assert figures.gain_table(df).empty and figures.kd_param_table(df).empty
    assert figures.mean_curves(df).empty


def test_runs_table_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    df = figures.runs_table(tmp_path / "not-yet")
    assert df.empty and "status" in df.columns
    assert "no completed runs" in _texts(figures.generalization_figure(df))
    assert "no completed runs" in _texts(figures.gains_figure(df))


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
