"""The numbers behind the figures (kdlib.figures.tables), against values computed here from
the fixture's JSON files and SciPy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import scipy.stats

from kdlib import figures
from kdlib.paper import paper_results
from kdlib.runs import load_runs
from tests.figures.helpers import (
    FIXTURE,
    KD_T2_BEST,
    KD_T2_FINAL,
    KD_T2_TEACHER,
    KD_T3_BEST,
    KD_T3_FINAL,
    KD_T3_STD,
    NOKD_FINAL,
    plain,
)


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

    every = figures.summary_table(runs)
    # 10 Table 3 (with the original OH) + 5 Table 4 + 6 Table 2 settings + the 5 teachers
    # Table 2 trained first (its ResNet8 teacher is Table 3's nokd run)
    assert len(every) == 26 and not every.duplicated("setting").any()
    uda_nokd = every[every["method"] == "uda_nokd"].iloc[0]
    assert uda_nokd["table"] == "table4" and uda_nokd["paper"] == 90.34
    wrn = every[every["teacher"] == "wrn16_4"].iloc[0]
    assert wrn["table"] == "table2" and wrn["paper"] == 89.58
    kd26 = every[(every["method"] == "kd") & (every["teacher"] == "resnet26")]
    kd26 = kd26[kd26["epochs"] == 200].set_index("teacher_from")
    assert kd26.loc["checkpoint", "table"] == "table3" and kd26.loc["trained", "table"] == "table2"


def test_summary_of_table2_shows_the_teacher_trained_here(runs, raw) -> None:
    t2 = figures.summary_table(runs, table="table2").set_index("teacher")
    assert list(t2.index) == list(paper_results("table2")["teacher"])
    r26 = t2.loc["resnet26"]
    assert (r26["final_mean"], r26["best_mean"]) == pytest.approx((KD_T2_FINAL, KD_T2_BEST))
    assert r26["teacher_acc"] == pytest.approx(KD_T2_TEACHER)
    for teacher, row in t2.iterrows():  # each against the JSON files
        kd = plain(raw, method="kd", teacher=teacher, teacher_checkpoint=None)
        assert row["final_mean"] == pytest.approx(kd["final_test_acc"].mean()), teacher
        assert row["sel_mean"] == pytest.approx(kd["test_acc_at_best_val"].mean()), teacher
        assert row["teacher_acc"] == pytest.approx(kd["teacher_test_acc"].mean()), teacher


def test_summary_of_a_table_without_runs_lists_the_paper(empty) -> None:
    s = figures.summary_table(empty, table="table4")
    assert list(s["method"]) == list(paper_results("table4")["method"])
    assert (s["n_seeds"] == 0).all() and s["final_mean"].isna().all()


def test_gain_table_against_numbers_from_the_fixture(runs, raw) -> None:
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
    # the 95% Welch interval of the gain, against SciPy's own Welch test on the JSON files
    kd_acc = plain(raw, method="kd", teacher="resnet26", epochs=200).dropna(
        subset=["teacher_checkpoint"]
    )["final_test_acc"]
    nokd_acc = plain(raw, method="nokd", student="resnet8", epochs=200)["final_test_acc"]
    ref = scipy.stats.ttest_ind(kd_acc, nokd_acc, equal_var=False)
    assert row["p"] == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    # the paper's gain in Table 3's pair: its number minus its nokd's 89.42
    assert row["paper_gain"] == pytest.approx(90.33 - 89.42)
    # Table 3's gains are the released ResNet26's: none beside a teacher trained here
    assert math.isnan(trained["paper_gain"])
    oh = g[(g["method"] == "oh:seed") & (g["epochs"] == 200)].iloc[0]
    assert oh["paper_gain"] == pytest.approx(87.09 - 89.42)
    assert math.isnan(g[(g["method"] == "oh") & (g["epochs"] == 200)].iloc[0]["paper_gain"])


def _copy_run(src: Path, dest: Path, **config: object) -> None:
    shutil.copytree(src, dest)
    path = dest / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))


def test_a_baseline_is_trained_the_same_way(tmp_path: Path) -> None:
    # KD runs at lr 0.05 have no nokd run at lr 0.05: no gain row, until there is one
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    for seed in (0, 1):
        kd = sorted(root.glob(f"*-kd-resnet8-from-resnet26-cifar10-e200-s{seed}"))[0]
        _copy_run(kd, root / f"zz-kd-lr-s{seed}", lr=0.05)

    def lr_rows() -> list[tuple[float, bool]]:
        """The gain rows of the lr 0.05 runs, and whether their baseline is at lr 0.05."""
        df = load_runs(root)
        moved = set(df.loc[df["lr"] == 0.05, "setting_hash"])
        rows = figures.gain_table(df).itertuples()
        return [(r.gain, r.baseline_setting in moved) for r in rows if r.setting in moved]

    assert lr_rows() == []
    for seed, shift in ((0, -1.0), (1, -2.0)):
        nokd = sorted(root.glob(f"*-nokd-resnet8-cifar10-e200-s{seed}"))[0]
        _copy_run(nokd, root / f"zz-nokd-lr-s{seed}", lr=0.05)
        metrics = root / f"zz-nokd-lr-s{seed}" / "metrics.json"
        m = json.loads(metrics.read_text())
        metrics.write_text(json.dumps({**m, "final_test_acc": m["final_test_acc"] + shift}))
    ((gain, same_lr),) = lr_rows()
    assert same_lr and gain == pytest.approx(KD_T3_FINAL - (NOKD_FINAL - 1.5))


def test_kd_param_table_uses_the_grid_runs(runs, raw) -> None:
    t = figures.kd_param_table(runs)
    assert len(t) == 9 and set(t["T"]) == {1.0, 5.0, 10.0} and set(t["lambda"]) == {0.1, 0.5, 0.9}
    grid = raw[raw["grid"] == "kdparam"]
    want = grid.groupby(["T", "lambda"])["final_test_acc"].mean()
    got = t.set_index(["T", "lambda"])["mean"]
    assert got.sort_index().to_dict() == pytest.approx(want.sort_index().to_dict())
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


def test_tables_of_no_completed_runs_are_empty(runs, empty) -> None:
    for df in (empty, runs[runs["status"] != "completed"]):
        assert figures.gain_table(df).empty and figures.kd_param_table(df).empty
        assert list(figures.gain_table(df).columns) == list(figures.gain_table(runs).columns)
