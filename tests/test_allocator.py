"""kdlib.allocator: glibc's malloc keeps freed memory in a training process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib import allocator
from kdlib.config import TrainConfig
from kdlib.train import run_training

GLIBC = allocator._glibc() is not None
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc's mallopt is Linux/glibc only")

# Six 8 MiB buffers allocated, written and freed, twenty times: with glibc's defaults the
# freed 48 MiB at the top of the heap is handed back to the kernel each time and faulted
# in again; tuned, it stays in the process. Prints the page faults of rounds 2-20.
CHURN = """
import resource, sys
import numpy as np
from kdlib.allocator import tune_allocator
print(tune_allocator(sys.argv[1]), file=sys.stderr)
def round_():
    bufs = [np.ones(8 << 17) for _ in range(6)]  # 8 MiB of float64 each
    del bufs
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(19):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in allocator.ENV_KNOBS}
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(done.stdout.strip()), done.stderr.strip()


@needs_glibc
def test_tuned_malloc_stops_the_page_faults_of_freed_buffers() -> None:
    default, default_state = _faults("default")
    tuned, tuned_state = _faults("tuned")
    assert default_state == "glibc default" and tuned_state == "glibc tuned"
    # 19 rounds x 48 MiB is about 233,000 pages; the default's dynamic thresholds keep
    # some (glibc 2.36: about 58,000 faults remain), tuned keeps them all (0 there)
    assert default > 20_000
    assert tuned < default / 20


@needs_glibc
def test_malloc_set_by_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_state", "glibc default")
    monkeypatch.setenv("MALLOC_TOP_PAD_", "1048576")
    state = allocator.tune_allocator("tuned")
    assert state == "glibc, set by the environment (MALLOC_TOP_PAD_=1048576)"
    assert allocator._state == "glibc default"  # mallopt was not called
    monkeypatch.delenv("MALLOC_TOP_PAD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert allocator.allocator_state().startswith("preloaded (")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="one of tuned, default"):
        allocator.tune_allocator("fast")


@needs_glibc
def test_a_cpu_run_records_its_malloc(tiny_data: dict, tmp_path: Path) -> None:
    cfg = TrainConfig(
        method="nokd",
        student="resnet8",
        epochs=1,
        batch_size=50,
        val_size=0,
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        **tiny_data,
    )
    run = run_training(cfg, progress=False)
    env = json.loads((run / "env.json").read_text())
    assert env["cpu_allocator"] == "glibc tuned"
