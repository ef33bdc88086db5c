"""kdlib.allocator: glibc's malloc keeps freed memory in a training process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib import allocator, train
from kdlib.train import run_training
from tests.test_train import _cfg

GLIBC = allocator._glibc() is not None
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc's mallopt is Linux/glibc only")

# Six 8 MiB buffers malloc'ed, written and freed (through libc itself, so that no
# library's own huge-page advice changes the count), twenty times: with glibc's defaults
# the freed 48 MiB at the top of the heap is handed back to the kernel each time and
# faulted in again; tuned, it stays in the process. Prints the page faults of rounds 2-20.
CHURN = """
import ctypes, resource, sys
from kdlib.allocator import tune_allocator
print(tune_allocator(sys.argv[1]), file=sys.stderr)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
def round_():
    bufs = [libc.malloc(8 << 20) for _ in range(6)]
    for b in bufs:
        libc.memset(b, 1, 8 << 20)
    for b in bufs:
        libc.free(b)
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(19):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
CHOICES = (*allocator.ENV_KNOBS, "GLIBC_TUNABLES", "LD_PRELOAD")  # the environment's malloc


def _faults(mode: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHOICES}
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(done.stdout.strip()), done.stderr.strip()


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No malloc choice in the environment, and this process's malloc untuned."""
    for name in CHOICES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_state", "glibc default")
    monkeypatch.setattr(allocator, "_preloaded_malloc", lambda: False)
    return monkeypatch


@needs_glibc
def test_tuned_malloc_stops_the_page_faults_of_freed_buffers() -> None:
    default, default_state = _faults("default")
    tuned, tuned_state = _faults("tuned")
    assert default_state == "glibc default" and tuned_state == "glibc tuned"
    # 19 rounds x 48 MiB is about 233,000 pages: the default faults them all in again
    assert default > 200_000
    assert tuned < default / 20


@needs_glibc
def test_malloc_set_by_the_environment_is_left_alone(plain_env: pytest.MonkeyPatch) -> None:
    plain_env.setenv("MALLOC_TOP_PAD_", "1048576")
    state = allocator.tune_allocator("tuned")
    assert state == "glibc, set by the environment (MALLOC_TOP_PAD_=1048576)"
    assert allocator._state == "glibc default"  # mallopt was not called
    plain_env.delenv("MALLOC_TOP_PAD_")
    plain_env.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_foo=1:glibc.malloc.top_pad=4096")
    assert allocator.tune_allocator("tuned") == (
        "glibc, set by the environment (glibc.malloc.top_pad=4096)"
    )
    plain_env.delenv("GLIBC_TUNABLES")
    plain_env.setattr(allocator, "_preloaded_malloc", lambda: True)
    plain_env.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert allocator.tune_allocator("tuned") == "preloaded (/usr/lib/libjemalloc.so.2)"
    assert allocator._state == "glibc default"


@needs_glibc
def test_glibcs_own_malloc_is_not_taken_for_a_preloaded_one() -> None:
    assert allocator._preloaded_malloc() is (
        "malloc" in os.environ.get("LD_PRELOAD", "")  # jemalloc, tcmalloc
    )


@needs_glibc
def test_default_asked_of_a_tuned_process_warns(plain_env: pytest.MonkeyPatch) -> None:
    plain_env.setattr(allocator, "_state", "glibc tuned")
    with pytest.warns(UserWarning, match="start a new process"):
        assert allocator.tune_allocator("default") == "glibc tuned"


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="one of tuned, default"):
        allocator.tune_allocator("fast")


@needs_glibc
def test_a_cpu_run_tunes_malloc_and_records_it(
    tiny_data: dict, tmp_path: Path, plain_env: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = allocator.tune_allocator

    def spy(mode: str = "tuned") -> str:
        asked.append(mode)
        return real(mode)

    plain_env.setattr(train, "tune_allocator", spy)
    cfg = _cfg(tiny_data, tmp_path, epochs=1, val_size=0)
    run = run_training(cfg, progress=False)
    assert asked == ["tuned"]  # before the run's record was written
    assert json.loads((run / "env.json").read_text())["cpu_allocator"] == "glibc tuned"
