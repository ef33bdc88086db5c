"""Saving (kdlib.figures.saving): atomic, and the same bytes for the same runs, in this
process or another one, so a re-render of figures/ shows in git only real changes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib import figures
from tests.figures.helpers import FIXTURE

REPO = Path(__file__).resolve().parents[2]

# A figure whose drawing depends on its layout (seaborn places swarms at draw time) and a
# heatmap with a colorbar, built from scratch in a new process each time.
RENDER = """
import sys
from kdlib import figures
runs = figures.runs_table(sys.argv[1])
figs = {
    "table3": figures.reproducibility_figure(runs, "table3"),
    "kd_params": figures.kd_params_figure(runs),
}
for name, fig in figs.items():
    figures.save_figure(fig, sys.argv[2], name)
"""


def _png_text_keys(data: bytes) -> list[str]:
    """The keywords of a PNG's text chunks (tEXt, zTXt, iTXt)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    keys, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keys.append(data[pos + 8 : pos + 8 + length].split(b"\0")[0].decode())
        pos += 12 + length
    return keys


def _render(*outs: Path) -> list[dict[str, bytes]]:
    """RENDER into each of ``outs``, in processes side by side, each with its own hash seed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RENDER, str(FIXTURE), str(out)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": str(seed)},
        )
        for seed, out in enumerate(outs, start=1)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(outs)
    return [{p.name: p.read_bytes() for p in sorted(out.iterdir())} for out in outs]


def test_rendering_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first, again = _render(tmp_path / "a", tmp_path / "b")
    assert sorted(first) == ["kd_params.png", "kd_params.svg", "table3.png", "table3.svg"]
    for name in first:
        assert first[name] == again[name], name


def test_saved_files_carry_no_date_or_software_version(runs, tmp_path: Path) -> None:
    png, svg = figures.save_figure(figures.kd_params_figure(runs), tmp_path, "kd")
    assert not {"Software", "Creation Time", "Date"} & set(_png_text_keys(png.read_bytes()))
    text = svg.read_text()
    assert "<svg" in text[:1000] and "<dc:date>" not in text and "Matplotlib v" not in text
    assert "best T=5, lambda=0.5" in text  # text stays text


def test_save_figure_is_atomic_and_leaves_the_figure_as_it_was(runs, tmp_path: Path) -> None:
    fig = figures.kd_params_figure(runs)
    first = figures.save_figure(fig, tmp_path / "a", "kd")
    again = figures.save_figure(fig, tmp_path / "b", "kd")
    assert [p.name for p in first] == ["kd.png", "kd.svg"]
    assert not list(tmp_path.rglob("*.tmp"))
    for a, b in zip(first, again, strict=True):
        import difflib

        print(
            "\n".join(
                list(
                    difflib.unified_diff(
                        a.read_text(errors="replace").splitlines(),
                        b.read_text(errors="replace").splitlines(),
                        lineterm="",
                        n=0,
                    )
                )[:12]
            )
        )
        assert a.read_bytes() == b.read_bytes()
    assert fig.get_dpi() == 100  # saving leaves the figure as it was


def test_a_save_that_fails_midway_leaves_the_old_file(runs, tmp_path: Path) -> None:
    (old,) = figures.save_figure(figures.kd_params_figure(runs), tmp_path, "kd", ("png",))
    before = old.read_bytes()
    fig = figures.kd_params_figure(runs)

    def half_written(f, **kwargs) -> None:
        f.write(b"\x89PNG half")
        raise OSError("disk full")

    fig.savefig = half_written
    with pytest.raises(OSError, match="disk full"):
        figures.save_figure(fig, tmp_path, "kd", ("png",))
    assert old.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["kd.png"]
