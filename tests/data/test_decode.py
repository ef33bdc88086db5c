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


FORK_ONLY = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(),
    reason="the test patches functions that only forked workers inherit",
)


@FORK_ONLY
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
    # the parent's own SIGINT handler (a shell's background job inherits SIG_IGN)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        got = decode.decode_many(_png_items(8), workers=2, progress=False)
        kept = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    assert kept  # the parent's is kept
    keys = [k for k, _ in got]
    assert [k.split()[0] for k in keys] == [f"k{i}" for i in range(8)]
    assert all(k.endswith("worker term=True int=True") for k in keys), keys


@FORK_ONLY
def test_a_pool_that_decoded_everything_ends_its_workers_without_a_signal(
    monkeypatch, tmp_path
) -> None:
    # terminate()'s SIGTERM could reach a worker still starting: Python dropped it and the
    # pool waited for that worker for ever (a test run hung 5 minutes), or the worker ran
    # the CLI handler it inherited and printed a traceback. A pool that decoded everything
    # now ends with close() and join(): no worker is sent any signal.
    import os
    import signal

    import kdlib.data.decode as decode

    real_init = decode._init_worker

    def recording_init() -> None:
        real_init()
        mark = tmp_path / f"{os.getpid()}.signalled"
        signal.signal(signal.SIGTERM, lambda *_: (mark.touch(), os._exit(0)))
        (tmp_path / f"{os.getpid()}.started").touch()

    monkeypatch.setattr(decode, "_init_worker", recording_init)
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    got = decode.decode_many(_png_items(8), workers=2, progress=False)
    assert len(got) == 8
    assert list(tmp_path.glob("*.started"))  # the pool's workers ran
    assert not list(tmp_path.glob("*.signalled"))


@FORK_ONLY
def test_a_pool_whose_workers_are_stuck_is_abandoned(monkeypatch) -> None:
    # A worker stuck since its fork (a lock a thread of the parent held) acts on no
    # SIGTERM, and the pool would wait for it for ever after terminate(): after
    # END_SECONDS it is killed. Here every worker ignores SIGTERM and never starts work.
    import signal

    import kdlib.data.decode as decode

    def stuck() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)

    monkeypatch.setattr(decode, "_init_worker", stuck)
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    monkeypatch.setattr(decode, "STALL_SECONDS", 2.0)
    monkeypatch.setattr(decode, "END_SECONDS", 1.0)
    items = _png_items(8)
    start = time.perf_counter()
    with pytest.warns(decode.PoolStalledWarning, match="stopped answering"):
        got = decode.decode_many(items, workers=2, progress=False)
    assert time.perf_counter() - start < 30
    assert [k for k, _ in got] == [k for k, _, _ in items]
