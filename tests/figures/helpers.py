"""What the figure tests share: the fixture's path, the text a figure shows, and the
fixture's runs read straight from their JSON files (not through kdlib), so that numbers
the figures show are checked against values computed independently."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs"

# Literal numbers read off the fixture (tests/make_fixture_runs.py, seeds 0 and 1):
# Table 3 KD, released ResNet26 checkpoint: final_test_acc 90.39, 90.54 (mean 90.465,
# std 0.15/sqrt(2)); best_test_acc 90.61, 90.74 (mean 90.675).
# Table 2 KD, ResNet26 trained first: final_test_acc 90.50, 89.96 (mean 90.23); best
# 90.88, 90.23 (mean 90.555); its teachers scored 93.19 and 93.65 (mean 93.42).
# nokd ResNet8, 200 epochs: final_test_acc 89.29, 88.86 (mean 89.075).
KD_T3_FINAL, KD_T3_BEST, KD_T3_STD = 90.465, 90.675, 0.15 / 2**0.5
KD_T3_SEEDS = (90.39, 90.54)
KD_T2_FINAL, KD_T2_BEST, KD_T2_TEACHER = 90.23, 90.555, 93.42
NOKD_FINAL = 89.075


def texts(fig: Figure) -> str:
    """All text drawn on a figure (titles, annotations, tick labels), to assert on."""
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.texts]
        parts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    for legend in fig.legends:
        parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


def raw_runs(root: Path = FIXTURE) -> pd.DataFrame:
    """Every completed run under ``root``: its config.json and metrics.json as one row
    (``variant`` from the resolved method parameters, ``history`` its history.csv or None)."""
    rows = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        config = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        if metrics.get("status") != "completed":
            continue
        history = run / "history.csv"
        rows.append(
            {
                **config,
                **metrics,
                "variant": (config.get("method_hparams") or {}).get("variant"),
                "T": (config.get("method_params") or {}).get("T"),
                "lambda": (config.get("method_params") or {}).get("lambda"),
                "history": history if history.exists() else None,
            }
        )
    return pd.DataFrame(rows)


def plain(raw: pd.DataFrame, **fields: object) -> pd.DataFrame:
    """Runs of ``raw`` outside any grid with the given fields (None matches a missing one)."""
    out = raw[raw["grid"].isna()]
    for key, value in fields.items():
        out = out[out[key].isna()] if value is None else out[out[key] == value]
    return out
