"""The paper's numbers and labels (kdlib.paper), which every figure shows beside ours."""

from __future__ import annotations

import pytest

from kdlib.paper import method_label, model_label, paper_results


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
