"""The figures package as the notebooks use it: the names they call, every figure drawn
from the fixture, and modules small enough to read (no file over 400 lines)."""

from __future__ import annotations

import re
from pathlib import Path

import kdlib.figures
from kdlib import figures
from tests.figures.helpers import texts

REPO = Path(__file__).resolve().parents[2]


def test_every_name_the_notebooks_call_is_there() -> None:
    called = set()
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        called |= set(re.findall(r"figures\.(\w+)\(", notebook.read_text()))
    assert {"runs_table", "save_figure", "gains_figure", "run_curves_figure"} <= called
    assert not [name for name in called if not hasattr(figures, name)]
    assert set(figures.__all__) == {n for n in dir(figures) if not n.startswith("_")} - {
        "compute",
        "curves",
        "gains",
        "generalization",
        "kd_params",
        "markdown",
        "reproducibility",
        "saving",
        "selection",
        "style",
        "tables",
    }


def test_no_module_of_the_package_is_over_400_lines() -> None:
    package = Path(kdlib.figures.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert len(sizes) >= 8 and max(sizes.values()) <= 400, sizes


def test_every_figure_renders_the_fixture_runs(runs, tmp_path: Path) -> None:
    sel = figures.select_runs(runs, student="resnet8", teacher="resnet26", epochs=200)
    figs = {
        **figures.reproducibility_figures(runs),
        "gains": figures.gains_figure(runs),
        "generalization": figures.generalization_figure(runs),
        "kd_params": figures.kd_params_figure(runs),
        "training_curves": figures.training_curves_figure(sel),
        "run_curves": figures.run_curves_figure(sel["path"].iloc[:2]),
    }
    for name, fig in figs.items():
        if name != "run_curves":  # a run's own curves: whatever it is, no watermark
            assert "[SYNTHETIC FIXTURE DATA]" in texts(fig), name
        (path,) = figures.save_figure(fig, tmp_path, name, formats=("png",))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
