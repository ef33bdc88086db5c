"""Sweeps: expansion, the shipped paper sweep files, executors (local, submitit's local
executor), running via the papermill notebook, interruption and failure handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kdlib.cli import _duration, main
from kdlib.locks import run_lock
from kdlib.runs import RunRecord, load_runs
from kdlib.sweep import Sweep, load_sweep, run_sweep, run_sweep_parallel, seconds_left

REPO = Path(__file__).resolve().parents[1]

TWO_RUNS = """
name: two
base: {{method: nokd, student: resnet8, batch_size: 50, val_size: 100, device: cpu,
        checkpoint_every: 1, runs_dir: {runs}, data_dir: {data_dir}, cache_dir: {cache_dir}}}
grid:
  epochs: [{first}, {second}]
"""


def _sweep_file(tmp_path: Path, tiny_data: dict, first: int = 1, second: int = 2) -> Path:
    path = tmp_path / "two.yaml"
    path.write_text(
        TWO_RUNS.format(runs=tmp_path / "runs", first=first, second=second, **tiny_data)
    )
    return path


def _kdlib(*args: str, fault: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "KDLIB_FAULT": fault, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kdlib", *args], capture_output=True, text=True, env=env
    )


def _statuses(out: str) -> list[str]:
    return [line.split()[0] for line in out.strip().splitlines()[1:]]


@pytest.mark.parametrize(
    "name", ["paper_table3", "paper_table4", "paper_table2", "kdparam", "generalization"]
)
def test_shipped_sweep_files_expand(name: str, reference_checkpoints: Path) -> None:
    sweep = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    configs = sweep.expand({"data_dir": str(reference_checkpoints.parent)})
    assert len({c.seed for c in configs}) == 3
    methods = {c.method for c in configs}
    if name == "paper_table3":
        assert methods == {
            "nokd",
            "kd",
            "takd",
            "uda",
            "mkd",
            "rkd",
            "sfd",
            "oh",
            "pkd",
            "ab",
            "triplet",
        }
        # 12 seed-variant or plain rows, 7 original variants (uda, oh, sfd, rkd, pkd, ab,
        # triplet) and MKD from three released teachers: 19 rows, 3 seeds
        assert len(configs) == 57 and {c.epochs for c in configs} == {200}
        variants = {(c.method, c.method_params.get("variant")) for c in configs}
        for m in ("uda", "rkd", "sfd", "oh", "pkd", "ab", "triplet"):
            assert {(m, "seed"), (m, None)} <= variants, m
        assert all(c.val_size == 0 for c in configs)  # all 50,000 images, as the paper
    if name == "paper_table4":
        assert methods == {"uda", "takd", "kd", "uda_nokd", "nokd"}
        assert {c.epochs for c in configs} == {350}
    if name == "paper_table2":
        assert {c.teacher for c in configs} == {
            "resnet8",
            "resnet20",
            "resnet26",
            "resnet18_seed",
            "wrn10_1",
            "wrn16_4",
        }
    if name == "generalization":
        assert {(c.teacher, c.student) for c in configs if c.teacher} >= {
            ("resnet26", "resnet8"),
            ("resnet56", "resnet20"),
            ("wrn16_4", "wrn16_1"),
            ("resnet18", "resnet8"),
        }
        assert {c.dataset for c in configs} == {"cifar10", "cifar100"}
        assert sweep.skipped  # feature methods that cannot bridge two architectures


def test_methods_without_teacher_drop_the_pair_teacher() -> None:
    sweep = Sweep.from_dict(
        {
            "name": "s",
            "grid": {
                "pair": [
                    {"teacher": "resnet14", "student": "resnet8"},
                    {"teacher": "resnet20", "student": "resnet8"},
                ],
                "method": ["nokd", "kd"],
            },
        }
    )
    configs = sweep.expand({"epochs": 1})
    assert sorted((c.method, c.teacher) for c in configs) == [
        ("kd", "resnet14"),
        ("kd", "resnet20"),
        ("nokd", None),
    ]


def test_local_sweep_interrupted_then_rerun_does_only_the_missing_run(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _sweep_file(tmp_path, tiny_data)
    killed = _kdlib("sweep", str(path), "--quiet", fault="epoch-end:2")
    assert killed.returncode == -signal.SIGKILL
    df = load_runs(tmp_path / "runs").sort_values("epochs")
    assert list(df["status"]) == ["completed", "running"]
    # --dry-run says where each run stands: the killed one's process is gone
    first, second, total = _dry_run(path, capsys)
    acc = df["final_test_acc"].iloc[0]
    assert first.split()[-4:] == ["completed", "1/1", f"{acc:.2f}%", df["path"].iloc[0]]
    last = df["final_test_acc"].iloc[1]  # epoch 2 was recorded, its checkpoint never written
    # it resumes from the epoch-1 checkpoint, so one epoch is left to train
    want = f"interrupted 2/2 last epoch {last:.2f}% resumes at epoch 1 about 1 min left at its pace"
    assert second.split()[-17:] == [*want.split(), df["path"].iloc[1]]
    killed = RunRecord(df["path"].iloc[1])
    with run_lock(tmp_path / "runs", killed.config()["config_hash"]):  # as if training it
        assert _dry_run(path, capsys)[1].split()[-6:-4] == ["running", "2/2"]
        killed.write_metrics({**killed.metrics(), "epochs_completed": 1})  # at epoch 1
        assert "running      1/2  last epoch" in (line := _dry_run(path, capsys)[1])
        assert "about 1 min left at its pace" in line  # a tiny run's epoch takes seconds
    killed.write_metrics({**killed.metrics(), "epochs_completed": 2})
    assert _dry_run(path, capsys, "--set", "seed=5")[-1] == "2 runs: 2 not started"
    # runs of a device this machine lacks are still looked up (made elsewhere): no error
    assert _dry_run(path, capsys, "--set", "device=cuda")[-1] == "2 runs: 2 not started"
    unprepared = _dry_run(path, capsys, "--set", f"cache_dir={tmp_path / 'empty'}")
    assert unprepared[0] == "nokd resnet8 cifar10 e1 s0"
    assert unprepared[-1].startswith("state unknown: cifar10 has no prepared cache in ")
    assert "`kdlib data prepare --dataset cifar10 --data-dir " in unprepared[-1]
    again = _kdlib("sweep", str(path), "--quiet")
    assert again.returncode == 0, again.stderr
    assert _statuses(again.stdout) == ["done", "completed"]  # "done before", then the rest
    df = load_runs(tmp_path / "runs").sort_values("epochs")
    assert list(df["status"]) == ["completed", "completed"] and len(df) == 2
    assert json.loads(df["resumed_at_epochs"].iloc[1]) == [1]
    (machine,) = json.loads(df["resumed_on"].iloc[1])  # where it continued, for its cost
    assert machine["device"] == "cpu" and machine["torch_threads"] >= 1
    assert machine["cpu_name"] == df["env.cpu.cpu_name"].iloc[1]
    assert 0 < machine["from_wall_seconds"] < df["wall_seconds"].iloc[1]  # its epoch 1
    assert _dry_run(path, capsys)[-1] == "2 runs: 2 completed"


def _dry_run(path: Path, capsys: pytest.CaptureFixture, *args: str) -> list[str]:
    """The lines of `kdlib sweep PATH --dry-run ARGS` (in this process: it trains nothing)."""
    capsys.readouterr()
    assert main(["sweep", str(path), "--dry-run", *args]) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_submitit_local_executor_interrupted_then_rerun(tiny_data: dict, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    path = _sweep_file(tmp_path, tiny_data)
    jobs = str(tmp_path / "jobs")
    first = _kdlib(
        "sweep",
        str(path),
        "--quiet",
        "--executor",
        "submitit-local",
        "--jobs-dir",
        jobs,
        fault="epoch-end:2",
    )
    assert first.returncode == 1, first.stderr  # a run failed: the sweep says so
    assert "1 of 2 runs failed" in first.stderr
    assert _statuses(first.stdout) == ["completed", "failed"]  # the second job was killed
    again = _kdlib(
        "sweep", str(path), "--quiet", "--executor", "submitit-local", "--jobs-dir", jobs
    )
    assert again.returncode == 0, again.stderr
    assert _statuses(again.stdout) == ["done", "completed"]
    assert set(load_runs(tmp_path / "runs")["status"]) == {"completed"}


@pytest.mark.slow
def test_sweep_via_notebook_keeps_the_executed_notebook(tiny_data: dict, tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    path = _sweep_file(tmp_path, tiny_data, first=1, second=1)
    table = run_sweep(load_sweep(path), progress=False, via="notebook")
    assert list(table["status"]) == ["completed"]
    run_dir = Path(table["run_dir"].iloc[0])
    kept = run_dir / "run.ipynb"
    nb = json.loads(kept.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any(f"RUN_DIR={run_dir}" in "".join(o.get("text", "")) for o in outputs)
    before = (kept.read_bytes(), kept.stat().st_mtime_ns)

    # Run again: the completed run is reused, and keeps the notebook that trained it.
    again = run_sweep(load_sweep(path), progress=False, via="notebook")
    assert list(again["status"]) == ["done before"]
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before

    # Another process is training the run (it holds the lock, the record says running):
    # the kernel's RunLocked comes back as such, "running elsewhere", not as a failure,
    # and nothing is marked or overwritten. (A completed run is found without the lock.)
    rec = RunRecord(run_dir)
    rec.write_metrics({**rec.metrics(), "status": "running"})
    with run_lock(tmp_path / "runs", rec.config()["config_hash"]):
        locked = run_sweep(load_sweep(path), progress=False, via="notebook")
    assert list(locked["status"]) == ["running elsewhere"]
    assert rec.metrics()["status"] == "running"
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before


def test_parallel_summary_prefers_what_happened_over_what_a_worker_saw(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Two workers' summaries of the same three runs, in the order the workers finish.
    tables = [
        [{"status": "failed"}, {"status": "running elsewhere"}, {"status": "running elsewhere"}],
        [{"status": "completed"}, {"status": "done before"}, {"status": "failed"}],
    ]

    class Worker:  # stands in for a `kdlib sweep --summary-json OUT` subprocess
        def __init__(self, cmd: list[str], **_: object) -> None:
            out = Path(cmd[cmd.index("--summary-json") + 1])
            out.write_text(json.dumps(tables.pop(0)))

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Worker)
    table = run_sweep_parallel(tmp_path / "s.yaml", [], 2, progress=False)
    assert list(table["status"]) == ["completed", "done before", "failed"]


def test_papermill_failure_marks_the_run_failed_and_the_sweep_goes_on(
    tiny_data: dict, tmp_path: Path
) -> None:
    pytest.importorskip("papermill")
    path = _sweep_file(tmp_path, tiny_data, first=2, second=1)
    out = _kdlib("sweep", str(path), "--quiet", "--via", "notebook", fault="raise:epoch-end:2")
    assert out.returncode == 1, out.stderr  # the sweep went on, and says a run failed
    assert _statuses(out.stdout) == ["failed", "completed"]
    df = load_runs(tmp_path / "runs").set_index("epochs")
    assert df.loc[2, "status"] == "failed"
    assert "fault injected at epoch-end:2" in df.loc[2, "error"]
    assert df.loc[1, "status"] == "completed"
    assert (Path(df.loc[2, "path"]) / "run.ipynb").exists()  # the failed notebook is kept


# ----------------------------------------------------- plans in sweeps (teachers first)

TEACHER_FIRST = """
name: teacher_first
base: {{method: kd, student: resnet8, teacher: resnet8, teacher_epochs: 1, epochs: 1,
        batch_size: 50, val_size: 100, device: cpu, runs_dir: {runs},
        data_dir: {data_dir}, cache_dir: {cache_dir}}}
