"""Does bf16 cost accuracy? The runs of ``sweeps/bf16_check.yaml`` side by side.

For each method, the final test accuracy of the float32 runs and of the bf16 runs (same
settings otherwise, one run per seed), their means, the difference of the means, and the
seed-to-seed spread (the larger of the two sample standard deviations). The verdict is
"within seed spread" when ``|difference| < spread``, the acceptance rule of the speed work.
Runs are pooled only within one setting (``setting_hash``), as every figure does.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from kdlib.figures import completed, settings
from kdlib.runs import load_runs
from kdlib.stats import mean_std, welch_ttest

PRECISIONS = ("fp32", "bf16")


def precision_check(df: pd.DataFrame, metric: str = "final_test_acc") -> pd.DataFrame:
    """One row per (method, epochs) that has completed runs in both precisions."""
    runs = completed(df)
    if runs.empty or "speed.precision" not in runs.columns:
        return pd.DataFrame()
    runs = runs.assign(_setting=settings(runs))
    rows: list[dict[str, Any]] = []
    for (method, epochs), group in runs.groupby(["method", "epochs"], sort=True):
        by_precision = {p: group[group["speed.precision"] == p] for p in PRECISIONS}
        if any(g.empty for g in by_precision.values()):
            continue
        for p, g in by_precision.items():  # one setting per precision, else no comparison
            if g["_setting"].nunique() != 1:
                raise ValueError(
                    f"{method} e{epochs} {p}: runs of {g['_setting'].nunique()} settings; "
                    "keep one configuration per precision"
                )
        stats = {p: mean_std(g[metric]) for p, g in by_precision.items()}
        (m32, s32, n32), (m16, s16, n16) = stats["fp32"], stats["bf16"]
        spread = max(s32, s16)
        diff = m16 - m32
        test = welch_ttest(by_precision["bf16"][metric], by_precision["fp32"][metric])
        rows.append(
            {
                "method": method,
                "epochs": int(epochs),
                "n_fp32": n32,
                "fp32_mean": m32,
                "fp32_std": s32,
                "n_bf16": n16,
                "bf16_mean": m16,
                "bf16_std": s16,
                "difference": diff,
                "seed_spread": spread,
                "welch_p": test.p,
                "verdict": "within seed spread"
                if math.isfinite(spread) and abs(diff) < spread
                else "larger than seed spread",
            }
        )
    return pd.DataFrame(rows)


def precision_check_markdown(table: pd.DataFrame) -> str:
    """The table for docs/performance.md (accuracies in percent)."""
    if table.empty:
        return "No completed fp32/bf16 pairs of runs yet."
    lines = [
        "| method | epochs | fp32 mean +- std (n) | bf16 mean +- std (n) | bf16 - fp32 "
        "| seed spread | Welch p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.method} | {r.epochs} | {r.fp32_mean:.2f} +- {r.fp32_std:.2f} ({r.n_fp32}) "
            f"| {r.bf16_mean:.2f} +- {r.bf16_std:.2f} ({r.n_bf16}) | {r.difference:+.2f} "
            f"| {r.seed_spread:.2f} | {r.welch_p:.2f} | {r.verdict} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m kdlib.precision_check [RUNS_DIR]
    import sys

    runs_dir = sys.argv[1] if len(sys.argv) > 1 else "runs"
    print(precision_check_markdown(precision_check(load_runs(runs_dir))))
