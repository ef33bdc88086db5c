"""The notebooks: kept clean, parameterised, and they run (papermill, kernel ``python3``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
import torch

from kdlib import notebooks
from kdlib.errors import KdlibError
from kdlib.notebooks import FIGURES, execute_notebook, expected_files, render_all
from kdlib.runs import RunRecord

pytestmark = pytest.mark.slow  # notebooks executed by papermill in a kernel

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
FIXTURE = REPO / "tests" / "fixtures" / "runs"


@pytest.fixture(autouse=True)
def _test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels inherit the environment: give their torch the threads this test process has
    (conftest: two, or one per pytest-xdist worker)."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.setenv("MKL_NUM_THREADS", str(torch.get_num_threads()))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "strip outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    if path.name in FIGURES:
        assert re.search(r"^runs_dir = ", tagged[0].source, re.M)
        assert re.search(r"^figures_dir = ", tagged[0].source, re.M)


def test_every_figure_notebook_exists() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {*FIGURES, "run.ipynb"}


def test_figure_notebooks_render_the_fixture_runs(tmp_path: Path) -> None:
    figures_dir = tmp_path / "figures"
    written = render_all(FIXTURE, figures_dir, NOTEBOOKS, executed_dir=tmp_path / "executed")
    assert written == expected_files(figures_dir)
    # what each figure shows (SVG text stays text): the fixture's data, not just a file
    svg = {p.stem: p.read_text() for p in written if p.suffix == ".svg"}
    # the fixture has no 15-epoch runs: that figure says so (and needs no watermark);
    # every other one shows fixture runs and is watermarked as such
    empty = {"training_curves_15_epochs"}
    for stem, text in svg.items():
        if stem in empty:
            assert "no completed runs" in text and "[SYNTHETIC FIXTURE DATA]" not in text
        else:
            assert "[SYNTHETIC FIXTURE DATA]" in text, stem
    shows = {
        "reproducibility_table2": ["Table 2: KD", "WRN16-4", "ours 93.42"],
        "reproducibility_table3": ["Table 3: methods", "TAKD", "PKD"],
        "reproducibility_table4": ["Table 4: methods", "UDA-NOKD"],
        "gains": ["Gain over NOKD", "OH (seed code)", "OH (original)"],
        "generalization": ["ResNet26 (trained)→ResNet8", "+1.39"],
        "kd_params": ["best T=5, lambda=0.5"],
        "training_curves": ["Training curves, 200 epochs", "TAKD"],
        "training_curves_15_epochs": ["Training curves, 15 epochs", "no completed runs"],
    }
    assert set(shows) == set(svg)
    for stem, labels in shows.items():
        for label in labels:
            assert label in svg[stem], (stem, label)
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    index = (figures_dir / "README.md").read_text()
    for stems in FIGURES.values():
        for stem in stems:
            assert f"**{stem}**" in index and f"]({stem}.svg)" in index
    assert "(61 completed runs)" in index
    summary = (figures_dir / "reproducibility_summary.md").read_text()
    assert "| TAKD | ResNet26 → ResNet8 | 200 | – | 2 |" in summary
    assert "| KD | ResNet26 → ResNet8 | 200 | – | 2 | 90.47 ± 0.11 |" in summary  # Table 3's
    assert "| KD | ResNet26 → ResNet8 | 200 | – | 2 | 90.23 ± 0.38 |" in summary  # Table 2's
    assert "SYNTHETIC FIXTURE DATA" in summary
    executed = nbformat.read(tmp_path / "executed" / "generalization.ipynb", as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert any("image/png" in o["data"] for o in images)


def test_render_all_does_not_take_figures_left_from_an_earlier_render(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    figures_dir = tmp_path / "figures"
    figures_dir.mkdir()
    for path in expected_files(figures_dir):  # an earlier render's files, all present
        path.write_text("old")
        os.utime(path, (1_600_000_000, 1_600_000_000))
    fresh = expected_files(figures_dir)[0]

    def execute(notebook: Path, output: Path, *args: object, **kwargs: object) -> Path:
        fresh.write_text("new")  # this render writes one file only
        return output

    monkeypatch.setattr(notebooks, "execute_notebook", execute)
    with pytest.raises(KdlibError, match="did not write") as e:
        render_all(tmp_path / "runs", figures_dir, NOTEBOOKS)
    assert str(fresh) not in str(e.value)
    assert all(str(p) in str(e.value) for p in expected_files(figures_dir)[1:])


def test_figure_notebooks_render_before_any_run(tmp_path: Path) -> None:
    figures_dir = tmp_path / "figures"
    render_all(tmp_path / "no-runs-yet", figures_dir, NOTEBOOKS)
    index = (figures_dir / "README.md").read_text()
    assert "(0 completed runs)" in index


def test_run_notebook_trains_one_run(tiny_data: dict[str, str], tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    params = {
        "method": "nokd",
        "dataset": "cifar10",
        "teacher": None,
        "student": "resnet8",
        "teacher_checkpoint": None,
        "epochs": 1,
        "seed": 3,
        "train_limit": 100,  # one batch: the notebook is under test, not training
        "val_size": 100,
        "device": "cpu",
        "runs_dir": str(runs_dir),
        "data_dir": tiny_data["data_dir"],
        "cache_dir": tiny_data["cache_dir"],
        "method_params": {},
        "progress": False,
    }
    out = execute_notebook(NOTEBOOKS / "run.ipynb", tmp_path / "run.ipynb", params)
    nb = nbformat.read(out, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    run_dirs = re.findall(r"^RUN_DIR=(.+)$", text, re.M)
    assert len(run_dirs) == 1
    run_dir = Path(run_dirs[0])
    assert run_dir.parent == runs_dir.resolve()
    rec = RunRecord(run_dir)
    metrics, config = rec.metrics(), rec.config()
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    assert 0.0 <= metrics["final_test_acc"] <= 100.0
    assert (config["method"], config["student"], config["epochs"]) == ("nokd", "resnet8", 1)
    assert (config["seed"], config["val_size_actual"], config["teacher"]) == (3, 100, None)
    assert list(rec.history()["epoch"]) == [1]
    # the curves cell drew a figure of the run
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert any("image/png" in o["data"] for o in images)
