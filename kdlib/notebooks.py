"""Render the study: execute the figure notebooks with papermill and index their figures.

    python -m kdlib.notebooks [--runs-dir runs] [--figures-dir figures] [--notebooks-dir notebooks]

The notebooks in ``notebooks/`` are kept without outputs and only call kdlib; this module
runs each of them on a runs folder (papermill injects ``runs_dir`` and ``figures_dir``
after the cell tagged ``parameters``), checks that every figure it promises was written,
and writes ``figures/README.md``, an index of the figures with one sentence each.
The executed notebooks are thrown away unless ``executed_dir`` is given.

Needs papermill and a Jupyter kernel named ``python3`` (ipykernel installed in the same
environment provides it). The kernel imports the same kdlib as the caller: its source
folder is put first on the kernel's ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from kdlib.errors import KdlibError
from kdlib.figures import completed, runs_table
from kdlib.io import write_text
from kdlib.notebook_exec import execute_notebook

# Each figure notebook and the figures (file stems) it writes, with what each one shows.
FIGURES: dict[str, dict[str, str]] = {
    "reproducibility.ipynb": {
        "reproducibility_table2": (
            "KD into ResNet8 from each of the paper's Table 2 teachers: our accuracy over "
            "seeds (final, validation-chosen and best-test epoch) next to the paper's number."
        ),
        "reproducibility_table3": (
            "Every method of the paper's Table 3 (ResNet26 -> ResNet8, 200 epochs): our "
            "accuracy over seeds next to the paper's number."
        ),
        "reproducibility_table4": (
            "The methods of the paper's Table 4 at 350 epochs: our accuracy over seeds next "
            "to the paper's number."
        ),
        "gains": (
            "Each method's gain over nokd in Table 3's pair, per budget (15 epochs on a CPU, "
            "200 as the paper): mean and 95% Welch interval over seeds, the paper's gain "
            "beside it; seed-code and original variants as separate rows."
        ),
    },
    "generalization.ipynb": {
        "generalization": (
            "Each method's gain over training without a teacher, per teacher -> student pair, "
            "with Welch's t-test over seeds marking the significant cells."
        ),
    },
    "kd_params.ipynb": {
        "kd_params": "KD's accuracy over its temperature T x weight lambda grid, best outlined.",
    },
    "training_curves.ipynb": {
        "training_curves": (
            "Test and validation accuracy and training loss per epoch of each method in the "
            "Table 3 setting, mean +- std over seeds."
        ),
        "training_curves_15_epochs": (
            "The same at the CPU campaign's short budget of 15 epochs (not the paper's 200): "
            "every Table 3 row it ran, seed-code and original variants as separate lines."
        ),
    },
}
EXTRA_FILES = {
    "reproducibility_summary.md": (
        "Tables 2-4 as numbers: seeds, mean +- std per accuracy, the paper's number and "
        "the difference (written by reproducibility.ipynb)."
    ),
}
FORMATS = ("png", "svg")


def expected_files(figures_dir: str | Path) -> list[Path]:
    """Every file the figure notebooks must write into ``figures_dir``."""
    d = Path(figures_dir)
    stems = [stem for figs in FIGURES.values() for stem in figs]
    return [d / f"{s}.{fmt}" for s in stems for fmt in FORMATS] + [d / n for n in EXTRA_FILES]


def write_figures_index(
    figures_dir: str | Path, runs_dir: str | Path | None = None, n_completed: int | None = None
) -> Path:
    """Write ``figures_dir/README.md``: each figure (PNG, SVG) with what it shows."""
    figures_dir = Path(figures_dir)
    lines = [
        "# Figures",
        "",
        "Rendered by `python -m kdlib.notebooks` from the notebooks in `notebooks/`; "
        "do not edit by hand.",
    ]
    if runs_dir is not None:
        runs = f" ({n_completed} completed runs)" if n_completed is not None else ""
        lines.append(f"Source: the run records in `{runs_dir}`{runs}.")
    lines.append("")
    for notebook, figs in FIGURES.items():
        lines += [f"## {notebook}", ""]
        for stem, sentence in figs.items():
            links = " · ".join(
                f"[{fmt.upper()}]({stem}.{fmt})"
                for fmt in FORMATS
                if (figures_dir / f"{stem}.{fmt}").exists()
            )
            status = links or "not rendered"
            lines += [f"- **{stem}** ({status}): {sentence}", ""]
            if (figures_dir / f"{stem}.png").exists():
                lines += [f"  ![{stem}]({stem}.png)", ""]
    for name, sentence in EXTRA_FILES.items():
        if (figures_dir / name).exists():
            lines += [f"- [{name}]({name}): {sentence}", ""]
    path = figures_dir / "README.md"
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def render_all(
    runs_dir: str | Path = "runs",
    figures_dir: str | Path = "figures",
    notebooks_dir: str | Path = "notebooks",
    executed_dir: str | Path | None = None,
    kernel_name: str = "python3",
) -> list[Path]:
    """Execute every figure notebook on ``runs_dir``, then write the figures index.

    Returns the figure files written. Raises KdlibError if a notebook fails or a promised
    figure was not written by this render (missing, empty, or older than its start: a
    file left from an earlier render is not this render's figure). ``executed_dir`` keeps
    the executed notebooks (with outputs).
    """
    runs_dir, figures_dir = Path(runs_dir).absolute(), Path(figures_dir).absolute()
    notebooks_dir = Path(notebooks_dir).absolute()
    figures_dir.mkdir(parents=True, exist_ok=True)
    started = _fs_now(figures_dir)
    params = {"runs_dir": str(runs_dir), "figures_dir": str(figures_dir)}
    with contextlib.ExitStack() as stack:
        if executed_dir is None:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kdlib-nb-")))
        else:
            out_dir = Path(executed_dir)
        for notebook in FIGURES:
            execute_notebook(
                notebooks_dir / notebook, out_dir / notebook, params, kernel_name=kernel_name
            )
    expected = expected_files(figures_dir)
    missing = [
        p
        for p in expected
        if not p.is_file() or p.stat().st_size == 0 or p.stat().st_mtime_ns < started
    ]
    if missing:
        raise KdlibError(
            "figure notebooks did not write (a file left from an earlier render does not "
            f"count): {', '.join(map(str, missing))}"
        )
    n = len(completed(runs_table(runs_dir)))
    write_figures_index(figures_dir, runs_dir=_display_path(runs_dir), n_completed=n)
    return expected


def _fs_now(folder: Path) -> int:
    """The time now by the clock that stamps files in ``folder`` (st_mtime_ns of a file
    written there), so that comparing with the figures' times is exact even where that
    clock is coarse or not this machine's (a network file system)."""
    fd, name = tempfile.mkstemp(prefix=".render-started-", dir=folder)
    try:
        os.close(fd)
        return Path(name).stat().st_mtime_ns
    finally:
        os.unlink(name)


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory where possible (the index is committed)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`render_all`."""
    parser = argparse.ArgumentParser(
        prog="python -m kdlib.notebooks", description="Render every figure notebook."
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--figures-dir", default="figures")
    parser.add_argument("--notebooks-dir", default="notebooks")
    parser.add_argument("--executed-dir", default=None, help="keep the executed notebooks here")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)
    try:
        written = render_all(
            args.runs_dir, args.figures_dir, args.notebooks_dir, args.executed_dir, args.kernel
        )
    except KdlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files and {Path(args.figures_dir) / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
