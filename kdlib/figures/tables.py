"""The numbers behind the figures, one setting per row: the paper's tables beside ours
(:func:`summary_table`), each method's gain over nokd (:func:`gain_table`) and KD's
T x lambda grid (:func:`kd_param_table`). Accuracies are test accuracies in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from kdlib.figures.selection import (
    TABLE_TEACHER_FROM,
    col,
    missing,
    numeric,
    one_setting,
    paper_row_runs,
    params_of,
    protocol_columns,
    select_runs,
    settings,
    teacher_from,
    teachers_of,
)
from kdlib.figures.style import method_sort_key
from kdlib.paper import model_label, paper_results
from kdlib.stats import difference_interval, mean_std, welch_ttest

SUMMARY_COLUMNS = [
    "table", "method", "teacher", "student", "dataset", "epochs", "setting", "teacher_from",
    "params", "n_seeds", "seeds", "final_mean", "final_std", "best_mean", "best_std",
    "sel_mean", "sel_std", "teacher_acc", "paper", "delta", "delta_final", "precision",
]  # fmt: skip
GAIN_COLUMNS = [
    "method", "teacher", "student", "dataset", "epochs", "setting", "teacher_from", "params",
    "n", "mean", "baseline_setting", "baseline_n", "baseline_mean", "gain", "ci_low",
    "ci_high", "t", "p", "precision", "paper_gain",
]  # fmt: skip
KD_PARAM_COLUMNS = [
    "teacher", "teacher_from", "student", "dataset", "epochs", "T", "lambda", "n", "mean",
    "std", "setting",
]  # fmt: skip
_SETTING = ("teacher", "student", "dataset", "epochs")


def group_stats(runs: pd.DataFrame) -> dict[str, Any]:
    """Seeds and mean +- std of each accuracy over the runs of one setting."""
    found = sorted(set(settings(runs)))
    if len(found) > 1:
        raise ValueError(f"pooling runs of {len(found)} settings ({', '.join(found)})")
    out: dict[str, Any] = {
        "setting": found[0] if found else None,
        "teacher_from": teacher_from(runs).iloc[0] if len(runs) else None,
        "params": params_of(runs),
        "precision": runs["speed.precision"].iloc[0]
        if len(runs) and "speed.precision" in runs.columns
        else None,
    }
    seeds = sorted({int(s) for s in numeric(runs, "seed").dropna()})
    out.update(n_seeds=len(seeds), seeds=seeds)
    for name, column in (("final", "final_test_acc"), ("best", "best_test_acc")):
        out[f"{name}_mean"], out[f"{name}_std"], _ = mean_std(numeric(runs, column))
    out["sel_mean"], out["sel_std"], _ = mean_std(numeric(runs, "test_acc_at_best_val"))
    out["teacher_acc"] = mean_std(numeric(runs, "teacher_test_acc"))[0]
    return out


def summary_table(
    df: pd.DataFrame, table: str | None = None, paper: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per setting: seeds, mean +- std of each accuracy, the paper's number, delta.

    A row pools the runs of one setting only (``setting``, the runs' ``setting_hash``;
    ``n_seeds`` counts distinct seeds); ``teacher_from`` says whether the teacher was
    loaded from a checkpoint or trained here, ``params`` the method parameters given.

    With ``table`` ("table3"...), one row per paper row of that table, in the paper's
    order (``n_seeds`` 0 where we have no run yet), then our other methods of the same
    setting without a paper number. Each row shows one setting, chosen by a fixed rule:
    only runs whose teacher came the way the table's sweep takes it
    (:data:`TABLE_TEACHER_FROM`: the released checkpoint for Tables 3 and 4, a teacher
    trained here for Table 2); of those, plain runs before a grid's, then the most
    seeds, then the smallest setting hash, with a ``SettingsWarning`` when that rule
    had to choose. Without ``table``, one row per setting we ran (nothing left out),
    with the paper number of Table 3 or 4, else Table 2, where one matches the setting
    (its teacher included). ``delta`` is our best-epoch mean minus the paper (like for
    like: the paper reports the best epoch); ``delta_final`` compares our final-epoch
    mean instead.
    """
    paper = paper_results() if paper is None else paper
    if table is not None:
        rows = [{**info, **group_stats(runs)} for info, runs in table_entries(df, table, paper)]
    else:
        rows = _setting_rows(df, paper)
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["paper"] = pd.to_numeric(out["paper"], errors="coerce")
    out["delta"] = out["best_mean"] - out["paper"]
    out["delta_final"] = out["final_mean"] - out["paper"]
    return out


