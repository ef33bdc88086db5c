"""`make lab` (jupyter lab notebooks) starts, serves the Lab page and opens every notebook.

A real JupyterLab server on a free loopback port, queried through its REST API the way the
browser front end does; it is shut down at the end.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a JupyterLab server started and driven

REPO = Path(__file__).resolve().parents[1]
TOKEN = "kdlib-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_jupyter_lab_starts_and_opens_the_notebooks(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None:
        pytest.skip("jupyter is not installed next to this Python")
    port = _free_port()
    proc = subprocess.Popen(
        [
            jupyter,
            "lab",
            "notebooks",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={TOKEN}",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            "HOME": str(tmp_path),
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                status, _ = _get(f"{base}/api/status?token={TOKEN}")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "jupyter lab exited"
            assert time.time() < deadline, "jupyter lab did not answer within 90 s"
            time.sleep(1)
        status, page = _get(f"{base}/lab?token={TOKEN}")
        assert status == 200 and b"JupyterLab" in page
        # `jupyter lab notebooks` serves the notebooks folder as its root
        _, listing = _get(f"{base}/api/contents?token={TOKEN}")
        names = {item["name"] for item in json.loads(listing)["content"]}
        expected = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
        assert expected <= names and "run.ipynb" in names
        for name in sorted(expected):
            _, body = _get(f"{base}/api/contents/{name}?token={TOKEN}")
            model = json.loads(body)
            assert model["type"] == "notebook" and model["content"]["cells"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
