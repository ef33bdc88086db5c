"""Which runs are pooled (kdlib.figures.selection): completed runs only, one per seed, one
setting at a time, checked against the fixture's JSON files read directly."""

from __future__ import annotations

import filecmp
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from kdlib import figures
from kdlib.figures.selection import one_setting
from kdlib.figures.tables import group_stats
from kdlib.io import read_json
from kdlib.paper import paper_results
from kdlib.runs import load_runs
from tests.figures.helpers import FIXTURE, KD_T2_FINAL, KD_T3_FINAL, plain


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


def test_completed_is_the_finished_runs_with_variants_as_methods(runs, raw) -> None:
    done = figures.completed(runs)
    assert sorted(done["run_id"]) == sorted(raw["run_id"])  # the running and failed s9 never
    assert len(done) == 61
    expected = {
        r.run_id: f"{r.method}:seed" if r.variant == "seed" else r.method for r in raw.itertuples()
    }
    assert dict(zip(done["run_id"], done["method"], strict=True)) == expected


def test_smoke_runs_on_part_of_the_test_split_never_count() -> None:
    df = pd.DataFrame(
        {"status": ["completed", "completed", "failed"], "test_limit": [None, 500, None]}
    )
    assert list(figures.completed(df).index) == [0]


def test_teacher_from_says_where_each_teacher_came_from(runs, raw) -> None:
    done = figures.completed(runs).set_index("run_id")
    got = figures.teacher_from(done)
    for r in raw.itertuples():
        loaded = isinstance(r.teacher_checkpoint, str)
        want = None if pd.isna(r.teacher) else "checkpoint" if loaded else "trained"
        assert got[r.run_id] == want, r.run_id


def test_select_runs_keeps_the_teacher_free_baselines(runs, raw) -> None:
    sel = figures.select_runs(runs, teacher="resnet20", epochs=200)
    want = raw[(raw["epochs"] == 200) & raw["grid"].isna()]
    want = want[want["teacher"].isna() | (want["teacher"] == "resnet20")]
    assert sorted(sel["run_id"]) == sorted(want["run_id"])
    assert set(sel["method"]) == {"nokd", "kd"}
    # the grid's runs are not KD's default setting; asked for, they are there
    kd = figures.select_runs(runs, method="kd", teacher="resnet26", epochs=200)
    assert kd["grid"].isna().all()
    grid = figures.select_runs(runs, method="kd", exclude_grids=())
    assert (grid["grid"] == "kdparam").sum() == (raw["grid"] == "kdparam").sum() == 9


def test_runs_of_different_settings_are_never_pooled(runs, raw) -> None:
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
    kd = plain(raw, method="kd", teacher="resnet26", epochs=200)
    released = kd[kd["teacher_checkpoint"].notna()]["final_test_acc"].mean()
    trained = kd[kd["teacher_checkpoint"].isna()]["final_test_acc"].mean()
    assert (t3["final_mean"], t2["final_mean"]) == pytest.approx((released, trained))
    assert (released, trained) == pytest.approx((KD_T3_FINAL, KD_T2_FINAL))
    with pytest.raises(ValueError, match="pooling runs of 2 settings"):
        group_stats(sel)


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


def _runs(*rows: tuple[str, int, str | None, str | None]) -> pd.DataFrame:
    """A made-up table of completed runs: (setting hash, seed, grid, teacher checkpoint)."""
    return pd.DataFrame(
        [
            {
                "run_id": f"r{i}",
                "setting_hash": s,
                "seed": seed,
                "grid": grid,
                "teacher": "resnet26",
                "teacher_checkpoint": ckpt,
            }
            for i, (s, seed, grid, ckpt) in enumerate(rows)
        ]
    )


def test_one_setting_follows_its_rule() -> None:
    df = _runs(
        ("b", 0, None, "x.pth"),
        ("b", 1, None, "x.pth"),
        ("a", 0, None, "x.pth"),  # fewer seeds
        ("c", 0, "kdparam", "x.pth"),  # a grid's, with as many seeds as "g"
        ("c", 1, "kdparam", "x.pth"),
        ("c", 2, "kdparam", "x.pth"),
        ("g", 0, None, None),  # teacher trained here
        ("g", 1, None, None),
        ("g", 2, None, None),
    )

    def pick(rows: pd.DataFrame, **kw: object) -> set[str]:
        with pytest.warns(figures.SettingsWarning, match="different settings match"):
            return set(one_setting(rows, "test", **kw)["setting_hash"])

    assert pick(df) == {"g"}  # plain runs first, then the most seeds
    assert pick(df, teacher="checkpoint") == {"b"}  # "c" is a grid's, "a" has one seed
    assert pick(df, prefer_grid="kdparam") == {"c"}
    assert pick(df[df["setting_hash"].isin(["a", "b"])].assign(seed=0)) == {"a"}  # smallest
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one setting: nothing to choose, nothing to say
        assert len(one_setting(df[df["setting_hash"] == "b"], "test")) == 2


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
        done = figures.completed(df)
    assert len(done) == len(figures.completed(runs)) + 1
    assert "zz-copy-of-kd-s0" not in set(done["run_id"])  # the first by run id counts
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
    assert "| KD (teacher trained) | ResNet26 → ResNet8 | 200 | – | 2 |" in md


def test_runs_table_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    df = figures.runs_table(tmp_path / "not-yet")
    assert df.empty and "status" in df.columns
    assert figures.completed(df).empty and figures.select_runs(df, method="kd").empty
