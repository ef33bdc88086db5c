"""Writing figures: atomically, and byte for byte the same for the same runs, so that a
re-render of ``figures/`` shows in git only where a figure really changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from kdlib.io import atomic_write

# No date, and no matplotlib version (it would change every figure on an upgrade).
_METADATA: dict[str, dict[str, Any]] = {
    "svg": {"Date": None, "Creator": None},
    "png": {"Software": None},
}
# SVG ids are hashes salted with this (else random); text stays text in the SVG.
_RC = {"svg.hashsalt": "kdlib", "svg.fonttype": "none"}


def _settle_layout(fig: Figure, max_draws: int = 5) -> None:
    """Draw until constrained layout stops moving the axes (usually one or two draws; a
    colorbar whose tick labels change width can take a second), so saving is stable."""
    before = None
    for _ in range(max_draws):
        fig.draw_without_rendering()
        now = [tuple(ax.get_position().bounds) for ax in fig.axes]
        if now == before:
            return
        before = now


def save_figure(
    fig: Figure,
    figures_dir: str | Path,
    name: str,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 150,
) -> list[Path]:
    """Write ``fig`` as ``figures_dir/name.png`` and ``.svg``, each atomically.

    A reader (or a crashed notebook) never sees a half-written figure. The layout is
    settled at the output resolution first, and SVG ids and the metadata are fixed (no
    date, no software version), so the same figure always gives the same bytes.
    """
    out = []
    old_dpi, engine = fig.get_dpi(), fig.get_layout_engine()
    try:
        with matplotlib.rc_context(_RC):
            fig.set_dpi(dpi)
            _settle_layout(fig)
            # frozen while saving: the SVG renderer measures text at 72 dpi, and a layout
            # redone there would move the axes for the next format and the next save
            fig.set_layout_engine("none")
            for fmt in formats:
                path = Path(figures_dir) / f"{name}.{fmt}"
                metadata = _METADATA.get(fmt, {})
                with atomic_write(path, "wb") as f:
                    fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
                out.append(path)
    finally:
        fig.set_layout_engine(engine)
        fig.set_dpi(old_dpi)
    return out