grid:
  seed: [0]
"""


def _teacher_first(tmp_path: Path, tiny_data: dict) -> Path:
    path = tmp_path / "teacher_first.yaml"
    path.write_text(TEACHER_FIRST.format(runs=tmp_path / "runs", **tiny_data))
    return path


@pytest.mark.slow
def test_a_diverged_teacher_leaves_its_student_not_started(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from kdlib.cli import main
    from kdlib.methods.nokd import NoKD

    def nan_forward(self, images, labels):
        logits = self.student(images)
        return logits, {"ce": logits.sum() * float("nan")}

    monkeypatch.setattr(NoKD, "forward", nan_forward)  # the teacher (nokd) diverges
    path = _teacher_first(tmp_path, tiny_data)
    assert main(["sweep", str(path), "--quiet"]) == 1  # the asked-for run did not happen
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["diverged", "teacher"], ["not", "started"]]
    assert "its teacher run diverged" in out and "1 of 2 runs failed" in err
    # no run directory for the student: it was refused before one was made
    assert [d.name.split("-")[2] for d in (tmp_path / "runs").iterdir() if d.is_dir()
            and not d.name.startswith(".")] == ["nokd"]  # fmt: skip


@pytest.mark.slow
def test_a_finished_run_does_not_retrain_a_teacher_whose_record_is_gone(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    path = _teacher_first(tmp_path, tiny_data)
    first = run_sweep(load_sweep(path), progress=False)
    assert list(first["role"]) == ["teacher", "run"]
    assert list(first["status"]) == ["completed", "completed"]
    shutil.rmtree(first["run_dir"].iloc[0])  # the teacher's record is gone
    teacher, run, total = _dry_run(path, capsys)  # and the listing says so, as the sweep
    assert teacher.split()[-3:] == ["not", "needed", "0/1"] and run.split()[-4] == "completed"
    assert total == "2 runs: 1 not needed, 1 completed"
    again = run_sweep(load_sweep(path), progress=False)
    assert list(again["status"]) == ["not needed", "done before"]
    assert len([d for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")]) == 1


def test_a_notebook_that_dies_gives_rows_not_an_exception(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead kernel (no KdlibError) is a failure of this request, not of the sweep; a
    record this execution never touched (a stale 'running' one) is not marked."""
    import kdlib.sweep
    from kdlib.claim import identify

    sweep = load_sweep(_sweep_file(tmp_path, tiny_data, first=1, second=1))
    (cfg,) = sweep.expand()
    stale = RunRecord.create(
        tmp_path / "runs", "stale", identify(cfg).config, {"note": "a killed earlier sweep"}
    )

    def dead_kernel(*args, **kwargs):
        raise RuntimeError("Kernel died before replying to execute request")

    monkeypatch.setattr(kdlib.sweep, "execute_notebook", dead_kernel)
    (row,) = kdlib.sweep.run_one(cfg, via="notebook")
    assert row["status"] == "not started" and "Kernel died" in row["error"]
    assert stale.metrics()["status"] == "running"  # untouched
    assert not (stale.path / "run.ipynb").exists()


