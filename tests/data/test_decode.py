"""Decoding images (kdlib/data/decode.py): the process pool, its fallback when a worker
stalls, the default worker count, and images of the wrong size."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from kdlib.data import load_dataset
from kdlib.errors import DataError
from tests.data.helpers import assert_matches as _assert_matches
from tests.data.helpers import expected_arrays as _expected
from tests.data.helpers import load as _load


def test_parallel_decoding_matches_and_reports_bad_files(archives, c10: dict, monkeypatch) -> None:
    monkeypatch.setattr("kdlib.data.decode.PARALLEL_MIN_ITEMS", 4)  # use the pool on tiny data
    data_dir, rows = archives
    cache = data_dir.parent / "cache"
    d = load_dataset("cifar10", data_dir=data_dir, cache_dir=cache, workers=2, progress=False)
    _assert_matches(d, _expected(c10))
    tree_dir = data_dir.parent / "staging"
    bad = tree_dir / rows[-1]["path"]
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"cannot decode image .*{bad.name}"):
        load_dataset("cifar10", data_dir=tree_dir, cache_dir=cache / "2", workers=2)


def _png_items(n: int) -> list[tuple[str, str, bytes]]:
    rng = np.random.default_rng(7)
    items = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        items.append((f"k{i}", f"img{i}.png", buf.getvalue()))
    return items


@pytest.mark.parametrize("failure", ["killed", "stuck"])
def test_a_stalled_decoding_pool_falls_back_to_this_process(monkeypatch, failure: str) -> None:
    # CI once hung for 88 minutes inside a decoding pool: a worker that dies or hangs must
    # cost at most STALL_SECONDS, then the rest is decoded here, in input order.
    import os
    import signal

    import kdlib.data.decode as decode

    items = _png_items(12)
    expected = [decode._decode_item(it) for it in items]
    parent, real = os.getpid(), decode._decode_item

    def flaky(item):
        if os.getpid() != parent and item[0] == "k5":
            if failure == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        return real(item)

    monkeypatch.setattr(decode, "_decode_item", flaky)  # forked workers inherit it
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    monkeypatch.setattr(decode, "STALL_SECONDS", 3.0)
    start = time.perf_counter()
    with pytest.warns(decode.PoolStalledWarning, match="stopped answering"):
        got = decode.decode_many(items, workers=2, progress=False)
    assert time.perf_counter() - start < 30
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_workers_counts_the_cores_this_process_may_use(monkeypatch) -> None:
    import os

    import kdlib.data.decode as decode

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert decode.default_workers() == 2


def test_image_of_wrong_size_names_the_file(tree) -> None:
    data_dir, rows = tree
    bad = data_dir / rows[3]["path"]
    Image.new("RGB", (31, 32)).save(bad, lossless=True)
    with pytest.raises(DataError, match=f"{bad.name}.* 31x32"):
        _load(data_dir, data_dir.parent / "cache")


def test_decoding_workers_die_quietly_on_sigterm_and_leave_sigint_to_the_parent(
    monkeypatch,
) -> None:
    # Workers are forked from the CLI, whose SIGTERM handler raises: the SIGTERM with
    # which the pool ends its workers on exit printed a traceback per idle worker under
    # a successful `kdlib data prepare`. Each worker reports the handlers it runs with.
    import os
    import signal

    import kdlib.data.decode as decode
    from kdlib.cli import _on_sigterm

    parent, real = os.getpid(), decode._decode_item

    def probe(item):
        key, arr = real(item)
        if os.getpid() == parent:
            return key, arr
        term = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        sigint = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        return f"{key} worker term={term} int={sigint}", arr

    monkeypatch.setattr(decode, "_decode_item", probe)  # forked workers inherit it
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        got = decode.decode_many(_png_items(8), workers=2, progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the parent's is kept
    keys = [k for k, _ in got]
    assert [k.split()[0] for k in keys] == [f"k{i}" for i in range(8)]
    assert all(k.endswith("worker term=True int=True") for k in keys), keys


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="POSIX only")
def test_workers_are_born_with_sigterm_held_until_their_own_handling_is_in_place(
    monkeypatch, tmp_path
) -> None:
    # The pool ends workers with SIGTERM, possibly one not yet scheduled since its fork
    # (a small job on a loaded machine). Python clears the signals a child caught before
    # its fork bookkeeping, so such a SIGTERM was lost: the worker lived on and the pool
    # waited for it forever (a test run hung for 5 minutes). Held (blocked) from the fork
    # until the worker's own handling is set, the signal waits in the kernel instead.
    import os
    import signal

    import kdlib.data.decode as decode

    real_init = decode._init_worker

    def recording_init() -> None:
        # What each worker holds when forked, then once set up; a worker the pool ends
        # before it is set up dies inside real_init and leaves only the first line.
        report = tmp_path / f"{os.getpid()}.txt"
        born = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        report.write_text(f"{signal.SIGTERM in born} {signal.SIGINT in born}\n")
        real_init()
        ready = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        with report.open("a") as f:
            f.write(f"{signal.SIGTERM in ready} {signal.SIGINT in ready}\n")

    monkeypatch.setattr(decode, "_init_worker", recording_init)
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    got = decode.decode_many(_png_items(8), workers=2, progress=False)
    assert len(got) == 8
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # this process: as before
    reports = [p.read_text().splitlines() for p in tmp_path.glob("*.txt")]
    assert reports and all(r[0] == "True True" for r in reports), reports  # held when born
    set_up = [r[1] for r in reports if len(r) == 2]
    assert set_up and set(set_up) == {"False False"}, reports  # released once set up
