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
            "--batch-size",
            "32",  # small: emulated bf16 (a CPU without native bf16) is ~10x slower
            "--eval-images",
            "100",
            "--num-workers",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["batch_size"] == 32
    # on a CPU: every precision x layout side by side, the classic loop, and (glibc)
    # auto again in a process of its own with glibc's default malloc
    auto = result["auto_variant"]
    tuned = result["cpu_allocator"] == "glibc tuned"
    assert set(result["results"]) == {
        "fp32, contiguous",
        "fp32, channels_last",
        "bf16, contiguous",
        "bf16, channels_last",
        "classic",
    } | ({f"{auto}, default malloc"} if tuned else set())
    rows = dict(result["results"])
    if tuned:
        untuned = rows.pop(f"{auto}, default malloc")
        assert untuned["steps"] == 2 and untuned["seconds_per_epoch"] > 0
        assert untuned["speed"] == {**rows[auto]["speed"], "cpu_allocator": "glibc default"}
        assert untuned["max_rss_mib"] > 0
    assert result["max_rss_mib"] > 0
    for name, row in rows.items():
        assert row["steps"] == 2
        assert row["seconds_per_epoch"] > 0 and row["images_per_second"] > 0
        if name != "classic":
            precision, layout = name.split(", ")
            assert row["speed"]["precision"] == precision
            assert row["speed"]["channels_last"] is (layout == "channels_last")
    assert rows["classic"]["speed"] == {**rows["classic"]["speed"], "loop": "classic"}
    # the row auto picks is the one the run would get
    assert auto in rows and rows[auto]["speed"]["channels_last"] is True
    assert (rows[auto]["speed"]["precision"] == "bf16") is result["cpu"]["native_bf16"]
    # the speed-ups are the other rows' times over the auto one's
    ratio = rows["classic"]["seconds_per_epoch"] / rows[auto]["seconds_per_epoch"]
    assert result["speedup_vs_classic"] == pytest.approx(ratio)
    ratio = rows["fp32, contiguous"]["seconds_per_epoch"] / rows[auto]["seconds_per_epoch"]
    assert result["auto_speedup_vs_fp32_contiguous"] == pytest.approx(ratio)
    text = "\n".join(out)
    assert f"{auto} " in text and "<- auto" in text and "auto vs fp32 contiguous" in text
    assert f"malloc: {result['cpu_allocator']}" in text


def test_bench_packed_adds_up_its_workers(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "--method", "nokd", "--teacher", "none", "--device", "cpu", "--steps", "1"]
    assert main([*args, "--only", "auto", "--packed", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(result["results"]) == [result["auto_variant"]]
    (packed,) = result["packed"]
    assert packed["processes"] == 2 and packed["threads_each"] >= 1
    assert len(packed["seconds_per_epoch_each"]) == 2
    assert packed["seconds_per_epoch_effective"] == pytest.approx(
        50_000 / packed["images_per_second_total"]
    )


def test_bench_rejects_bad_only_and_packed(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--device", "cpu", "--only", "fp16, sideways"]) == 2
    assert "--only" in capsys.readouterr().err
    assert main(["bench", "--device", "cpu", "--packed", "0,x"]) == 2
    assert "--packed" in capsys.readouterr().err


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
