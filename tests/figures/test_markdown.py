"""The paper's tables beside ours as Markdown (kdlib.figures.markdown)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kdlib import figures
from kdlib.paper import TABLES
from tests.figures.helpers import KD_T3_BEST


def test_format_summary_tells_settings_apart(runs) -> None:
    s = figures.summary_table(runs, table="table3")
    md = figures.format_summary(s)
    assert "| TAKD | ResNet26 → ResNet8 | 200 | – | 2 |" in md and md.count("\n") == len(s) + 2
    assert "| KD | ResNet26 → ResNet8 | 200 | – | 2 | 90.47 ± 0.11 | " in md
    kd = next(line for line in md.splitlines() if line.startswith("| KD |"))
    assert kd.endswith(f"| 90.67 ± 0.09 | 90.33 | {KD_T3_BEST - 90.33:+.2f} |")  # best − paper
    md = figures.format_summary(figures.summary_table(runs))
    assert "| KD (teacher checkpoint) | ResNet26 → ResNet8 | 200 | – | 2 |" in md
    assert "| KD (teacher trained) | ResNet26 → ResNet8 | 200 | – | 2 |" in md


def test_summary_markdown_has_every_table_and_flags_synthetic_runs(runs, empty) -> None:
    md = figures.summary_markdown(runs)
    for heading in TABLES.values():
        assert f"### {heading} [SYNTHETIC FIXTURE DATA]" in md
    assert "trained first here" in md and "loaded from its checkpoint" in md
    blank = figures.summary_markdown(empty, tables=["table4"])
    assert "SYNTHETIC" not in blank and "Table 2" not in blank
    assert blank.count("| – |") >= 5  # the paper's rows, no runs yet


def test_every_setting_and_the_gains_as_markdown(runs, raw) -> None:
    import scipy.stats

    from tests.figures.helpers import KD_T3_SEEDS

    md = figures.summary_markdown(runs, tables=["table3"], every_setting=True)
    assert "### Every setting we ran, at every budget [SYNTHETIC FIXTURE DATA]" in md
    assert "### Gain over nokd [SYNTHETIC FIXTURE DATA]" in md
    # KD from the released checkpoint at 200 epochs against nokd, from the JSON files
    plain = (raw["student"] == "resnet8") & (raw["lr"] == 0.1) & (raw["epochs"] == 200)
    nokd = raw[(raw["method"] == "nokd") & plain]["final_test_acc"]
    assert len(nokd) == 2
    ci = scipy.stats.ttest_ind(list(KD_T3_SEEDS), list(nokd), equal_var=False)
    low, high = ci.confidence_interval(0.95)
    gain = sum(KD_T3_SEEDS) / 2 - nokd.mean()
    row = f"| KD | ResNet26 → ResNet8 | checkpoint | 200 | – | 2/{len(nokd)} | {gain:+.2f} "
    line = next(x for x in md.splitlines() if x.startswith(row))
    assert f"[{low:+.2f}, {high:+.2f}] | {ci.pvalue:.2f} | +0.91 |" in line


def test_settings_that_differ_in_precision_say_so(runs) -> None:
    s = figures.summary_table(runs, table="table4")
    nokd = s[s["method"] == "nokd"].iloc[[0, 0]].reset_index(drop=True)
    nokd["setting"], nokd["precision"] = ["aaa", "bbb"], ["fp32", "bf16"]
    md = figures.format_summary(nokd)
    assert "| NOKD | none → ResNet8 | 350 | fp32 | 2 |" in md
    assert "| NOKD | none → ResNet8 | 350 | bf16 | 2 |" in md


def test_a_paper_rows_precision_is_named_even_where_it_is_the_only_setting(runs) -> None:
    # A paper table shows one setting per row, of either precision: without a second
    # setting in the same row to tell apart, the table must still say which pool it is.
    df = runs.copy()
    df["speed.precision"] = ["fp32" if m == "nokd" else "bf16" for m in df["method"]]
    md = figures.format_summary(figures.summary_table(df, table="table3"))
    assert "| KD | ResNet26 → ResNet8 | 200 | bf16 | 2 |" in md
    assert "| NOKD | none → ResNet8 | 200 | fp32 | 2 |" in md
    ax = figures.reproducibility_figure(df, "table3").axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "KD\nbf16, n=2" in labels and "NOKD\nfp32, n=2" in labels


def test_compute_sums_each_machine_kind_precision_and_budget(runs, raw) -> None:
    md = figures.summary_markdown(runs, tables=["table3"], every_setting=True)
    assert "### Compute [SYNTHETIC FIXTURE DATA]" in md
    # the fixture's completed runs, summed per budget from their metrics.json
    for epochs in (200, 350):
        sel = raw[raw["epochs"] == epochs]
        hours = sel["wall_seconds"].sum() / 3600
        row = f"| synthetic | – | {epochs} | {len(sel)} | {hours:.2f} | – |"
        assert row in md, row
    # CPU runs: CPU-hours are wall time x threads; the two kinds of CPU are kept apart
    cpu = pd.DataFrame(
        {
            "status": ["completed", "completed", "completed", "running"],
            "wall_seconds": [3600.0, 1800.0, 7200.0, 99999.0],
            "epochs": [15, 15, 15, 15],
            "env.device": ["cpu"] * 4,
            "env.torch_threads": [1, 2, 1, 1],
            "env.cpu.cpu_name": ["EPYC"] * 4,
            "env.cpu.native_bf16": [True, True, False, False],
            "speed.precision": ["bf16", "bf16", "fp32", "fp32"],
        }
    )
    table = figures.compute_table(cpu)
    assert table.to_dict("records") == [
        {"device": "CPU (EPYC, native bf16)", "precision": "bf16", "epochs": 15, "runs": 2,
         "wall_hours": 1.5, "cpu_hours": 2.0},
        {"device": "CPU (EPYC, no native bf16)", "precision": "fp32", "epochs": 15, "runs": 1,
         "wall_hours": 2.0, "cpu_hours": 2.0},
    ]  # fmt: skip
    # a run resumed on the other kind of CPU is credited to neither kind alone
    avx2 = {"device": "cpu", "cpu_name": "EPYC", "native_bf16": False, "torch_threads": 1}
    same = {**avx2, "native_bf16": True}
    cpu["resumed_on"] = [json.dumps([avx2]), json.dumps([same]), None, None]
    devices = figures.compute_table(cpu)["device"].tolist()
    mixed = "mixed: CPU (EPYC, native bf16) + CPU (EPYC, no native bf16)"
    kinds = [mixed, "CPU (EPYC, native bf16)", "CPU (EPYC, no native bf16)"]
    assert sorted(devices) == sorted(kinds)
    # resumed with other threads: each segment's time x its own threads (the bf16 run of
    # 3600 s, 1 thread, continued from 900 s on with 2: 0.25 + 1.5 CPU-hours)
    two = {**same, "torch_threads": 2, "from_wall_seconds": 900.0}
    cpu["resumed_on"] = [json.dumps([two]), None, None, None]
    table = figures.compute_table(cpu).set_index("device")
    assert table.loc["CPU (EPYC, native bf16)", "cpu_hours"] == pytest.approx(1.75 + 1.0)
    # a split that was not recorded (an older record) is unknown, not a guess
    cpu["resumed_on"] = [json.dumps([{**two, "from_wall_seconds": None}]), None, None, None]
    table = figures.compute_table(cpu).set_index("device")
    assert pd.isna(table.loc["CPU (EPYC, native bf16)", "cpu_hours"])
    assert table.loc["CPU (EPYC, no native bf16)", "cpu_hours"] == 2.0


def test_every_setting_names_the_diverged_runs_its_means_leave_out(runs) -> None:
    md = figures.summary_markdown(runs, tables=[], every_setting=True)
    assert "Only completed runs count; no run diverged." in md
    df = runs.copy()
    sfd = df.index[(df["method"] == "sfd") & (df["status"] == "completed")][:1]
    df.loc[sfd, "status"] = "diverged"
    md = figures.summary_markdown(df, tables=[], every_setting=True)
    r = df.loc[sfd[0]]
    assert (
        f"1 diverged run is left out of the means: SFD (seed code) seed {r['seed']} "
        f"({r['epochs']} epochs; `{r['run_id']}`)." in md
    )
    # and the row of its setting has one seed fewer
    left = figures.summary_table(df)
    full = figures.summary_table(runs)
    by = left.set_index("setting")["n_seeds"], full.set_index("setting")["n_seeds"]
    setting = figures.settings(df.loc[sfd]).iloc[0]
    assert by[0][setting] == by[1][setting] - 1