def table_entries(
    df: pd.DataFrame, table: str, paper: pd.DataFrame
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """One paper table's rows (in the paper's order) with our runs of each, then our runs in
    the table's setting that no paper row claims (methods the paper gives no number for).

    Each entry holds the runs of one setting (see :func:`summary_table` for the rule);
    runs of a paper row's other settings are not shown again as unreported entries."""
    prow = paper[paper["table"] == table]
    entries: list[tuple[dict[str, Any], pd.DataFrame]] = []
    claimed: set[Any] = set()
    source = TABLE_TEACHER_FROM.get(table)
    for _, r in prow.iterrows():
        runs = paper_row_runs(df, r)
        claimed.update(runs.index)
        info = {k: r[k] for k in ("method", "teacher", "student", "dataset", "epochs")}
        what = f"{table} {r['method']} {model_label(r['teacher'])} -> {r['student']}"
        runs = one_setting(runs, what, teacher=source)
        info["paper_teacher_acc"] = r.get("teacher_accuracy", math.nan)
        entries.append(({"table": table, **info, "paper": r["accuracy"]}, runs))
    if prow.empty:
        return entries
    r0 = prow.iloc[0]
    for (method, teacher), runs in _unreported_groups(df, prow, r0):
        runs = runs[~runs.index.isin(list(claimed))]
        what = f"{table} {method} {model_label(teacher)} -> {r0['student']}"
        runs = one_setting(runs, what, teacher=source)
        if runs.empty:
            continue
        info = {"method": method, "teacher": teacher, "student": r0["student"]}
        info.update(dataset=r0["dataset"], epochs=int(r0["epochs"]))
        entries.append(({"table": table, **info, "paper": math.nan}, runs))
    return entries


def _setting_rows(df: pd.DataFrame, paper: pd.DataFrame) -> list[dict[str, Any]]:
    """Summary rows of every setting we ran (one per setting hash)."""
    runs = select_runs(df)
    groups: dict[tuple[Any, ...], list[Any]] = {}
    columns = [[None if missing(v) else v for v in col(runs, c)] for c in ("method", *_SETTING)]
    columns.append(list(settings(runs)))
    for idx, key in zip(runs.index, zip(*columns, strict=True), strict=True):
        groups.setdefault(key, []).append(idx)
    order = sorted(
        groups,
        key=lambda k: (str(k[2:5]), method_sort_key(str(k[0])), str(k[1]), -len(groups[k]), k[5]),
    )
    rows = []
    for key in order:
        method, teacher, student, dataset, epochs, _ = key
        source = teacher_from(runs.loc[groups[key]]).iloc[0]
        accuracy, table = _match_paper(paper, method, teacher, student, dataset, epochs, source)
        info = {"table": table, "method": method, "teacher": teacher, "student": student}
        info.update(dataset=dataset, epochs=epochs if missing(epochs) else int(epochs))
        rows.append({**info, **group_stats(runs.loc[groups[key]]), "paper": accuracy})
    return rows


def _match_paper(
    paper: pd.DataFrame,
    method: str,
    teacher: Any,
    student: Any,
    dataset: Any,
    epochs: Any,
    source: str | None = None,
) -> tuple[float, str | None]:
    """The paper number for one of our settings: Tables 3/4 first, then Table 2, each only
    for runs whose teacher came the table's way (``source``, see TABLE_TEACHER_FROM)."""
    for table in ("table3", "table4", "table2"):
        if source is not None and TABLE_TEACHER_FROM[table] != source:
            continue
        for _, r in paper[paper["table"] == table].iterrows():
            if (r["method"], r["student"], r["dataset"]) != (method, student, dataset):
                continue
            if missing(epochs) or int(r["epochs"]) != int(epochs):
                continue
            if missing(r["teacher"]) or r["teacher"] in teachers_of(teacher):
                return float(r["accuracy"]), table
    return math.nan, None


def _unreported_groups(
    df: pd.DataFrame, prow: pd.DataFrame, r0: Mapping[str, Any]
) -> list[tuple[tuple[str, Any], pd.DataFrame]]:
    """Our runs in a table's setting that the paper gives no number for (e.g. PKD, AB)."""
    by_teacher = prow["method"].nunique() == 1  # Table 2: one method, teachers vary
    teachers = [t for t in prow["teacher"] if not missing(t)]
    runs = select_runs(
        df,
        method=prow["method"].iloc[0] if by_teacher else None,
        student=r0["student"],
        dataset=r0["dataset"],
        epochs=int(r0["epochs"]),
        teacher=None if by_teacher or not teachers else teachers[0],
    )
    groups: dict[tuple[str, Any], list] = {}
    for idx, m, t in zip(runs.index, col(runs, "method"), col(runs, "teacher"), strict=True):
        groups.setdefault((m, None if missing(t) else t), []).append(idx)
    keys = sorted(groups, key=lambda k: (method_sort_key(k[0]), str(k[1])))
    return [(k, runs.loc[groups[k]]) for k in keys]


def paper_gain(
    method: str, teacher: Any, student: Any, dataset: Any, source: Any = "checkpoint"
) -> float:
    """The paper's gain of ``method`` over its nokd in Table 3 (its number minus 89.42), for
    a run in Table 3's pair (ResNet26 -> ResNet8, CIFAR-10) at any budget; else NaN.

    ``source`` is where the run's teacher came from: Table 3's gains are the released
    ResNet26's, so a run whose teacher was trained here (``"trained"``) gets NaN."""
    if (student, dataset) != ("resnet8", "cifar10") or "resnet26" not in teachers_of(teacher):
        return math.nan
    if source != "checkpoint":
        return math.nan
    t3 = paper_results("table3")
    acc = dict(zip(t3["method"], t3["accuracy"], strict=True))
    if method not in acc or "nokd" not in acc:
        return math.nan
    return float(acc[method] - acc["nokd"])


def gain_table(
    df: pd.DataFrame, metric: str = "final_test_acc", baseline: str = "nokd"
) -> pd.DataFrame:
    """Each method's mean gain over the baseline (nokd) in the same setting, with Welch's p,
    the 95% Welch interval of the gain (``ci_low``, ``ci_high``: NaN below 2 seeds) and,
    for Table 3's pair, the paper's gain (``paper_gain``, its 200-epoch number).

    One row per setting of a method (``setting``: its runs' ``setting_hash``; ``n`` its
    seeds), so KD from a checkpoint teacher and KD from a teacher trained here are two
    rows (``teacher_from``). The baseline is the baseline method's runs of one setting
    (``baseline_setting``) that trained the same student the same way (every field of
    the training protocol the runs recorded agrees); where several such settings exist,
    the one with the most seeds (then the smallest hash), with a ``SettingsWarning``.
    """
    runs = _with_values(select_runs(df), metric)
    if runs.empty:
        return pd.DataFrame(columns=GAIN_COLUMNS)
    protocol = protocol_columns(runs)
    runs = runs.assign(
        _protocol=[
            tuple(None if missing(v) else str(v) for v in row)
            for row in zip(*(runs[c] for c in protocol), strict=True)
        ],
    )
    base, others = runs[runs["method"] == baseline], runs[runs["method"] != baseline]
    rows = []
    for setting, group in others.groupby(settings(others), sort=True):
        first = group.iloc[0]
        b = base[[key == first["_protocol"] for key in base["_protocol"]]]
        what = f"{baseline} baseline of {first['method']} (setting {setting})"
        b = one_setting(b, what)["_value"] if not b.empty else b["_value"]
        if b.empty:
            continue
        test = welch_ttest(group["_value"], b)
        low, high = difference_interval(group["_value"], b)
        teacher = None if missing(first["teacher"]) else str(first["teacher"])
        rows.append(
            {
                **{k: first[k] for k in ("method", "student", "dataset")},
                "teacher": teacher,
                "epochs": int(first["epochs"]),
                "setting": setting,
                "teacher_from": teacher_from(group).iloc[0],
                "params": params_of(group),
                "n": len(group),
                "mean": group["_value"].mean(),
                "baseline_setting": settings(base.loc[b.index]).iloc[0],
                "baseline_n": len(b),
                "baseline_mean": b.mean(),
                "gain": group["_value"].mean() - b.mean(),
                "ci_low": low,
                "ci_high": high,
                "t": test.t,
                "p": test.p,
                "precision": first.get("speed.precision"),
                "paper_gain": paper_gain(
                    first["method"],
                    teacher,
                    first["student"],
                    first["dataset"],
                    teacher_from(group).iloc[0],
                ),
            }
        )
    out = pd.DataFrame(rows, columns=GAIN_COLUMNS)
    order = sorted(
        out.index,
        key=lambda i: (
            str(out.at[i, "dataset"]),
            out.at[i, "epochs"],
            *(str(out.at[i, c]) for c in ("student", "teacher")),
            method_sort_key(out.at[i, "method"]),
            str(out.at[i, "setting"]),
        ),
    )
    return out.loc[order].reset_index(drop=True)


def _with_values(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """``runs`` that recorded metric ``name`` (as ``_value``), epochs made numeric."""
    runs = runs.assign(_value=numeric(runs, name), epochs=numeric(runs, "epochs"))
    return runs[runs["_value"].notna()]


def _hparam(df: pd.DataFrame, name: str) -> pd.Series:
    """A resolved method hyper-parameter, falling back to the one given on the command line."""
    return numeric(df, f"method_hparams.{name}").fillna(numeric(df, f"method_params.{name}"))


def kd_param_table(
    df: pd.DataFrame, metric: str = "final_test_acc", grid_only: bool = True
) -> pd.DataFrame:
    """Mean and std over seeds of KD's accuracy per (setting, T, lambda).

    ``grid_only`` keeps the runs of the kdparam grid; without it every completed KD run
    with a recorded T and lambda counts, but never pooled with another setting: each
    cell is the runs of one setting (the grid's first, then the most seeds, then the
    smallest hash, with a ``SettingsWarning`` when a cell had several). Panels are split
    by where the teacher came from (``teacher_from``: checkpoint or trained here).
    """
    runs = select_runs(df, method="kd", exclude_grids=())
    if grid_only:
        runs = runs[col(runs, "grid") == "kdparam"]
    runs = runs.assign(
        T=_hparam(runs, "T"),
        lam=_hparam(runs, "lambda"),
        teacher=col(runs, "teacher").fillna("none"),
        teacher_from=teacher_from(runs).fillna("none"),
    )
    runs = _with_values(runs, metric).dropna(subset=["T", "lam"])
    if runs.empty:
        return pd.DataFrame(columns=KD_PARAM_COLUMNS)
    rows = []
    keys = ["teacher", "teacher_from", "student", "dataset", "epochs", "T", "lam"]
    for key, cell in runs.groupby(keys, sort=True):
        teacher, source, student, dataset, epochs, T, lam = key
        what = f"KD {teacher} ({source}) -> {student} e{int(epochs)} T={T:g} lambda={lam:g}"
        cell = one_setting(cell, what, prefer_grid="kdparam")
        mean, std, n = mean_std(cell["_value"])
        info = dict(zip(keys[:4], key[:4], strict=True))
        info.update(epochs=int(epochs), T=T, n=n, mean=mean, std=std)
        rows.append({**info, "lambda": lam, "setting": settings(cell).iloc[0]})
    return pd.DataFrame(rows, columns=KD_PARAM_COLUMNS)
