"""The study's figures: pure functions from ``load_runs`` tables (and run histories) to figures.

Every function takes the DataFrame of :func:`kdlib.runs.load_runs` and returns a
``matplotlib.figure.Figure`` built without pyplot (no global state, no backend needed),
so the notebooks stay thin and the same figure can be rebuilt in a test or a script.
Only ``status == "completed"`` runs count. An empty selection gives a figure that says
so, never an exception, so a notebook renders before the runs exist. Figures of runs
marked ``synthetic_fixture`` say so in their title.

Accuracies are test accuracies in percent, in three flavours kept apart on purpose:
``final_test_acc`` (last epoch), ``test_acc_at_best_val`` (epoch chosen on validation,
the honest number) and ``best_test_acc`` (best test epoch, the paper's way of reporting).

Pooling: only runs of one *setting* (equal ``setting_hash`` of :func:`kdlib.runs.load_runs`:
every identity setting but the seed, the teacher checkpoint by its content) are averaged
or tested together, one run per seed (:func:`completed`). Runs that look alike but were
set up differently, e.g. KD from the released ResNet26 checkpoint and KD from a ResNet26
trained here, are never mixed: summaries and curves show them as separate rows or lines,
and a paper table shows one setting per row (see :func:`summary_table`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from kdlib.io import atomic_write
from kdlib.method_catalogue import METHOD_ORDER
from kdlib.paper import TABLES, base_method, method_key, method_label, model_label, paper_results
from kdlib.runs import RunRecord, load_runs
from kdlib.stats import difference_interval, mean_std, welch_ttest

METRICS: dict[str, str] = {
    "final_test_acc": "final epoch",
    "test_acc_at_best_val": "epoch chosen on validation",
    "best_test_acc": "best test epoch (paper's way)",
}

# Runs of a grid study that are not runs of "the" method: KD with swept T and lambda.
EXCLUDED_GRIDS = ("kdparam",)

_SETTING = ("teacher", "student", "dataset", "epochs")
_SYNTHETIC_NOTE = "SYNTHETIC FIXTURE DATA"

# Where each paper table's teacher comes from in the sweep that reproduces it: Tables 3
# and 4 load the released checkpoint (sweeps/paper_table3.yaml, paper_table4.yaml), Table 2
# trains each teacher first (sweeps/paper_table2.yaml). A table shows only runs whose
# teacher came that way (teacher-free runs such as nokd always qualify).
TABLE_TEACHER_FROM = {"table2": "trained", "table3": "checkpoint", "table4": "checkpoint"}

# The student's training protocol, shared by a method's runs and its nokd baseline: a
# baseline must agree on every one of these the runs recorded (and on ``speed.*``).
_PROTOCOL = (
    "student",
    "dataset",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "lr_milestones",
    "lr_gamma",
    "val_size",
    "train_limit",
    "augment",
    "loop",
    "precision",
    "channels_last",
    "compile",
    "deterministic",
    "dataset_fingerprint",
)


class SettingsWarning(UserWarning):
    """Runs of several settings matched one entry of a figure: one setting was shown."""


# ----------------------------------------------------------------------------- selection


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` of ``df``, or all-NaN when no run recorded it (old or partial runs)."""
    if name in df.columns:
        return df[name]
    return pd.Series([np.nan] * len(df), index=df.index, dtype=object)


def _missing(value: Any) -> bool:
    """None, NaN, NA or an empty string: a setting the run did not have."""
    if isinstance(value, str):
        return value == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value
        return False


def _teachers(value: Any) -> list[str]:
    return [] if _missing(value) else [t.strip() for t in str(value).split(",")]


def runs_table(runs_dir: str | Path) -> pd.DataFrame:
    """:func:`kdlib.runs.load_runs`, or an empty table while ``runs_dir`` does not exist yet,
    so that every figure notebook renders (saying "no completed runs") before any run."""
    if not Path(runs_dir).exists():
        return pd.DataFrame(columns=["run_id", "path", "status"])
    return load_runs(runs_dir)


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """Only the runs that finished on the whole test split, one per seed of each setting.

    A running, failed or diverged run, or a smoke run evaluated on part of the test split
    (``test_limit``), never counts. Two completed runs of the same setting and seed (one
    configuration run twice, e.g. in two runs folders merged later) would count one seed
    twice: the first by run id (its UTC start time) is kept and a ``SettingsWarning``
    says how many were left out.
    """
    partial = _col(df, "test_limit").notna() if "test_limit" in df.columns else False
    out = _one_per_seed(df[(_col(df, "status") == "completed") & ~partial].copy())
    # a method run as the seed code ran it is another row than the original method
    variants = _col(out, "method_hparams.variant")
    out["method"] = [method_key(m, v) for m, v in zip(_col(out, "method"), variants, strict=True)]
    return out


def settings(df: pd.DataFrame) -> pd.Series:
    """Each run's setting (``setting_hash``); runs of equal settings are seeds of one
    experiment. A run without one (a table not made by ``load_runs``) is a setting of
    its own: nothing is pooled with it."""
    ids = _col(df, "run_id")
    values = [
        f"run:{r}" if _missing(s) else str(s)
        for s, r in zip(_col(df, "setting_hash"), ids, strict=True)
    ]
    return pd.Series(values, index=df.index, dtype=object)


def teacher_from(df: pd.DataFrame) -> pd.Series:
    """Where each run's teacher came from: ``checkpoint`` (loaded from a file, e.g. the
    released one), ``trained`` (trained first by the same loop) or None (no teacher)."""
    out = []
    columns = (_col(df, c) for c in ("teacher", "teacher_checkpoint", "teacher_checkpoint_sha256"))
    for teacher, ckpt, sha in zip(*columns, strict=True):
        loaded = not (_missing(ckpt) and _missing(sha))
        out.append(None if _missing(teacher) else "checkpoint" if loaded else "trained")
    return pd.Series(out, index=df.index, dtype=object)


