"""Table-driven: malformed settings, config files, sweep files and CLI calls are rejected
before any work, with exit code 2, one line naming the bad field, and nothing on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.cli import main

# (name, CLI arguments after `kdlib train`, text the error must contain)
TRAIN = [
    ("unknown method", ["--method", "kdd"], "unknown method 'kdd'"),
    ("unknown student", ["--student", "resnet9"], "--student='resnet9'"),
    ("unknown teacher", ["--method", "kd", "--teacher", "vgg16"], "--teacher='vgg16'"),
    ("kd without teacher", ["--method", "kd"], "needs a teacher"),
    ("checkpoint without teacher", ["--teacher-checkpoint", "{ckpt8}"], "--teacher-checkpoint"),
    (
        "missing checkpoint",
        ["--method", "kd", "--teacher", "resnet8", "--teacher-checkpoint", "/nope.pth"],
        "no such file '/nope.pth'",
    ),
    (
        "checkpoint of another arch",
        ["--method", "kd", "--teacher", "resnet20", "--teacher-checkpoint", "{ckpt8}"],
        "--teacher=resnet20",
    ),
    (
        "checkpoint with other classes",
        ["--method", "kd", "--teacher", "resnet8", "--teacher-checkpoint", "{ckpt8_100}"],
        "100 classes",
    ),
    (
        "two teachers for kd",
        ["--method", "kd", "--teacher", "resnet8,resnet14"],
        "takes one teacher",
    ),
    (
        "checkpoint count",
        ["--method", "kd", "--teacher", "resnet8", "--teacher-checkpoint", "{ckpt8},{ckpt8}"],
        "2 checkpoints for 1 teachers",
    ),
    ("unknown dataset", ["--dataset", "mnist"], "--dataset='mnist'"),
    ("zero epochs", ["--epochs", "0"], "--epochs=0"),
    ("negative epochs", ["--epochs", "-3"], "--epochs=-3"),
    ("non-integer epochs", ["--epochs", "2.5"], "--epochs"),
    ("zero batch", ["--batch-size", "0"], "--batch-size=0"),
    ("negative seed", ["--seed", "-1"], "--seed=-1"),
    ("zero lr", ["--lr", "0"], "--lr=0.0"),
    ("negative lr", ["--lr", "-0.1"], "--lr=-0.1"),
    ("momentum 1", ["--momentum", "1"], "--momentum=1.0"),
    ("negative wd", ["--weight-decay=-1e-4"], "--weight-decay=-0.0001"),
    ("negative val", ["--val-size", "-1"], "--val-size=-1"),
    ("val too big", ["--val-size", "400"], "--val-size=400"),
    ("zero train limit", ["--train-limit", "0"], "--train-limit=0"),
    ("train limit too big", ["--train-limit", "5000", "--val-size", "100"], "--train-limit=5000"),
    ("zero checkpoint interval", ["--checkpoint-every", "0"], "--checkpoint-every=0"),
    ("bad device", ["--device", "tpu"], "unknown device 'tpu'"),
    ("T zero", ["--method", "kd", "--teacher", "resnet8", "-p", "T=0"], "T=0 is out of range"),
    ("T negative", ["--method", "kd", "--teacher", "resnet8", "-p", "T=-2"], "T=-2"),
    (
        "T not a number",
        ["--method", "kd", "--teacher", "resnet8", "-p", "T=hot"],
        "T=hot is not a float",
    ),
    (
        "lambda above 1",
        ["--method", "kd", "--teacher", "resnet8", "-p", "lambda=1.5"],
        "0 <= lambda <= 1",
    ),
    (
        "lambda below 0",
        ["--method", "kd", "--teacher", "resnet8", "-p", "lambda=-0.5"],
        "0 <= lambda <= 1",
    ),
    ("unknown method param", ["-p", "T=4"], "has no parameter 'T'"),
    # numbers that are not finite or absurd: refused before a run that would diverge
    ("lr inf", ["--lr", "inf"], "--lr=inf"),
    ("lr nan", ["--lr", "nan"], "--lr=nan"),
    ("weight decay inf", ["--weight-decay", "inf"], "--weight-decay=inf"),
    (
        "T overflows to inf",
        ["--method", "kd", "--teacher", "resnet8", "-p", "T=1e400"],
        "T=1e400 is not a finite number",
    ),
    ("absurd epochs", ["--epochs", "100001"], "--epochs=100001: at most 100,000"),
    (
        "test limit above the split",
        ["--test-limit", "5000", "--val-size", "100"],
        "--test-limit=5000",
    ),
    (
        "param without value",
        ["--method", "kd", "--teacher", "resnet8", "-p", "T"],
        "expected KEY=VALUE",
    ),
    ("missing config file", ["--config", "/nope.yaml"], "--config='/nope.yaml'"),
    ("config is a directory", ["--config", "/tmp"], "a directory, not a YAML file"),
    ("config is a checkpoint", ["--config", "{ckpt8}"], "not a text file"),
    ("runs dir is a file", ["--runs-dir", "{ckpt8}"], "--runs-dir="),
    ("cache dir is a file", ["--cache-dir", "{ckpt8}"], "--cache-dir="),
    ("resume of a non-run", ["--resume", "/tmp"], "--resume='/tmp'"),
    # the table's calls all pass --epochs 1: a resumed run keeps its recorded settings
    ("resume with other settings", ["--resume", "{old_run}"], "not from --epochs"),
]

# (name, YAML text of a --config file, text the error must contain)
CONFIG_FILES = [
    ("unknown key", "epochz: 3\n", "unknown setting 'epochz'"),
    ("epochs as string", "epochs: three\n", "epochs='three' must be int"),
    ("lr as string", "lr: fast\n", "lr='fast' must be int or float"),
    ("bool as int", "epochs: true\n", "epochs=True must be int"),
    ("params not a mapping", "method_params: [1, 2]\n", "method_params=[1, 2] must be dict"),
    ("not a mapping", "- epochs: 3\n", "expected a mapping"),
    ("broken YAML", "epochs: [1, 2\n", "not valid YAML"),
    ("infinite weight decay", "weight_decay: .inf\n", "--weight-decay=inf"),
    ("absurd epochs", "epochs: 99999999999999999999\n", "--epochs=99999999999999999999"),
    (
        "lambda in file",
        "method: kd\nteacher: resnet8\nmethod_params: {lambda: 2}\n",
        "0 <= lambda <= 1",
    ),
]

# (name, YAML text of a sweep file (runs_dir etc. appended to base), text the error must contain)
SWEEPS = [
    ("unknown top key", "name: s\ngrids: {seed: [0]}\n", "unknown key 'grids'"),
    ("no name", "grid: {seed: [0]}\n", "name must be"),
    ("grid value not a list", "name: s\ngrid: {seed: 0}\n", "grid.seed must be a non-empty list"),
    ("empty grid list", "name: s\ngrid: {seed: []}\n", "grid.seed must be a non-empty list"),
    ("unknown method in grid", "name: s\ngrid: {method: [nokd, kdd]}\n", "unknown method 'kdd'"),
    ("bad field in grid", "name: s\ngrid: {epoch: [1]}\n", "unknown setting 'epoch'"),
    ("negative epochs in grid", "name: s\ngrid: {epochs: [1, -1]}\n", "--epochs=-1"),
    (
        "bad type in base",
        "name: s\nbase: {seed: zero}\ngrid: {epochs: [1]}\n",
        "seed='zero' must be int",
    ),
    ("base not a mapping", "name: s\nbase: [1]\ngrid: {epochs: [1]}\n", "base must be"),
    (
        "kd pair without checkpoint file",
        "name: s\ngrid:\n  method: [kd]\n  pair:\n"
        "    - {teacher: resnet8, teacher_checkpoint: /nope.pth}\n",
        "no such file '/nope.pth'",
    ),
]


@pytest.fixture
def ckpts(tmp_path: Path) -> dict[str, str]:
    from kdlib.models import create_model, save_weights

    out = {"ckpt8": str(tmp_path / "r8.pt"), "ckpt8_100": str(tmp_path / "r8_100.pt")}
    old_run = tmp_path / "old" / "20260101-000000-nokd-resnet8-cifar10-e1-s0"
    old_run.mkdir(parents=True)
    (old_run / "config.json").write_text('{"method": "nokd", "epochs": 1}')
    out["old_run"] = str(old_run)
    save_weights(create_model("resnet8", 10), out["ckpt8"])
    save_weights(create_model("resnet8", 100), out["ckpt8_100"])
    return out


def _check(code: int, err: str, message: str, runs: Path) -> None:
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize(("name", "args", "message"), TRAIN, ids=[t[0] for t in TRAIN])
def test_bad_train_call(
    name: str,
    args: list[str],
    message: str,
    ckpts: dict,
    tiny_data: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    runs = tmp_path / "runs"
    args = [a.format(**ckpts) for a in args]
    code = main(
        [
            "train",
            "--epochs",
            "1",
            "--quiet",
            "--runs-dir",
            str(runs),
            "--data-dir",
            tiny_data["data_dir"],
            "--cache-dir",
            tiny_data["cache_dir"],
            *args,
        ]
    )
    _check(code, capsys.readouterr().err, message, runs)


@pytest.mark.parametrize(
    ("name", "text", "message"), CONFIG_FILES, ids=[t[0] for t in CONFIG_FILES]
)
def test_bad_config_file(
    name: str,
    text: str,
    message: str,
    tiny_data: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    runs = tmp_path / "runs"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = main(
        [
            "train",
            "--config",
            str(path),
            "--val-size",
            "100",
            "--quiet",
            "--runs-dir",
            str(runs),
            "--data-dir",
            tiny_data["data_dir"],
            "--cache-dir",
            tiny_data["cache_dir"],
        ]
    )
    _check(code, capsys.readouterr().err, message, runs)


@pytest.mark.parametrize(("name", "text", "message"), SWEEPS, ids=[t[0] for t in SWEEPS])
def test_bad_sweep_file(
    name: str,
    text: str,
    message: str,
    tiny_data: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    runs = tmp_path / "runs"
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    code = main(
        [
            "sweep",
            str(path),
            "--quiet",
            "--set",
            f"runs_dir={runs}",
            "--set",
            f"data_dir={tiny_data['data_dir']}",
            "--set",
            f"cache_dir={tiny_data['cache_dir']}",
            "--set",
            "epochs=1",
        ]
        if "epochs: [1, -1]" not in text
        else ["sweep", str(path), "--quiet", "--set", f"runs_dir={runs}"]
    )
    _check(code, capsys.readouterr().err, message, runs)


def test_missing_sweep_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _check(
        main(["sweep", "/nope.yaml"]),
        capsys.readouterr().err,
        "'/nope.yaml': no such file",
        tmp_path / "runs",
    )


def test_bad_data_prepare(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["data", "prepare", "--dataset", "svhn", "--cache-dir", str(tmp_path / "c")])
    _check(code, capsys.readouterr().err, "svhn", tmp_path / "runs")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet7", "--checkpoint", "{ckpt8}"], "--model='resnet7'"),
        (["--model", "resnet8", "--checkpoint", "/nope.pt"], "/nope.pt"),
        (["--model", "resnet14", "--checkpoint", "{ckpt8}"], "the model is `resnet14`"),
        (["--model", "resnet8", "--checkpoint", "{ckpt8_100}"], "100 classes"),
        (["--model", "resnet8", "--checkpoint", "{ckpt8}", "--dataset", "stl10"], "stl10"),
        (["--model", "resnet8", "--checkpoint", "{ckpt8}", "--batch-size", "0"], "--batch-size=0"),
        (["--model", "resnet8", "--checkpoint", "{ckpt8}", "--split", "dev"], "--split"),
    ],
)
def test_bad_eval_call_touches_no_data(
    args: list[str], message: str, ckpts: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    code = main(
        [
            "eval",
            *[a.format(**ckpts) for a in args],
            "--data-dir",
            str(tmp_path),
            "--cache-dir",
            str(cache),
        ]
    )
    _check(code, capsys.readouterr().err, message, tmp_path / "runs")
    assert not cache.exists()


def test_table_is_large_enough() -> None:
    assert len(TRAIN) + len(CONFIG_FILES) + len(SWEEPS) >= 40
