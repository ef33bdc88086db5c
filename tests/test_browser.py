"""The Jupyter-first promise in a real browser: JupyterLab runs ``run.ipynb`` end to end.

JupyterLab on a free loopback port, driven by headless Debian Chromium through Playwright:
open a copy of ``notebooks/run.ipynb`` with a tiny configuration injected after its
``parameters`` cell, Run > Run All Cells, wait for the kernel, then check what a person
would see: the run's table (status ``completed``) and its curves as an image. The REST-API
test (test_jupyter_lab.py) cannot see whether anything renders; this one can.

Chromium comes from Debian (``make test`` installs it as root with apt-get), never from
``playwright install``, which downloads browsers from the internet that CI cannot reach.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

pytestmark = pytest.mark.slow  # a JupyterLab server, a browser and a training run

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "kdlib-browser-test"
# Announcements would put a "get Jupyter news?" toast over the notebook, and fetch a feed.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    """The end of a log, for failure messages (the server's log says why a kernel died)."""
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _tiny_notebook(folder: Path, tiny_data: dict[str, str], runs_dir: Path) -> Path:
    """``run.ipynb`` copied into ``folder`` with a one-epoch CPU run injected (not executed)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(REPO / "notebooks" / "run.ipynb"))  # with papermill's metadata
    params: dict[str, Any] = {
        "method": "nokd",
        "teacher": None,
        "teacher_checkpoint": None,
        "student": "resnet8",
        "epochs": 1,
        "seed": 0,
        "train_limit": 200,  # of the fixture's 400; its test split is 200 images
        "val_size": 100,
        "device": "cpu",
        "runs_dir": str(runs_dir),
        "data_dir": tiny_data["data_dir"],
        "cache_dir": tiny_data["cache_dir"],
        "progress": False,
    }
    nb = parameterize_notebook(nb, params)
    path = folder / "run.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A JupyterLab on a free loopback port serving ``tmp_path/work``, with a fresh home
    (no user settings or workspaces); yields (base url, work folder, server log)."""
    pytest.importorskip("jupyterlab")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None:
        pytest.skip("jupyter is not installed next to this Python")
    work, home, config = tmp_path / "work", tmp_path / "home", tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    work.mkdir()
    home.mkdir()
    port = _free_port()
    log = tmp_path / "jupyter-lab.log"
    env = {
        "HOME": str(home),
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PYTHONPATH": str(REPO),  # the kernel imports this checkout's kdlib
        # the kernel trains: with this test process's threads (conftest sets them)
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "MKL_NUM_THREADS": str(torch.get_num_threads()),
    }
    args = [
        jupyter,
        "lab",
        str(work),
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={TOKEN}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"jupyter lab exited:\n{_tail(log)}"
            assert time.monotonic() < deadline, f"jupyter lab silent for 90 s:\n{_tail(log)}"
            time.sleep(0.5)
        yield base, work, log
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A headless Debian Chromium with a fresh profile; yields a Playwright browser context."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian's chromium is not installed at {CHROMIUM}: `make test` installs it with "
            "apt-get as root (`apt-get install chromium`); here it could not"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra has it)"
    )
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1700},
        )
        try:
            yield context
        finally:
            context.close()


# True once the notebook shows all its code cells and its kernel is started and idle.
_KERNEL_READY = """n => {
  const name = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
  const kernel = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell').length === n
    && name !== null && !name.textContent.includes('No Kernel')
    && kernel !== null && kernel.getAttribute('data-status') === 'idle';
}"""

# True once the run all stopped: no cell queued or running ([*]), at least one numbered,
# the kernel idle. (After an error JupyterLab unqueues the rest: the checks say which.)
_RUN_FINISHED = """() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent);
  const kernel = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return prompts.length > 0 && !prompts.some(t => t.includes('*'))
    && prompts.some(t => /\\[\\d+\\]/.test(t))
    && kernel !== null && kernel.getAttribute('data-status') === 'idle';
}"""

# Every rendered pandas table in the output areas: header cells and body rows' cells.
_TABLES = """() => [...document.querySelectorAll('.jp-OutputArea-output table.dataframe')]
  .map(t => ({
    header: [...t.querySelectorAll('thead th')].map(c => c.textContent.trim()),
    rows: [...t.querySelectorAll('tbody tr')]
      .map(r => [...r.children].map(c => c.textContent.trim())),
  }))"""


def test_run_notebook_runs_in_jupyterlab_in_a_browser(
    chromium: Any,  # first: where there is no Chromium, skip before starting the rest
    tiny_data: dict[str, str],
    jupyter_lab: tuple[str, Path, Path],
    tmp_path: Path,
) -> None:
    from kdlib.runs import RunRecord, find_run_dirs

    base, work, log = jupyter_lab
    runs_dir = tmp_path / "runs"
    notebook = _tiny_notebook(work, tiny_data, runs_dir)
    n_code = sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)
    page = chromium.new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{base}/lab/tree/{notebook.name}?token={TOKEN}")
    # opening the notebook starts its kernel; Run > Run All Cells once it is idle
    page.wait_for_function(_KERNEL_READY, arg=n_code, polling=250)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator("#jp-mainmenu-run .lm-Menu-item", has=label).click()
    try:
        page.wait_for_function(_RUN_FINISHED, timeout=240_000, polling=500)
    except Exception as e:
        page.screenshot(path=str(tmp_path / "jupyterlab-run-timeout.png"))
        raise AssertionError(f"the notebook did not finish: {e}\n{_tail(log)}") from e
    prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_inner_texts()
    report = f"prompts {prompts}, outputs:\n" + "\n---\n".join(outputs)
    assert len(prompts) == n_code and all(re.search(r"\[\d+\]", p) for p in prompts), report
    assert "Traceback" not in "".join(outputs), report
    # the run's table, rendered by pandas: the index's cell heads both the header and rows
    tables = page.evaluate(_TABLES)
    runs = [
        dict(zip(t["header"], row, strict=True))
        for t in tables
        if "status" in t["header"]
        for row in t["rows"]
    ]
    assert len(runs) == 1, f"not one run in a table with a status column: {tables}\n{report}"
    assert runs[0]["status"] == "completed", runs
    # the curves, an inline PNG the browser decoded
    image = page.locator(".jp-OutputArea-output img").last
    image.scroll_into_view_if_needed()
    complete, width, height = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    assert complete and width >= 200 and height >= 100, (complete, width, height)
    assert (image.get_attribute("src") or "").startswith("data:image/png;"), report
    screenshot = tmp_path / "jupyterlab-run.png"
    page.screenshot(path=str(screenshot))
    print(f"screenshot of the executed notebook: {screenshot}")
    # the run behind the page: one epoch, finished, in the injected runs folder
    (run_dir,) = find_run_dirs(runs_dir)
    metrics = RunRecord(run_dir).metrics()
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    assert run_dir.name in runs[0]["run_id"]
