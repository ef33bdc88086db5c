"""`kdlib bench` smoke test on CPU: it runs both loops and reports (no timing asserts)."""

from __future__ import annotations

import json

import pytest

from kdlib.cli import main


def test_bench_smoke(capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "bench",
            "--method",
            "kd",
            "--student",
            "resnet8",
            "--teacher",
            "resnet8",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--num-workers",
            "0",
            "--ablate",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result["results"]) == {"fast", "fast, fp32", "fast, no channels_last", "classic"}
    for row in result["results"].values():
        assert row["steps"] == 2
        assert row["seconds_per_epoch"] > 0 and row["images_per_second"] > 0
    assert result["results"]["classic"]["speed"]["loop"] == "classic"
    rows = result["results"]  # the speed-up is the classic loop's time over the fast one's
    ratio = rows["classic"]["seconds_per_epoch"] / rows["fast"]["seconds_per_epoch"]
    assert result["speedup_vs_classic"] == pytest.approx(ratio)
    assert "speed-up of the fast loop" in "\n".join(out)


def test_bench_rejects_bad_steps(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--steps", "0", "--device", "cpu"]) == 2
    assert "--steps=0" in capsys.readouterr().err


def test_macs_of_a_small_net_match_a_hand_count() -> None:
    from torch import nn

    from kdlib.flops import macs_per_image, training_flops_per_image

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))
    expected = 32 * 32 * 4 * (3 * 3 * 3) + 4 * 32 * 32 * 10
    assert macs_per_image(net) == expected
    assert training_flops_per_image(net, net) == 3 * 2 * expected + 2 * expected
