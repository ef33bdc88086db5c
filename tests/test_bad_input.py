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
    ("unknown dataset", ["--dataset", "mnist"], "invalid choice: 'mnist'"),
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
    ("resume of a missing folder", ["--resume", "/nope"], "--resume='/nope'"),
    ("resume of a file", ["--resume", "{ckpt8}"], "not a run directory"),
    ("absurd batch", ["--batch-size", "1000000000"], "--batch-size=1000000000: at most"),
    ("absurd lr", ["--lr", "1e10"], "--lr=10000000000.0: at most"),
    ("momentum nan", ["--momentum", "nan"], "--momentum=nan"),
    ("momentum negative", ["--momentum", "-0.5"], "--momentum=-0.5"),
    ("weight decay nan", ["--weight-decay", "nan"], "--weight-decay=nan"),
    ("weight decay above 1", ["--weight-decay", "2"], "--weight-decay=2.0"),
    ("negative train limit", ["--train-limit", "-5"], "--train-limit=-5"),
    ("zero test limit", ["--test-limit", "0"], "--test-limit=0"),
    ("negative test limit", ["--test-limit", "-1"], "--test-limit=-1"),
    ("negative checkpoint interval", ["--checkpoint-every", "-1"], "--checkpoint-every=-1"),
    ("negative workers", ["--num-workers", "-1"], "--num-workers=-1"),
    ("unknown precision", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("epochs in float notation", ["--epochs", "1e3"], "invalid int value: '1e3'"),
    ("seed in float notation", ["--seed", "1e30"], "invalid int value: '1e30'"),
    ("absurd seed", ["--seed", "99999999999999999999999"], "--seed=99999999999999999999999"),
    ("val size nan", ["--val-size", "nan"], "invalid int value: 'nan'"),
    ("flag with a value", ["--channels-last", "maybe"], "unrecognized arguments: maybe"),
    ("unknown option", ["--threads", "2"], "unrecognized arguments: --threads"),
    (
        "lambda nan",
        ["--method", "kd", "--teacher", "resnet8", "-p", "lambda=nan"],
        "lambda=nan is not a finite number",
    ),
    (
        "unknown variant",
        ["--method", "oh", "--teacher", "resnet8", "-p", "variant=bogus"],
        "variant=bogus is out of range",
    ),
    ("empty teacher list", ["--method", "kd", "--teacher", ","], "--teacher=','"),
    ("empty student", ["--student", ""], "--student=''"),
    ("empty method", ["--method", ""], "unknown method ''"),
    ("empty dataset", ["--dataset", ""], "invalid choice: ''"),
    ("empty device", ["--device", ""], "unknown device ''"),
    ("mps device", ["--device", "mps"], "unknown device 'mps'"),
    ("mkd without teachers", ["--method", "mkd"], "needs a teacher"),
]

# (name, how to make the file, text the error must contain): each is given both as
# `kdlib train --teacher-checkpoint` and as `kdlib eval --checkpoint` (a resnet8 on cifar10)
BAD_CHECKPOINTS = [
    ("a directory", "dir", "a directory, not a checkpoint file"),
    ("random bytes", "garbage", "not a readable PyTorch checkpoint"),
    ("an empty file", "empty", "the file is empty"),
    ("a plain pickle", "raw_pickle", "a plain pickle (pickle.dump)"),
    ("a truncated checkpoint", "truncated", "not a readable PyTorch checkpoint"),
    ("a YAML file", "yaml", "not a readable PyTorch checkpoint"),
    ("a state dict missing a key", "missing_key", "missing keys (1)"),
    ("a list of numbers", "list", "holds no state dict"),
    ("a pickle of a function", "evil", "refusing to load"),
    ("another architecture", "resnet14", "does not fit"),
    ("another class count", "classes100", "100 classes"),
    ("non-tensor entries", "mixed", "not a plain state dict"),
    ("a zip that is not torch's", "zip", "not a readable PyTorch checkpoint"),
]

