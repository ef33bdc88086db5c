"""Which runs are pooled: the study's scientific core, shared by every table and figure.

Only ``status == "completed"`` runs on the whole test split count, one per seed of each
*setting* (equal ``setting_hash`` of :func:`kdlib.runs.load_runs`: every identity setting
but the seed, the teacher checkpoint by its content). Runs that look alike but were set
up differently, e.g. KD from the released ResNet26 checkpoint and KD from a ResNet26
trained here, are never averaged or tested together: where a figure has room for one
setting, :func:`one_setting` picks it by a fixed rule and says what it left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdlib.config import settings_where
from kdlib.paper import method_key
from kdlib.runs import load_runs

# The three test accuracies, kept apart on purpose: the last epoch, the epoch chosen on
# validation (the honest number) and the best test epoch (the paper's way of reporting).
METRICS: dict[str, str] = {
    "final_test_acc": "final epoch",
    "test_acc_at_best_val": "epoch chosen on validation",
    "best_test_acc": "best test epoch (paper's way)",
}

# Runs of a grid study that are not runs of "the" method: KD with swept T and lambda.
EXCLUDED_GRIDS = ("kdparam",)

# Where each paper table's teacher comes from in the sweep that reproduces it: Tables 3
# and 4 load the released checkpoint (sweeps/paper_table3.yaml, paper_table4.yaml), Table 2
# trains each teacher first (sweeps/paper_table2.yaml). A table shows only runs whose
# teacher came that way (teacher-free runs such as nokd always qualify).
TABLE_TEACHER_FROM = {"table2": "trained", "table3": "checkpoint", "table4": "checkpoint"}

# The student's training protocol, shared by a method's runs and its nokd baseline (the
# settings the catalogue marks ``protocol``, and the data they saw): a baseline must agree
# on every one of these the runs recorded (and on ``speed.*``).
_PROTOCOL = (*settings_where(protocol=True), "dataset_fingerprint")


class SettingsWarning(UserWarning):
    """Runs of several settings matched one entry of a figure: one setting was shown."""


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` of ``df``, or all-NaN when no run recorded it (old or partial runs)."""
    if name in df.columns:
        return df[name]
    return pd.Series([np.nan] * len(df), index=df.index, dtype=object)


def missing(value: Any) -> bool:
    """None, NaN, NA or an empty string: a setting the run did not have."""
    if isinstance(value, str):
        return value == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value
        return False


def teachers_of(value: Any) -> list[str]:
    """The teachers a run names (MKD names several, comma-separated; none: [])."""
    return [] if missing(value) else [t.strip() for t in str(value).split(",")]


def numeric(df: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column (NaN where a run lacks it or recorded something else)."""
    return pd.to_numeric(col(df, name), errors="coerce")


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
    partial = col(df, "test_limit").notna() if "test_limit" in df.columns else False
    out = _one_per_seed(df[(col(df, "status") == "completed") & ~partial].copy())
    # a method run as the seed code ran it is another row than the original method
    variants = col(out, "method_hparams.variant")
    out["method"] = [method_key(m, v) for m, v in zip(col(out, "method"), variants, strict=True)]
    return out


def settings(df: pd.DataFrame) -> pd.Series:
    """Each run's setting (``setting_hash``); runs of equal settings are seeds of one
    experiment. A run without one (a table not made by ``load_runs``) is a setting of
    its own: nothing is pooled with it."""
    pairs = zip(col(df, "setting_hash"), col(df, "run_id"), strict=True)
    values = [f"run:{r}" if missing(s) else str(s) for s, r in pairs]
    return pd.Series(values, index=df.index, dtype=object)


def teacher_from(df: pd.DataFrame) -> pd.Series:
    """Where each run's teacher came from: ``checkpoint`` (loaded from a file, e.g. the
    released one), ``trained`` (trained first by the same loop) or None (no teacher)."""
    out = []
    columns = (col(df, c) for c in ("teacher", "teacher_checkpoint", "teacher_checkpoint_sha256"))
    for teacher, ckpt, sha in zip(*columns, strict=True):
        loaded = not (missing(ckpt) and missing(sha))
        out.append(None if missing(teacher) else "checkpoint" if loaded else "trained")
    return pd.Series(out, index=df.index, dtype=object)


def params_of(runs: pd.DataFrame) -> str:
    """The method parameters given to a setting's runs (``T=4, lambda=0.7``), or ""."""
    if runs.empty:
        return ""
    first = runs.iloc[0]
    # the variant is in the method's label (see kdlib.paper.method_label), not repeated here
    cols = sorted(
        c for c in runs.columns if c.startswith("method_params.") and c != "method_params.variant"
    )
    return ", ".join(
        f"{c[len('method_params.') :]}={first[c]}" for c in cols if not missing(first[c])
    )


def n_seeds(runs: pd.DataFrame) -> int:
    """How many distinct seeds ``runs`` hold."""
    return int(pd.to_numeric(col(runs, "seed"), errors="coerce").dropna().nunique())


def _one_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one run per (setting, seed): the first by run id (see :func:`completed`)."""
    if df.empty:
        return df
    key = pd.DataFrame(
        {
            "setting": settings(df),
            "seed": col(df, "seed").astype(str),
            "run_id": col(df, "run_id").astype(str),
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


def one_setting(
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
        grid = col(g, "grid").iloc[0]
        off_grid = (not missing(grid)) if prefer_grid is None else grid != prefer_grid
        return (bool(off_grid), -n_seeds(g), s)

    ranked = sorted(groups.items(), key=rank)
    (best, runs), rest = ranked[0], ranked[1:]
    warnings.warn(
        f"{what}: runs of {len(ranked)} different settings match; showing setting {best} "
        f"({n_seeds(runs)} seeds), leaving out "
        + ", ".join(f"{s} ({n_seeds(g)} seeds)" for s, g in rest),
        SettingsWarning,
        stacklevel=3,
    )
    return runs


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
        out = out[col(out, "method").isin(methods)]
    if student is not None:
        out = out[col(out, "student") == student]
    if dataset is not None:
        out = out[col(out, "dataset") == dataset]
    if epochs is not None:
        out = out[pd.to_numeric(col(out, "epochs"), errors="coerce") == epochs]
    if teacher is not None:
        keep = [not teachers_of(t) or teacher in teachers_of(t) for t in col(out, "teacher")]
        out = out[np.asarray(keep, dtype=bool)]
    if exclude_grids:
        out = out[~col(out, "grid").isin(list(exclude_grids))]
    return out


def paper_row_runs(df: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    """Our completed runs with one paper row's method, models, data and epochs, of any
    setting (the table keeps one: see :func:`one_setting`)."""
    runs = select_runs(
        df,
        method=row["method"],
        student=row["student"],
        dataset=row["dataset"],
        epochs=int(row["epochs"]),
    )
    if missing(row["teacher"]):
        return runs
    keep = [row["teacher"] in teachers_of(t) for t in col(runs, "teacher")]
    return runs[np.asarray(keep, dtype=bool)]


def protocol_columns(runs: pd.DataFrame) -> list[str]:
    """The columns of :data:`_PROTOCOL` (and ``speed.*``) that ``runs`` recorded: a method's
    nokd baseline must agree with it on every one of them."""
    return [c for c in runs.columns if c in _PROTOCOL or c.startswith("speed.")]


def is_synthetic(df: pd.DataFrame) -> bool:
    """Whether any run of ``df`` is a synthetic test fixture (figures then say so)."""
    flags = col(df, "synthetic_fixture")
    return bool(flags.fillna(False).astype(bool).any()) if len(flags) else False
