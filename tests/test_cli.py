"""The command line: listings, eval output, train output, missing data, usage errors.

The table of malformed calls and files is in test_bad_input.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib.cli import main
from kdlib.models import create_model, list_models, save_weights


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_module_entry_point_lists_methods() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kdlib", "methods"], capture_output=True, text=True, check=True
    ).stdout
    names = [line.split()[0] for line in out.splitlines()]
    assert {"nokd", "kd"} <= set(names)


def test_models_lists_every_model_with_its_size(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(["models"], capsys)
    assert code == 0
    assert {line.split()[0] for line in out.splitlines()[1:]} == set(list_models())
    assert "89,322" in out and "11,173,962" in out


def test_eval_prints_one_json_line(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = tmp_path / "m.pt"
    save_weights(create_model("resnet8", 10), ckpt)
    code, out, _ = _run(
        [
            "eval",
            "--model",
            "resnet8",
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
            "--data-dir",
            tiny_data["data_dir"],
            "--cache-dir",
            tiny_data["cache_dir"],
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n"] == 200 and 0 <= result["accuracy"] <= 100


def test_train_prints_the_run_dir_last(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    code, out, _ = _run(
        [
            "train",
            "--method",
            "nokd",
            "--student",
            "resnet8",
            "--epochs",
            "1",
            "--val-size",
            "100",
            "--batch-size",
            "100",
            "--device",
            "cpu",
            "--quiet",
            "--runs-dir",
            str(runs),
            "--data-dir",
            tiny_data["data_dir"],
            "--cache-dir",
            tiny_data["cache_dir"],
        ],
        capsys,
    )
    assert code == 0
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == runs
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_missing_data_says_where_to_put_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(
        [
            "train",
            "--epochs",
            "1",
            "--quiet",
            "--runs-dir",
            str(tmp_path / "r"),
            "--data-dir",
            str(tmp_path / "empty"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert code == 2
    assert "--data-dir" in err or "KDLIB_DATA_DIR" in err
    assert not (tmp_path / "r").exists()


def test_unknown_command_exits_2_with_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["fly"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fly'" in err and len(err.strip().splitlines()) == 1


def test_help_still_exits_0() -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0


def test_main_gives_the_callers_sigterm_handler_back(capsys: pytest.CaptureFixture) -> None:
    # In-process callers (pytest, a notebook) must not keep kdlib's handler: CI's SIGTERM
    # once surfaced as kdlib's Terminated inside an unrelated test.
    import signal

    def mine(signum: int, frame: object) -> None:
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["models"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        with pytest.raises(SystemExit):
            main(["train", "--help"])
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
    capsys.readouterr()
