"""The bf16 accuracy check: means, difference and spread per method, computed by hand."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest

from kdlib.precision_check import precision_check, precision_check_markdown

ACC = {
    ("nokd", "fp32"): [70.1, 71.3, 70.7],
    ("nokd", "bf16"): [70.9, 70.2, 71.0],
    ("kd", "fp32"): [72.0, 72.4, 72.2],
    ("kd", "bf16"): [73.9, 74.1, 74.3],  # a made-up precision effect beyond the spread
}


def _runs() -> pd.DataFrame:
    rows = []
    for (method, precision), accs in ACC.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "run_id": f"{method}-{precision}-{seed}",
                    "status": "completed",
                    "method": method,
                    "epochs": 5,
                    "seed": seed,
                    "speed.precision": precision,
                    "final_test_acc": acc,
                    "setting_hash": f"{method}-{precision}",
                }
            )
    rows.append({**rows[0], "run_id": "x", "status": "running", "final_test_acc": 1.0})
    return pd.DataFrame(rows)


def test_means_difference_and_spread_match_a_hand_computation() -> None:
    table = precision_check(_runs()).set_index("method")
    for method in ("nokd", "kd"):
        f, b = ACC[(method, "fp32")], ACC[(method, "bf16")]
        row = table.loc[method]
        assert row["fp32_mean"] == pytest.approx(statistics.mean(f))
        assert row["bf16_mean"] == pytest.approx(statistics.mean(b))
        assert row["difference"] == pytest.approx(statistics.mean(b) - statistics.mean(f))
        spread = max(statistics.stdev(f), statistics.stdev(b))
        assert row["seed_spread"] == pytest.approx(spread)
        assert row["n_fp32"] == row["n_bf16"] == 3  # the running run does not count
    assert table.loc["nokd", "verdict"] == "within seed spread"
    assert table.loc["kd", "verdict"] == "larger than seed spread"
    md = precision_check_markdown(table.reset_index())
    assert md.count("\n") == 3 and "| kd | 5 |" in md


def test_a_method_without_both_precisions_is_left_out() -> None:
    df = _runs()
    df = df[~((df["method"] == "kd") & (df["speed.precision"] == "fp32"))]
    assert list(precision_check(df)["method"]) == ["nokd"]


def test_two_settings_of_one_precision_are_refused() -> None:
    df = _runs()
    df.loc[df["run_id"] == "nokd-fp32-2", "setting_hash"] = "other"
    with pytest.raises(ValueError, match="2 settings"):
        precision_check(df)