def _params(runs: pd.DataFrame) -> str:
    """The method parameters given to a setting's runs (``T=4, lambda=0.7``), or ""."""
    if runs.empty:
        return ""
    first = runs.iloc[0]
    # the variant is in the method's label (see kdlib.paper.method_label), not repeated here
    cols = sorted(
        c for c in runs.columns if c.startswith("method_params.") and c != "method_params.variant"
    )
    return ", ".join(
        f"{c[len('method_params.') :]}={first[c]}" for c in cols if not _missing(first[c])
    )


def _n_seeds(runs: pd.DataFrame) -> int:
    return int(pd.to_numeric(_col(runs, "seed"), errors="coerce").dropna().nunique())


def _one_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one run per (setting, seed): the first by run id (see :func:`completed`)."""
    if df.empty:
        return df
    key = pd.DataFrame(
        {
            "setting": settings(df),
            "seed": _col(df, "seed").astype(str),
            "run_id": _col(df, "run_id").astype(str),
        },
        index=df.index,
    ).sort_values(["setting", "seed", "run_id"], kind="stable")
    drop = key.index[key.duplicated(["setting", "seed"]).to_numpy()]
    if len(drop):
        warnings.warn(
            f"{len(drop)} completed run(s) repeat a seed of their setting and were left out "
            f"(the first run of each seed counts): {', '.join(map(str, df.loc[drop, 'run_id']))}",
            SettingsWarning,
            stacklevel=3,
        )
    return df.drop(index=drop)


def _one_setting(
    runs: pd.DataFrame, what: str, teacher: str | None = None, prefer_grid: str | None = None
) -> pd.DataFrame:
    """The runs of one setting among ``runs``, chosen by a fixed rule.

    With ``teacher`` ("checkpoint" or "trained"), runs whose teacher came another way
    are left out first (teacher-free runs stay). Of the settings left, runs of the grid
    ``prefer_grid`` (None: plain runs, not of any grid) come first, then the setting with
    the most seeds, then the smallest setting hash. When more than one setting was left,
    a ``SettingsWarning`` names what was left out (all of them are in
    ``summary_table(df)``, one row each).
    """
    if runs.empty:
        return runs
    if teacher is not None:
        runs = runs[[t is None or t == teacher for t in teacher_from(runs)]]
    keys = settings(runs)
    groups = {s: runs[keys == s] for s in sorted(set(keys))}
    if len(groups) <= 1:
        return runs

    def rank(item: tuple[str, pd.DataFrame]) -> tuple[bool, int, str]:
        s, g = item
        grid = _col(g, "grid").iloc[0]
        off_grid = (not _missing(grid)) if prefer_grid is None else grid != prefer_grid
        return (bool(off_grid), -_n_seeds(g), s)

    ranked = sorted(groups.items(), key=rank)
    (best, runs), rest = ranked[0], ranked[1:]
    warnings.warn(
        f"{what}: runs of {len(ranked)} different settings match; showing setting {best} "
        f"({_n_seeds(runs)} seeds), leaving out "
        + ", ".join(f"{s} ({_n_seeds(g)} seeds)" for s, g in rest),
        SettingsWarning,
        stacklevel=3,
    )
    return runs


def _tell_apart(
    labels: Sequence[str],
    setting: Sequence[str],
    sources: Sequence[Any],
    params: Sequence[str],
) -> list[str]:
    """``labels`` made distinct per setting: where one label covers several settings,
    each says what tells it apart (where its teacher came from, its method parameters,
    else its setting hash)."""
    n = len(labels)

    def clashes(keys: Sequence[Any]) -> set[Any]:
        seen: dict[Any, set[str]] = {}
        for k, s in zip(keys, setting, strict=True):
            seen.setdefault(k, set()).add(s)
        return {k for k, ss in seen.items() if len(ss) > 1}

    out = list(labels)
    clash = clashes(out)
    if not clash:
        return out
    for label in clash:
        idx = [i for i in range(n) if out[i] == label]
        vary_source = len({sources[i] for i in idx}) > 1
        vary_params = len({params[i] for i in idx}) > 1
        for i in idx:
            parts = []
            if vary_source and sources[i]:
                parts.append(f"teacher {sources[i]}")
            if vary_params and params[i]:
                parts.append(params[i])
            if parts:
                out[i] = f"{labels[i]} ({'; '.join(parts)})"
    for label in clashes(out):
        for i in range(n):
            if out[i] == label:
                out[i] = f"{out[i]} [setting {setting[i]}]"
    return out


def _metric(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(df, name), errors="coerce")


def select_runs(
    df: pd.DataFrame,
    *,
    method: str | Sequence[str] | None = None,
    teacher: str | None = None,
    student: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    exclude_grids: Sequence[str] = EXCLUDED_GRIDS,
) -> pd.DataFrame:
    """Completed runs (one per seed of each setting) that match the given fields.

    ``teacher`` keeps runs taught by that model (alone or among several) and also the
    teacher-free runs (nokd), which are every setting's baseline. Runs of the grids in
    ``exclude_grids`` (the T x lambda sweep) are left out: they are not runs of the
    method's default setting. ``method`` is a method key (``oh:seed`` for ``-p
    variant=seed``, ``oh`` for the original: see :func:`kdlib.paper.method_key`). The
    result can still hold runs of several settings (e.g.
    a teacher from a checkpoint and one trained here, or other method parameters): pool
    only runs of one :func:`settings` value, as every summary and figure here does.
    """
    out = completed(df)
    if method is not None:
        methods = [method] if isinstance(method, str) else list(method)
        out = out[_col(out, "method").isin(methods)]
    if student is not None:
        out = out[_col(out, "student") == student]
    if dataset is not None:
        out = out[_col(out, "dataset") == dataset]
    if epochs is not None:
        out = out[pd.to_numeric(_col(out, "epochs"), errors="coerce") == epochs]
    if teacher is not None:
        keep = [not _teachers(t) or teacher in _teachers(t) for t in _col(out, "teacher")]
        out = out[np.asarray(keep, dtype=bool)]
    if exclude_grids:
        out = out[~_col(out, "grid").isin(list(exclude_grids))]
    return out


def _paper_row_runs(df: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    """Our completed runs with one paper row's method, models, data and epochs, of any
    setting (:func:`_table_entries` keeps one)."""
    runs = select_runs(
        df,
        method=row["method"],
        student=row["student"],
        dataset=row["dataset"],
        epochs=int(row["epochs"]),
    )
    if _missing(row["teacher"]):
        return runs
    keep = [row["teacher"] in _teachers(t) for t in _col(runs, "teacher")]
    return runs[np.asarray(keep, dtype=bool)]


def _is_synthetic(df: pd.DataFrame) -> bool:
    flags = _col(df, "synthetic_fixture")
    return bool(flags.fillna(False).astype(bool).any()) if len(flags) else False


def _title(text: str, df: pd.DataFrame) -> str:
    return f"{text}\n[{_SYNTHETIC_NOTE}]" if _is_synthetic(df) else text


def _method_sort_key(method: str) -> tuple[int, str]:
    """The paper's order; a method's seed-code variant right after its original."""
    base = base_method(method)
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def _message_figure(message: str, title: str = "") -> Figure:
    """A figure that says why there is nothing to plot (instead of raising)."""
    fig = Figure(figsize=(6, 2.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- saving


def _settle_layout(fig: Figure, max_draws: int = 5) -> None:
    """Draw until constrained layout stops moving the axes (usually one or two draws; a
    colorbar whose tick labels change width can take a second), so saving is stable."""
    before = None
    for _ in range(max_draws):
        fig.draw_without_rendering()
        now = [tuple(ax.get_position().bounds) for ax in fig.axes]
        if now == before:
            return
        before = now


def save_figure(
    fig: Figure,
    figures_dir: str | Path,
    name: str,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 150,
) -> list[Path]:
    """Write ``fig`` as ``figures_dir/name.png`` and ``.svg``, each atomically.

    A reader (or a crashed notebook) never sees a half-written figure. The layout is
    settled at the output resolution first, and SVG ids and metadata are fixed, so the
    same figure always gives the same bytes (clean git diffs of ``figures/``).
    """
    out = []
    old_dpi = fig.get_dpi()
    rc = {"svg.hashsalt": "kdlib", "svg.fonttype": "none"}
    try:
        with matplotlib.rc_context(rc):
            fig.set_dpi(dpi)
            _settle_layout(fig)
            for fmt in formats:
                path = Path(figures_dir) / f"{name}.{fmt}"
                metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
                with atomic_write(path, "wb") as f:
                    fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
                out.append(path)
    finally:
        fig.set_dpi(old_dpi)
    return out


# ----------------------------------------------------------------------------- summaries


def _group_stats(runs: pd.DataFrame) -> dict[str, Any]:
    """Seeds and mean +- std of each accuracy over the runs of one setting."""
    found = sorted(set(settings(runs)))
    if len(found) > 1:
        raise ValueError(f"pooling runs of {len(found)} settings ({', '.join(found)})")
    final_m, final_s, _ = mean_std(_metric(runs, "final_test_acc"))
    best_m, best_s, _ = mean_std(_metric(runs, "best_test_acc"))
    sel_m, sel_s, _ = mean_std(_metric(runs, "test_acc_at_best_val"))
    teacher_m, _, _ = mean_std(_metric(runs, "teacher_test_acc"))
    seeds = sorted({int(s) for s in pd.to_numeric(_col(runs, "seed"), errors="coerce").dropna()})
    return {
        "setting": found[0] if found else None,
        "teacher_from": teacher_from(runs).iloc[0] if len(runs) else None,
        "params": _params(runs),
        "n_seeds": len(seeds),
        "seeds": seeds,
        "final_mean": final_m,
        "final_std": final_s,
        "best_mean": best_m,
        "best_std": best_s,
        "sel_mean": sel_m,
        "sel_std": sel_s,
        "teacher_acc": teacher_m,
    }


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
    cols = [
        "table",
        "method",
        "teacher",
        "student",
        "dataset",
        "epochs",
        "setting",
        "teacher_from",
        "params",
        "n_seeds",
        "seeds",
        "final_mean",
        "final_std",
        "best_mean",
        "best_std",
        "sel_mean",
        "sel_std",
        "teacher_acc",
        "paper",
        "delta",
        "delta_final",
    ]
    rows = _table_rows(df, table, paper) if table is not None else _setting_rows(df, paper)
    out = pd.DataFrame(rows, columns=cols)
    out["paper"] = pd.to_numeric(out["paper"], errors="coerce")
    out["delta"] = out["best_mean"] - out["paper"]
    out["delta_final"] = out["final_mean"] - out["paper"]
    return out


def _table_entries(
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
        runs = _paper_row_runs(df, r)
        claimed.update(runs.index)
        info = {k: r[k] for k in ("method", "teacher", "student", "dataset", "epochs")}
        what = f"{table} {r['method']} {model_label(r['teacher'])} -> {r['student']}"
        runs = _one_setting(runs, what, teacher=source)
        info["paper_teacher_acc"] = r.get("teacher_accuracy", math.nan)
        entries.append(({"table": table, **info, "paper": r["accuracy"]}, runs))
    if prow.empty:
        return entries
    r0 = prow.iloc[0]
    for (method, teacher), runs in _unreported_groups(df, prow, r0):
        runs = runs[~runs.index.isin(list(claimed))]
        what = f"{table} {method} {model_label(teacher)} -> {r0['student']}"
        runs = _one_setting(runs, what, teacher=source)
        if runs.empty:
            continue
        info = {"method": method, "teacher": teacher, "student": r0["student"]}
        info.update(dataset=r0["dataset"], epochs=int(r0["epochs"]))
        entries.append(({"table": table, **info, "paper": math.nan}, runs))
    return entries


def _table_rows(df: pd.DataFrame, table: str, paper: pd.DataFrame) -> list[dict[str, Any]]:
    """Summary rows of one paper table (see :func:`_table_entries`)."""
    return [{**info, **_group_stats(runs)} for info, runs in _table_entries(df, table, paper)]


def _setting_rows(df: pd.DataFrame, paper: pd.DataFrame) -> list[dict[str, Any]]:
    """Summary rows of every setting we ran (one per setting hash)."""
    runs = select_runs(df)
    groups: dict[tuple[Any, ...], list[Any]] = {}
    columns = [[None if _missing(v) else v for v in _col(runs, c)] for c in ("method", *_SETTING)]
    columns.append(list(settings(runs)))
    for idx, key in zip(runs.index, zip(*columns, strict=True), strict=True):
        groups.setdefault(key, []).append(idx)
    order = sorted(
        groups,
        key=lambda k: (str(k[2:5]), _method_sort_key(str(k[0])), str(k[1]), -len(groups[k]), k[5]),
    )
    rows = []
    for key in order:
        method, teacher, student, dataset, epochs, _ = key
        source = teacher_from(runs.loc[groups[key]]).iloc[0]
        accuracy, table = _match_paper(paper, method, teacher, student, dataset, epochs, source)
        rows.append(
            {
                "table": table,
                "method": method,
                "teacher": teacher,
                "student": student,
                "dataset": dataset,
                "epochs": epochs if _missing(epochs) else int(epochs),
                **_group_stats(runs.loc[groups[key]]),
                "paper": accuracy,
            }
        )
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
            if _missing(epochs) or int(r["epochs"]) != int(epochs):
                continue
            if _missing(r["teacher"]) or r["teacher"] in _teachers(teacher):
                return float(r["accuracy"]), table
    return math.nan, None


def _unreported_groups(
    df: pd.DataFrame, prow: pd.DataFrame, r0: Mapping[str, Any]
) -> list[tuple[tuple[str, Any], pd.DataFrame]]:
    """Our runs in a table's setting that the paper gives no number for (e.g. PKD, AB)."""
    by_teacher = prow["method"].nunique() == 1  # Table 2: one method, teachers vary
    runs = select_runs(
        df,
        method=prow["method"].iloc[0] if by_teacher else None,
        student=r0["student"],
        dataset=r0["dataset"],
        epochs=int(r0["epochs"]),
        teacher=None if by_teacher else _table_teacher(prow),
    )
    groups: dict[tuple[str, Any], list] = {}
    for idx, m, t in zip(runs.index, _col(runs, "method"), _col(runs, "teacher"), strict=True):
        t = None if _missing(t) else t
        groups.setdefault((m, t), []).append(idx)
    keys = sorted(groups, key=lambda k: (_method_sort_key(k[0]), str(k[1])))
    return [(k, runs.loc[groups[k]]) for k in keys]


