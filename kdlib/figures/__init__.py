"""The study's figures: pure functions from ``load_runs`` tables (and run histories) to figures.

Every figure function takes the DataFrame of :func:`kdlib.runs.load_runs` and returns a
``matplotlib.figure.Figure`` drawn with seaborn, without pyplot, so the notebooks stay
thin and a test or a script can rebuild the same figure. An empty selection gives a
figure that says so, never an exception, so a notebook renders before the runs exist;
figures of runs marked ``synthetic_fixture`` say so in their title.

- :mod:`~kdlib.figures.selection`: which runs are pooled (one setting, one run per seed)
- :mod:`~kdlib.figures.tables`, :mod:`~kdlib.figures.markdown`: the numbers, as tables
- one module per kind of figure, and :mod:`~kdlib.figures.saving` (byte-stable files)
"""

from kdlib.figures.compute import compute_table
from kdlib.figures.curves import (
    CURVE_COLUMNS,
    curves_figure,
    load_histories,
    mean_curves,
    run_curves_figure,
    training_curves_figure,
)
from kdlib.figures.gains import gains_figure
from kdlib.figures.generalization import generalization_figure
from kdlib.figures.kd_params import kd_params_figure
from kdlib.figures.markdown import format_summary, gains_markdown, summary_markdown
from kdlib.figures.reproducibility import reproducibility_figure, reproducibility_figures
from kdlib.figures.saving import save_figure
from kdlib.figures.selection import (
    EXCLUDED_GRIDS,
    METRICS,
    TABLE_TEACHER_FROM,
    SettingsWarning,
    completed,
    runs_table,
    select_runs,
    settings,
    teacher_from,
)
from kdlib.figures.tables import (
    gain_table,
    kd_param_table,
    paper_gain,
    summary_table,
)

__all__ = [
    "CURVE_COLUMNS",
    "EXCLUDED_GRIDS",
    "METRICS",
    "TABLE_TEACHER_FROM",
    "SettingsWarning",
    "completed",
    "curves_figure",
    "format_summary",
    "compute_table",
    "gain_table",
    "gains_figure",
    "generalization_figure",
    "kd_param_table",
    "kd_params_figure",
    "load_histories",
    "mean_curves",
    "paper_gain",
    "reproducibility_figure",
    "reproducibility_figures",
    "run_curves_figure",
    "runs_table",
    "save_figure",
    "select_runs",
    "settings",
    "summary_markdown",
    "gains_markdown",
    "summary_table",
    "teacher_from",
    "training_curves_figure",
]
