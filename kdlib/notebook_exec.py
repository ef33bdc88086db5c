"""Execute a notebook with papermill, in a kernel that imports this kdlib.

Used by the figure renderer (``kdlib.notebooks``) and by sweeps that train through the
run notebook (``kdlib sweep --via notebook``). papermill is an optional dependency (the
``notebooks`` extra), so it is imported when a notebook is executed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kdlib.errors import KdlibError
from kdlib.locks import RunLocked


@contextlib.contextmanager
def _kernel_imports_this_kdlib() -> Iterator[None]:
    """Put this kdlib's source folder first on PYTHONPATH while kernels start.

    A kernel is a new process: without this it would import whatever kdlib is installed
    (or none, in a source checkout that was never pip-installed).
    """
    root = str(Path(__file__).resolve().parents[1])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def execute_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str = "python3",
    cwd: str | Path | None = None,
    timeout: int | None = None,
) -> Path:
    """Execute ``notebook`` with papermill into ``output``; a failing cell raises KdlibError
    (``RunLocked`` when the cell raised that: another process is running the run).

    ``cwd`` defaults to the notebook's folder, so its default relative paths
    (``../runs``) mean the same as when it is opened in Jupyter.
    """
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError as e:
        raise KdlibError(
            f"executing notebooks needs papermill and ipykernel ({e}); "
            "pip install papermill ipykernel"
        ) from None
    notebook, output = Path(notebook), Path(output)
    if not notebook.is_file():
        raise KdlibError(f"no such notebook {notebook}")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _kernel_imports_this_kdlib():
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=dict(parameters or {}),
                kernel_name=kernel_name,
                cwd=str(cwd if cwd is not None else notebook.parent),
                progress_bar=False,
                execution_timeout=timeout,
            )
    except PapermillExecutionError as e:
        if e.ename == "RunLocked":  # another process holds the run: not a failure
            raise RunLocked(e.evalue) from e
        raise KdlibError(
            f"{notebook.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
            f"(executed copy: {output})"
        ) from e
    return output