def test_absolute_paths_split_only_the_teacher_lists(tmp_path: Path) -> None:
    from kdlib.config import TrainConfig
    from kdlib.sweep import _absolute

    cfg = _absolute(
        TrainConfig(runs_dir="runs,v2", teacher="resnet8,resnet14", teacher_checkpoint="a.pt,")
    )
    assert cfg.runs_dir == str(Path("runs,v2").absolute())
    assert cfg.teacher_checkpoint == f"{Path('a.pt').absolute()},"
    assert cfg.teacher == "resnet8,resnet14"  # a list of models, not of paths


def test_seconds_left_is_the_recent_pace_times_the_epochs_left() -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "seconds": [900.0, 100.0, 110.0, 120.0],  # epoch 1 shared the machine
            "eval_seconds": [10.0, 10.0, 20.0, float("nan")],
        }
    )
    # the last three epochs took 110, 130 and 120 s: 120 s each, 6 epochs left
    assert seconds_left(history, 4, 10) == pytest.approx(720.0)
    # an epoch the process spent stopped (SIGSTOP, a suspended laptop) sets no pace
    paused = history.assign(seconds=[100.0, 100.0, 3600.0, 110.0])  # 110, 3620, 110 s
    assert seconds_left(paused, 4, 10) == pytest.approx(6 * 110.0)
    assert seconds_left(history, 10, 10) is None  # nothing left
    assert seconds_left(pd.DataFrame(), 0, 10) is None  # no epoch timed yet
    assert seconds_left(history.drop(columns="eval_seconds"), 4, 5) == pytest.approx(110.0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(20.0, "1 min"), (2820.0, "47 min"), (5400.0, "1.5 h"), (8280.0, "2.3 h")],
)
def test_time_left_is_shown_in_minutes_then_hours(seconds: float, shown: str) -> None:
    assert _duration(seconds) == shown