def _table_teacher(prow: pd.DataFrame) -> str | None:
    teachers = [t for t in prow["teacher"] if not _missing(t)]
    return teachers[0] if teachers else None


def format_summary(summary: pd.DataFrame, digits: int = 2) -> str:
    """A Markdown table of :func:`summary_table` for the README (mean +- std over seeds).

    Rows that would read the same but are different settings say what tells them apart
    (``KD (teacher trained)``, their method parameters, else their setting hash).
    """

    def pm(m: float, s: float) -> str:
        if _missing(m):
            return "–"
        return f"{m:.{digits}f}" + ("" if _missing(s) else f" ± {s:.{digits}f}")

    def num(v: float, sign: bool = False) -> str:
        if _missing(v):
            return "–"
        return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"

    head = (
        "| method | teacher → student | epochs | seeds | final epoch | validation-chosen "
        "| best epoch | paper | Δ (best − paper) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    same = [
        f"{method_label(r['method'])}|{r['teacher']}|{r['student']}|{r['dataset']}|{r['epochs']}"
        for _, r in summary.iterrows()
    ]
    names = _tell_apart(
        same,
        [str(v) for v in _col(summary, "setting")],
        [None if _missing(v) else v for v in _col(summary, "teacher_from")],
        ["" if _missing(v) else str(v) for v in _col(summary, "params")],
    )
    for key, name, (_, r) in zip(same, names, summary.iterrows(), strict=True):
        method = method_label(r["method"]) + name[len(key) :]  # what _tell_apart added
        lines.append(
            f"| {method} | {model_label(r['teacher'])} → "
            f"{model_label(r['student'])} | {r['epochs']} | {r['n_seeds']} "
            f"| {pm(r['final_mean'], r['final_std'])} | {pm(r['sel_mean'], r['sel_std'])} "
            f"| {pm(r['best_mean'], r['best_std'])} | {num(r['paper'])} "
            f"| {num(r['delta'], sign=True)} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(df: pd.DataFrame, tables: Iterable[str] = tuple(TABLES)) -> str:
    """Markdown summary of each paper table (heading + :func:`format_summary`), for README."""
    parts = []
    for table in tables:
        heading = TABLES[table]
        if _is_synthetic(df):
            heading += f" [{_SYNTHETIC_NOTE}]"
        how = {"checkpoint": "loaded from its checkpoint", "trained": "trained first here"}
        note = (
            f"Runs whose teacher was {how[TABLE_TEACHER_FROM[table]]}, one setting per row "
            "(`figures.summary_table(runs)` lists every setting).\n\n"
            if table in TABLE_TEACHER_FROM
            else ""
        )
        summary = format_summary(summary_table(df, table=table))
        parts.append(f"### {heading}\n\n{note}{summary}")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- reproducibility

# How each accuracy is drawn next to the paper's number: offset in x, marker.
_FLAVOURS = (
    ("final_test_acc", -0.22, "o", "C0"),
    ("test_acc_at_best_val", 0.0, "s", "C2"),
    ("best_test_acc", 0.22, "^", "C1"),
)


def reproducibility_figure(
    df: pd.DataFrame,
    table: str = "table3",
    paper: pd.DataFrame | None = None,
    include_unreported: bool = True,
) -> Figure:
    """Our accuracy per method (or per teacher, Table 2) next to the paper's number.

    For each entry: every seed as a small dot and mean +- std as a marker with error bar,
    for the final epoch, the validation-chosen epoch and the best test epoch side by side,
    and the paper's number as a red bar. ``include_unreported`` adds the methods we ran
    in the table's setting that the paper gives no number for.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    paper = paper_results() if paper is None else paper
    by_teacher = paper[paper["table"] == table]["method"].nunique() == 1  # Table 2
    entries: list[tuple[str, pd.DataFrame, float]] = []
    for info, runs in _table_entries(df, table, paper):
        if not include_unreported and _missing(info["paper"]):
            continue
        if by_teacher:
            ours = mean_std(_metric(runs, "teacher_test_acc"))[0]
            theirs = info.get("paper_teacher_acc", math.nan)
            accs = ["–" if _missing(v) else f"{v:.2f}" for v in (ours, theirs)]
            label = f"{model_label(info['teacher'])}\nours {accs[0]}\npaper {accs[1]}"
        else:
            label = method_label(info["method"])
        entries.append((label, runs, info["paper"]))

    n_runs = sum(len(runs) for _, runs, _ in entries)
    width = max(6.0, 1.1 * len(entries) + 2.5)
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(_title(TABLES[table], df))
    ax.set_ylabel("test accuracy (%)")
    if by_teacher:
        ax.set_xlabel("teacher, and its test accuracy (ours, the paper's)")
    seen: set[str] = set()
    rng = np.random.default_rng(0)  # fixed jitter: same data, same picture
    for i, (_, runs, paper_acc) in enumerate(entries):
        if not _missing(paper_acc):
            ax.hlines(
                paper_acc,
                i - 0.4,
                i + 0.4,
                color="C3",
                lw=2.5,
                label=None if "paper" in seen else "paper (best epoch)",
                zorder=3,
            )
            seen.add("paper")
        for metric, dx, marker, colour in _FLAVOURS:
            vals = _metric(runs, metric).dropna().to_numpy()
            if len(vals) == 0:
                continue
            jitter = rng.uniform(-0.04, 0.04, size=len(vals))
            ax.scatter(i + dx + jitter, vals, s=10, color=colour, alpha=0.45, lw=0, zorder=2)
            m, s, _ = mean_std(vals)
            ax.errorbar(
                i + dx,
                m,
                yerr=None if _missing(s) else s,
                fmt=marker,
                color=colour,
                ms=6,
                capsize=3,
                zorder=4,
                label=None if metric in seen else f"ours: {METRICS[metric]} (mean ± std)",
            )
            seen.add(metric)
        ax.annotate(
            f"n={len(runs)}",
            (i, 0.01),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.35",
        )
    ax.set_xticks(range(len(entries)), [e[0] for e in entries], fontsize=9)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    if n_runs == 0:
        ax.text(
            0.5,
            0.5,
            f"no completed runs for {table.replace('table', 'Table ')} yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=12,
            color="0.3",
        )
    if seen:
        fig.legend(fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    return fig


def reproducibility_figures(
    df: pd.DataFrame, tables: Iterable[str] = tuple(TABLES), paper: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """:func:`reproducibility_figure` of each table, keyed ``reproducibility_<table>``."""
    return {f"reproducibility_{t}": reproducibility_figure(df, t, paper=paper) for t in tables}


# ----------------------------------------------------------------------------- generalization


def paper_gain(method: str, teacher: Any, student: Any, dataset: Any) -> float:
    """The paper's gain of ``method`` over its nokd in Table 3 (its number minus 89.42), for
    a run in Table 3's pair (ResNet26 -> ResNet8, CIFAR-10) at any budget; else NaN."""
    t3 = paper_results("table3")
    key = (_teachers(teacher), student, dataset)
    if key[1:] != ("resnet8", "cifar10") or "resnet26" not in key[0]:
        return math.nan
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
    cols = [
        "method",
        "teacher",
        "student",
        "dataset",
        "epochs",
        "setting",
        "teacher_from",
        "params",
        "n",
        "mean",
        "baseline_setting",
        "baseline_n",
        "baseline_mean",
        "gain",
        "ci_low",
        "ci_high",
        "t",
        "p",
        "precision",
        "paper_gain",
    ]
    runs = select_runs(df)
    runs = runs.assign(_value=_metric(runs, metric))
    runs = runs[runs["_value"].notna()]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    protocol = [c for c in runs.columns if c in _PROTOCOL or c.startswith("speed.")]
    runs = runs.assign(
        _teacher=[None if _missing(t) else str(t) for t in _col(runs, "teacher")],
        _epochs=pd.to_numeric(_col(runs, "epochs"), errors="coerce"),
        _setting=settings(runs),
        _protocol=[
            tuple(None if _missing(v) else str(v) for v in row)
            for row in zip(*(runs[c] for c in protocol), strict=True)
        ],
    )
    base = runs[runs["method"] == baseline]
    rows = []
    others = runs[runs["method"] != baseline]
    for setting, group in others.groupby("_setting", sort=True):
        first = group.iloc[0]
        b = base[[key == first["_protocol"] for key in base["_protocol"]]]
        what = f"{baseline} baseline of {first['method']} (setting {setting})"
        b = _one_setting(b, what)["_value"] if not b.empty else b["_value"]
        if b.empty:
            continue
        test = welch_ttest(group["_value"], b)
        low, high = difference_interval(group["_value"], b)
        rows.append(
            {
                "method": first["method"],
                "teacher": first["_teacher"],
                "student": first["student"],
                "dataset": first["dataset"],
                "epochs": int(first["_epochs"]),
                "setting": setting,
                "teacher_from": teacher_from(group).iloc[0],
                "params": _params(group),
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
                    first["method"], first["_teacher"], first["student"], first["dataset"]
                ),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    order = sorted(
        out.index,
        key=lambda i: (
            str(out.at[i, "dataset"]),
            out.at[i, "epochs"],
            str(out.at[i, "student"]),
            str(out.at[i, "teacher"]),
            _method_sort_key(out.at[i, "method"]),
            str(out.at[i, "setting"]),
        ),
    )
    return out.loc[order].reset_index(drop=True)


def gains_figure(
    df: pd.DataFrame,
    metric: str = "final_test_acc",
    baseline: str = "nokd",
    level: float = 0.95,
) -> Figure:
    """Each method's gain over nokd in Table 3's pair (ResNet26 -> ResNet8, CIFAR-10, the
    released teacher), one panel per budget: the mean gain over seeds with its Welch
    interval (:func:`gain_table`; no bar below 2 seeds), and the paper's gain (its Table 3
    number minus its nokd, at 200 epochs) as a red diamond. The seed-code and original
    variants of a method are separate rows; each row says its seeds (method/baseline).
    """
    gains = gain_table(df, metric=metric, baseline=baseline)
    title = _title(
        f"Gain over {method_label(baseline)}, ResNet26 → ResNet8, CIFAR-10 "
        f"({METRICS.get(metric, metric)}; mean, {level:.0%} Welch interval over seeds)",
        df,
    )
    keep = [
        s == "resnet8" and d == "cifar10" and "resnet26" in _teachers(t) and src == "checkpoint"
        for s, d, t, src in zip(
            gains["student"], gains["dataset"], gains["teacher"], gains["teacher_from"],
            strict=True,
        )
    ]  # fmt: skip
    gains = gains[np.asarray(keep, dtype=bool)]
    if gains.empty:
        return _message_figure(
            "no completed runs of Table 3's pair with a nokd baseline yet", title
        )
    budgets = sorted(gains["epochs"].unique())
    rows = max(len(gains[gains["epochs"] == e]) for e in budgets)
    fig = Figure(figsize=(5.5 * len(budgets) + 2.5, 0.42 * rows + 2.2), layout="constrained")
    axes = fig.subplots(1, len(budgets), squeeze=False)[0]
    for ax, epochs in zip(axes, budgets, strict=True):
        g = gains[gains["epochs"] == epochs]
        g = g.iloc[sorted(range(len(g)), key=lambda i: _method_sort_key(g["method"].iloc[i]))]
        y = np.arange(len(g))
        low = np.nan_to_num((g["gain"] - g["ci_low"]).to_numpy(float), nan=0.0)
        high = np.nan_to_num((g["ci_high"] - g["gain"]).to_numpy(float), nan=0.0)
        ax.errorbar(
            g["gain"], y, xerr=[low, high], fmt="o", color="C0", capsize=3,
            label=f"ours: mean gain, {level:.0%} interval",
        )  # fmt: skip
        ax.scatter(
            g["paper_gain"], y, marker="D", color="tab:red", zorder=3,
            label="paper's gain (Table 3, 200 epochs)",
        )  # fmt: skip
        ax.axvline(0.0, color="0.5", lw=0.8)
        names = []
        for _, r in g.iterrows():
            label = method_label(r["method"])
            if str(r["teacher"]) != "resnet26":
                label += f" ({model_label(r['teacher'])})"
            names.append(label)
        plain = list(names)
        for i, name in enumerate(plain):  # settings that share a label say what differs
            if plain.count(name) > 1:
                extra = [] if _missing(g["precision"].iloc[i]) else [str(g["precision"].iloc[i])]
                if g["params"].iloc[i]:
                    extra.append(g["params"].iloc[i])
                names[i] = f"{name} [{', '.join(extra) or g['setting'].iloc[i]}]"
        labels = [
            f"{name}  n={r['n']}/{r['baseline_n']}"
            for name, (_, r) in zip(names, g.iterrows(), strict=True)
        ]
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{epochs} epochs" + ("" if epochs == 200 else " (not the paper's 200)"))
        ax.set_xlabel(f"gain over {method_label(baseline)} (accuracy points)")
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def generalization_figure(
    df: pd.DataFrame,
    metric: str = "final_test_acc",
    alpha: float = 0.05,
    baseline: str = "nokd",
) -> Figure:
    """Heatmap of each method's gain over nokd per teacher -> student pair.

    Cells show the mean gain in points and ``*`` where Welch's t-test over seeds gives
    p < ``alpha``; grey cells were not run. Whether a method helps only for some pairs is
    the paper's generalization question.

    Each cell is one setting of :func:`gain_table`: a method's rows name the method
    parameters given (``SFD (projection=True)``), and a pair that was run with a teacher
    from a checkpoint and with one trained here is two columns (``(checkpoint)``,
    ``(trained)``). Should one cell still match several settings, the one with the most
    seeds (then the smallest hash) is shown, with a ``SettingsWarning``.
    """
    gains = gain_table(df, metric=metric, baseline=baseline)
    title = f"Gain over {method_label(baseline)} ({METRICS.get(metric, metric)})"
    if gains.empty:
        return _message_figure(
            f"no completed runs with a {baseline} baseline in the same setting yet",
            _title(title, df),
        )
    multi = gains[["dataset", "epochs"]].drop_duplicates().shape[0] > 1
    pair_keys = [
        tuple(map(str, k)) for k in gains[["teacher", "student", "dataset", "epochs"]].values
    ]
    sources: dict[tuple[str, ...], set[Any]] = {}
    for k, src in zip(pair_keys, gains["teacher_from"], strict=True):
        sources.setdefault(k, set()).add(src)

    def pair(r: Mapping[str, Any], k: tuple[str, ...]) -> str:
        teacher = model_label(r["teacher"])
        if len(sources[k]) > 1 and r["teacher_from"]:
            teacher += f" ({r['teacher_from']})"
        label = f"{teacher}→{model_label(r['student'])}"
        return f"{label}\n{r['dataset']} e{r['epochs']}" if multi else label

    def row(r: Mapping[str, Any]) -> str:
        return method_label(r["method"]) + (f" ({r['params']})" if r["params"] else "")

    gains = gains.assign(
        pair=[pair(r, k) for (_, r), k in zip(gains.iterrows(), pair_keys, strict=True)],
        row=[row(r) for _, r in gains.iterrows()],
        _rank=-gains["n"],
    ).sort_values(["_rank", "setting"], kind="stable")
    clash = gains.duplicated(["row", "pair"], keep="first")
    if clash.any():
        warnings.warn(
            f"generalization figure: {int(clash.sum())} cell(s) matched several settings; "
            "showing the one with the most seeds, leaving out settings "
            + ", ".join(gains.loc[clash, "setting"]),
            SettingsWarning,
            stacklevel=2,
        )
        gains = gains[~clash]
    by_pair = ["dataset", "epochs", "student", "teacher", "pair"]
    col_order = gains.sort_values(by_pair, na_position="first")["pair"].drop_duplicates().tolist()
    methods = gains.drop_duplicates("row").set_index("row")["method"]
    row_order = sorted(methods.index, key=lambda r: (*_method_sort_key(methods[r]), r))
    gain = np.full((len(row_order), len(col_order)), np.nan)
    for _, r in gains.iterrows():
        gain[row_order.index(r["row"]), col_order.index(r["pair"])] = r["gain"]
    lookup = {(r["row"], r["pair"]): r for _, r in gains.iterrows()}

    vmax = float(np.nanmax(np.abs(gain))) or 1.0
    fig = Figure(
        figsize=(max(5.0, 1.25 * len(col_order) + 3), max(3.0, 0.5 * len(row_order) + 2)),
        layout="constrained",
    )
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="0.88")
    im = ax.imshow(np.ma.masked_invalid(gain), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    for i, name in enumerate(row_order):
        for j, p in enumerate(col_order):
            r = lookup.get((name, p))
            if r is None:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="0.5")
                continue
            star = "*" if not _missing(r["p"]) and r["p"] < alpha else ""
            colour = "white" if abs(r["gain"]) > 0.6 * vmax else "black"
            ax.text(
                j,
                i,
                f"{r['gain']:+.2f}{star}\nn={r['n']}/{r['baseline_n']}",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    ax.set_xticks(range(len(col_order)), col_order, fontsize=8)
    ax.set_yticks(range(len(row_order)), row_order)
    ax.set_xlabel(f"teacher → student   (* Welch p < {alpha:g}; n = seeds method/baseline)")
    ax.set_title(_title(title, df))
    fig.colorbar(im, ax=ax, label="gain (accuracy points)")
    return fig


# ----------------------------------------------------------------------------- kd params


def _hparam(df: pd.DataFrame, name: str) -> pd.Series:
    """A resolved method hyper-parameter, falling back to the one given on the command line."""
    resolved = _metric(df, f"method_hparams.{name}")
    return resolved.fillna(_metric(df, f"method_params.{name}"))


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
    cols = [
        "teacher",
        "teacher_from",
        "student",
        "dataset",
        "epochs",
        "T",
        "lambda",
        "n",
        "mean",
        "std",
        "setting",
    ]
    runs = select_runs(df, method="kd", exclude_grids=())
    if grid_only:
        runs = runs[_col(runs, "grid") == "kdparam"]
    runs = runs.assign(
        T=_hparam(runs, "T"),
        lam=_hparam(runs, "lambda"),
        value=_metric(runs, metric),
        teacher=_col(runs, "teacher").fillna("none"),
        teacher_from=teacher_from(runs).fillna("none"),
        epochs=pd.to_numeric(_col(runs, "epochs"), errors="coerce"),
    ).dropna(subset=["T", "lam", "value"])
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    keys = ["teacher", "teacher_from", "student", "dataset", "epochs", "T", "lam"]
    for key, cell in runs.groupby(keys, sort=True):
        teacher, source, student, dataset, epochs, T, lam = key
        what = f"KD {teacher} ({source}) -> {student} e{int(epochs)} T={T:g} lambda={lam:g}"
        cell = _one_setting(cell, what, prefer_grid="kdparam")
        mean, std, n = mean_std(cell["value"])
        rows.append(
            {
                "teacher": teacher,
                "teacher_from": source,
                "student": student,
                "dataset": dataset,
                "epochs": int(epochs),
                "T": T,
                "lambda": lam,
                "n": n,
                "mean": mean,
                "std": std,
                "setting": settings(cell).iloc[0],
            }
        )
    return pd.DataFrame(rows, columns=cols)


def kd_params_figure(
    df: pd.DataFrame, metric: str = "final_test_acc", grid_only: bool = True
) -> Figure:
    """Heatmap of KD accuracy over temperature T (rows) and weight lambda (columns).

    One panel per teacher -> student setting; the best cell is outlined. The paper tunes
    KD this way before comparing it with other methods.
    """
    table = kd_param_table(df, metric=metric, grid_only=grid_only)
    title = f"KD accuracy over T x lambda ({METRICS.get(metric, metric)})"
    if table.empty:
        return _message_figure("no completed kdparam (T x lambda) runs yet", _title(title, df))
    panels = list(table.groupby(["teacher", "teacher_from", "student", "dataset", "epochs"]).groups)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    sample = table[["T"]].drop_duplicates().shape[0], table[["lambda"]].drop_duplicates().shape[0]
    fig = Figure(
        figsize=(ncols * max(3.5, 0.9 * sample[1] + 2), nrows * max(3.0, 0.55 * sample[0] + 1.8)),
        layout="constrained",
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels, strict=False):
        teacher, source, student, dataset, epochs = panel
        sub = table[
            (table["teacher"] == teacher)
            & (table["teacher_from"] == source)
            & (table["student"] == student)
            & (table["dataset"] == dataset)
            & (table["epochs"] == epochs)
        ]
        grid = sub.pivot(index="T", columns="lambda", values="mean").sort_index().sort_index(axis=1)
        counts = sub.pivot(index="T", columns="lambda", values="n").reindex_like(grid)
        values = grid.to_numpy(dtype=float)
        im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto", origin="lower")
        finite = values[np.isfinite(values)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if not np.isfinite(v):
                    continue
                light = hi == lo or (v - lo) / (hi - lo) < 0.6
                ax.text(
                    j,
                    i,
                    f"{v:.2f}\nn={int(counts.iat[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if light else "black",
                )
        bi, bj = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set_xlabel("lambda (weight of the KD term)")
        ax.set_ylabel("T (temperature)")
        trained = " (trained)" if source == "trained" else ""
        ax.set_title(
            f"{model_label(teacher)}{trained}→{model_label(student)}, {dataset}, {epochs} epochs\n"
            f"best T={grid.index[bi]:g}, lambda={grid.columns[bj]:g}",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, label="test accuracy (%)", shrink=0.85)
    fig.suptitle(_title(title, df))
    return fig


# ----------------------------------------------------------------------------- training curves

CURVE_COLUMNS = ("test_acc", "val_acc", "train_loss")
_CURVE_LABELS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_loss": "training loss (all terms)",
    "train_acc": "training accuracy (%)",
    "lr": "learning rate",
}


def load_histories(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-epoch history of each run in ``df`` (by run_id); runs without one are skipped."""
    return _histories(zip(_col(df, "run_id"), _col(df, "path"), strict=True))


def _histories(runs: Iterable[tuple[Any, Any]]) -> dict[str, pd.DataFrame]:
    """Per-epoch history of each ``(name, run directory)`` that has one, by name."""
    out = {}
    for name, path in runs:
        if _missing(path):
            continue
        hist = RunRecord(path).history()
        if not hist.empty and "epoch" in hist.columns:
            out[str(name)] = hist
    return out


def _group_labels(df: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """A label per run from the ``by`` columns that vary (constant ones say nothing)."""
    # missing values do not count: "NOKD" and "KD" say enough, not "NOKD none"
    varying = [c for c in by if _col(df, c).dropna().astype(str).nunique() > 1] or [by[0]]
    parts = []
    for c in varying:
        values = _col(df, c)
        if c == "method":
            parts.append(values.map(method_label))
        elif c in ("teacher", "student"):
            parts.append(values.map(model_label))
        elif c == "epochs":
            parts.append(values.map(lambda v: f"e{int(v)}" if not _missing(v) else "e?"))
        else:
            parts.append(values.astype(str))
    label = parts[0].astype(str)
    for p in parts[1:]:
        label = label + " " + p.astype(str)
    return label


def mean_curves(
    df: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] = ("method", "teacher", "student", "dataset", "epochs"),
    columns: Sequence[str] = CURVE_COLUMNS,
) -> pd.DataFrame:
    """Long table (label, epoch, column, mean, std, n): each group's curves averaged over seeds.

    A group is the runs of one setting: where the ``by`` columns name runs of several
    settings, each gets its own label saying what tells it apart (``KD (teacher
    trained)``, its method parameters, else its setting hash).
    """
    out_cols = ["label", "epoch", "column", "mean", "std", "n"]
    runs = completed(df)
    histories = load_histories(runs) if histories is None else histories
    runs = runs[_col(runs, "run_id").astype(str).isin(list(histories))]
    if runs.empty:
        return pd.DataFrame(columns=out_cols)
    labels = _tell_apart(
        list(_group_labels(runs, by)),
        list(settings(runs)),
        list(teacher_from(runs)),
        [_params(runs.loc[[i]]) for i in runs.index],
    )
    frames = []
    for run_id, label in zip(runs["run_id"].astype(str), labels, strict=True):
        hist = histories[run_id]
        present = [c for c in columns if c in hist.columns]
        long = hist[["epoch", *present]].melt(id_vars="epoch", var_name="column")
        long["label"] = label
        frames.append(long)
    data = pd.concat(frames, ignore_index=True)
    data["value"] = pd.to_numeric(data["value"], errors="coerce")
    data = data.dropna(subset=["value"])
    agg = data.groupby(["label", "epoch", "column"], sort=False)["value"].agg(
        mean="mean", std="std", n="count"
    )
    return agg.reset_index()[out_cols]


def curves_figure(
    curves: pd.DataFrame, columns: Sequence[str] = CURVE_COLUMNS, title: str = ""
) -> Figure:
    """Plot a :func:`mean_curves` table: one panel per column, one line (+- std band) per label."""
    if curves.empty:
        return _message_figure("no completed runs with a history to plot", title)
    fig = Figure(figsize=(4.3 * len(columns), 3.9), layout="constrained")
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    labels = list(dict.fromkeys(curves["label"]))
    for ax, column in zip(axes, columns, strict=True):
        sub = curves[curves["column"] == column]
        for k, label in enumerate(labels):
            line = sub[sub["label"] == label].sort_values("epoch")
            if line.empty:
                continue
            colour = f"C{k % 10}"
            ax.plot(line["epoch"], line["mean"], color=colour, lw=1.2, label=label)
            if (line["n"] > 1).any():
                std = line["std"].fillna(0.0)
                ax.fill_between(
                    line["epoch"],
                    line["mean"] - std,
                    line["mean"] + std,
                    color=colour,
                    alpha=0.2,
                    lw=0,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(_CURVE_LABELS.get(column, column))
        ax.grid(alpha=0.3)
        if sub.empty:
            ax.text(0.5, 0.5, f"no {column} recorded", transform=ax.transAxes, ha="center")
        if column == "train_loss" and not sub.empty and (sub["mean"] > 0).all():
            ax.set_yscale("log")
    handles, names = axes[0].get_legend_handles_labels()
    if not handles:
        for ax in axes[1:]:
            handles, names = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, names, loc="outside right center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def training_curves_figure(
    df: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] = ("method", "teacher", "student", "dataset", "epochs"),
    columns: Sequence[str] = CURVE_COLUMNS,
) -> Figure:
    """Test and validation accuracy and training loss per epoch, mean +- std over seeds.

    One line per group of runs (by default per method and setting; only the parts that
    differ between the runs name a line). Select the runs first, e.g. with
    :func:`select_runs`. The training loss includes each method's own terms, so compare
    its shape across methods, not its level.
    """
    runs = completed(df)
    curves = mean_curves(runs, histories=histories, by=by, columns=columns)
    title = _title("Training curves (mean ± std over seeds)", runs)
    if curves.empty:
        return _message_figure("no completed runs with a history for these settings yet", title)
    return curves_figure(curves, columns=columns, title=title)


def run_curves_figure(
    run_dirs: Iterable[str | Path], columns: Sequence[str] = CURVE_COLUMNS
) -> Figure:
    """Learning curves of given run directories, one line each (whatever their status)."""
    histories = _histories((Path(d).name, d) for d in run_dirs)
    if not histories:
        return _message_figure("these runs have no recorded epochs yet", "Learning curves")
    frames = []
    for run_id, hist in histories.items():
        present = [c for c in columns if c in hist.columns]
        long = hist[["epoch", *present]].melt(id_vars="epoch", var_name="column", value_name="mean")
        long["label"] = run_id
        frames.append(long)
    curves = pd.concat(frames, ignore_index=True)
    curves["mean"] = pd.to_numeric(curves["mean"], errors="coerce")
    curves = curves.assign(std=np.nan, n=1).dropna(subset=["mean"])
    return curves_figure(curves, columns=columns, title="Learning curves")