# (name, YAML text of a --config file, text the error must contain)
CONFIG_FILES = [
    ("empty file", "", "expected a mapping of settings"),
    ("a list", "- 1\n- 2\n", "expected a mapping of settings"),
    ("a scalar", "42\n", "expected a mapping of settings"),
    ("epochs null", "epochs: null\n", "epochs=None must be int"),
    ("method a number", "method: 3\n", "method=3 must be str"),
    ("student a list", "student: [resnet8]\n", "student=['resnet8'] must be str"),
    ("lr nan", "lr: .nan\n", "--lr=nan"),
    ("negative seed", "seed: -1\n", "--seed=-1"),
    ("batch size a float", "batch_size: 1.5\n", "batch_size=1.5 must be int"),
    (
        "unknown variant",
        "method: sfd\nteacher: resnet8\nmethod_params: {variant: x}\n",
        "variant=x",
    ),
    ("tab indentation", "epochs: 1\n\tlr: 2\n", "not valid YAML (line 2)"),
    ("duplicate document", "epochs: 1\n---\nepochs: 2\n", "not valid YAML"),
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
    ("empty file", "", "expected a mapping with keys name, base, grid"),
    ("a list", "- name: s\n", "expected a mapping with keys name, base, grid"),
    ("name not a string", "name: [1]\ngrid: {seed: [0]}\n", "name must be"),
    ("empty name", "name: ''\ngrid: {seed: [0]}\n", "name must be"),
    ("name with a slash", "name: a/b\ngrid: {seed: [0]}\n", "may hold only letters"),
    ("grid not a mapping", "name: s\ngrid: [1]\n", "grid must be a mapping"),
    ("pair not a list", "name: s\ngrid: {pair: 3}\n", "grid.pair must be a non-empty list"),
    ("pair entry not a mapping", "name: s\ngrid: {pair: [3]}\n", "must list mappings"),
    ("seed a string", "name: s\ngrid: {seed: [a]}\n", "seed='a' must be int"),
    ("lr inf in grid", "name: s\ngrid: {lr: [.inf]}\n", "--lr=inf"),
    (
        "method params in grid",
        "name: s\ngrid: {method: [kd], teacher: [resnet8], method_params: [{T: 0}]}\n",
        "T=0 is out of range",
    ),
    ("skip_invalid not a bool", "name: s\nskip_invalid: 3\ngrid: {seed: [0]}\n", "true or"),
    ("tab indentation", "name: s\n\tgrid: x\n", "not valid YAML (line 2)"),
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


def _bad_checkpoint(kind: str, folder: Path) -> Path:
    """Write one malformed checkpoint file of ``kind`` and return its path."""
    import os
    import pickle
    import zipfile

    import torch

    from kdlib.models import create_model

    path = folder / f"bad-{kind}.pt"
    good = create_model("resnet8", 10).state_dict()
    if kind == "dir":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "raw_pickle":
        path.write_bytes(pickle.dumps({"conv1.weight": [1.0, 2.0]}, protocol=4))
    elif kind == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "yaml":
        path.write_text("epochs: 1\n")
    elif kind == "missing_key":
        good.pop(next(iter(good)))
        torch.save(good, path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "evil":
        torch.save({"conv1.weight": os.system}, path)
    elif kind == "resnet14":
        torch.save(create_model("resnet14", 10).state_dict(), path)
    elif kind == "classes100":
        torch.save(create_model("resnet8", 100).state_dict(), path)
    elif kind == "mixed":
        torch.save({**good, "epoch": 3}, path)
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    else:
        raise AssertionError(kind)
    return path


def _check(code: int, err: str, message: str, runs: Path) -> None:
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize(
    ("name", "kind", "message"), BAD_CHECKPOINTS, ids=[t[0] for t in BAD_CHECKPOINTS]
)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_bad_checkpoint_file(
    command: str,
    name: str,
    kind: str,
    message: str,
    tiny_data: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    runs = tmp_path / "runs"
    path = str(_bad_checkpoint(kind, tmp_path))
    where = ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"]]
    if command == "train":
        argv = ["train", "--method", "kd", "--teacher", "resnet8", "--teacher-checkpoint", path]
        argv += ["--epochs", "1", "--val-size", "100", "--quiet", "--runs-dir", str(runs)]
    else:
        argv = ["eval", "--model", "resnet8", "--checkpoint", path]
    _check(main([*argv, *where]), capsys.readouterr().err, message, runs)


# (name, arguments after `kdlib sweep <file> --quiet --dry-run`, text the error must contain)
SWEEP_CALLS = [
    ("set without value", ["--set", "epochs"], "expected KEY=VALUE"),
    ("set of an unknown setting", ["--set", "nope=1"], "unknown setting 'nope'"),
    ("set of a bad type", ["--set", "epochs=x"], "epochs='x' must be int"),
    ("set of a list", ["--set", "epochs=[1,2]"], "epochs=[1, 2] must be int"),
    ("set of inf epochs", ["--set", "epochs=inf"], "epochs='inf' must be int"),
    ("set of inf lr", ["--set", "lr=.inf"], "--lr=inf"),
    ("zero parallel", ["--parallel", "0"], "--parallel=0"),
    ("negative parallel", ["--parallel", "-1"], "--parallel=-1"),
    ("parallel not a number", ["--parallel", "abc"], "invalid int value: 'abc'"),
    ("zero threads", ["--threads", "0"], "--threads=0"),
    ("unknown way to run", ["--via", "magic"], "invalid choice: 'magic'"),
]


@pytest.mark.parametrize(("name", "args", "message"), SWEEP_CALLS, ids=[t[0] for t in SWEEP_CALLS])
def test_bad_sweep_call(
    name: str,
    args: list[str],
    message: str,
    tiny_data: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    runs = tmp_path / "runs"
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\nbase: {{epochs: 1, data_dir: {tiny_data['data_dir']}, cache_dir: "
        f"{tiny_data['cache_dir']}, runs_dir: {runs}}}\ngrid: {{seed: [0]}}\n"
    )
    code = main(["sweep", str(path), "--quiet", "--dry-run", *args])
    _check(code, capsys.readouterr().err, message, runs)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a directory", None, "a directory, not a YAML file"),
        ("binary data", bytes(range(256)), "not a text file (binary data)"),
        ("a checkpoint", "ckpt", "not a text file (binary data)"),
    ],
)
def test_sweep_file_that_is_no_yaml(
    name: str, content, message: str, ckpts: dict, tmp_path: Path, capsys
) -> None:
    if content is None:
        path = tmp_path / "dir.yaml"
        path.mkdir()
    elif content == "ckpt":
        path = Path(ckpts["ckpt8"])
    else:
        path = tmp_path / "bin.yaml"
        path.write_bytes(content)
    _check(main(["sweep", str(path)]), capsys.readouterr().err, message, tmp_path / "runs")


def test_runs_of_a_missing_folder_or_a_file(ckpts: dict, tmp_path: Path, capsys) -> None:
    _check(
        main(["runs", str(tmp_path / "nope")]),
        capsys.readouterr().err,
        "does not exist",
        tmp_path / "r",
    )
    _check(
        main(["runs", ckpts["ckpt8"]]),
        capsys.readouterr().err,
        "is a file, not a runs",
        tmp_path / "r",
    )


def _garbage_archives(folder: Path) -> Path:
    import gzip

    folder.mkdir()
    (folder / "cifar10-part1.tar.gz").write_bytes(bytes(range(256)) * 2)
    (folder / "cifar10-part2.tar.gz").write_bytes(gzip.compress(b"not a tar" * 100))
    return folder


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("unknown dataset", ["--dataset", "svhn"], "svhn"),
        ("dataset as a positional", ["cifar10"], "unrecognized arguments: cifar10"),
        ("data dir missing", ["--data-dir", "{tmp}/nope"], "which does not exist"),
        ("data dir empty", ["--data-dir", "{tmp}"], "not found in data folder"),
        ("data dir a file", ["--data-dir", "{ckpt8}"], "not found in data folder"),
        ("garbage archives", ["--data-dir", "{garbage}"], "not a gzip file"),
        ("cache dir a file", ["--data-dir", "{data}", "--cache-dir", "{ckpt8}"], "is a file"),
        (
            "cache dir inside a file",
            ["--data-dir", "{data}", "--cache-dir", "{ckpt8}/c"],
            "is a file, not a folder",
        ),
    ],
)
def test_bad_data_prepare_call(
    name: str, argv: list[str], message: str, ckpts: dict, tiny_data: dict, tmp_path: Path, capsys
) -> None:
    fill = {
        "tmp": str(tmp_path),
        "ckpt8": ckpts["ckpt8"],
        "data": tiny_data["data_dir"],
        "garbage": str(_garbage_archives(tmp_path / "gz")) if "{garbage}" in argv else "",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(**fill) for a in argv]
    if "--cache-dir" not in args:
        args += ["--cache-dir", str(tmp_path / "cache")]
    if "--dataset" not in args and "cifar10" not in args:
        args += ["--dataset", "cifar10"]
    _check(main(["data", "prepare", *args]), capsys.readouterr().err, message, tmp_path / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no cache left behind


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
    # The issue asked for at least 150 malformed inputs across every entry point.
    calls = len(TRAIN) + len(CONFIG_FILES) + len(SWEEPS) + len(SWEEP_CALLS)
    calls += 2 * len(BAD_CHECKPOINTS) + 3 + 2 + 8 + 7 + 2  # no-yaml, runs, prepare, eval, +2
    assert calls >= 150, calls
