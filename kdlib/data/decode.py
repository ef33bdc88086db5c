"""Decode image files into 32x32 RGB uint8 arrays, in a process pool when there are many.

Decoding 60,000 small WebP files is the slow step of preparing CIFAR (about 8 s on one
core); a pool of worker processes cuts that roughly by the number of cores. Small jobs
(tests, a handful of files) are decoded in-process, where a pool would only add overhead.
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from kdlib.data.registry import IMAGE_SHAPE
from kdlib.errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (``.DS_Store``, macOS ``._x.png`` AppleDouble)."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    """Whether a file name is one the readers decode: not hidden, with an image suffix.

    The one test used by both the ImageFolder and the archive reader, so a tree and a tar
    of it (even one made on macOS, full of ``._*`` files) read the same images.
    """
    return not is_hidden(name) and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


# Fewer images than this are decoded in-process.
PARALLEL_MIN_ITEMS = 2048
# Images per task sent to a worker, and how long a task may take before the pool counts
# as stalled (a chunk takes well under a second even on a loaded 2-core machine).
CHUNK_ITEMS = 256
STALL_SECONDS = 60.0
# An item to decode: (key, display name for errors, encoded bytes or a file path).
Item = tuple[str, str, "bytes | str"]
Decoded = tuple[str, np.ndarray]


class PoolStalledWarning(RuntimeWarning):
    """The decoding pool stopped answering; the rest was decoded in-process."""


def default_workers() -> int:
    """Worker processes to use by default: every core this process may run on (not every
    core of the host, which is what a container reports), but at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one encoded image to a (32, 32, 3) uint8 RGB array; ``name`` goes into errors."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {name}: {exc}") from None
    if arr.shape != IMAGE_SHAPE:
        h, w = arr.shape[:2]
        raise DataError(
            f"image {name} is {w}x{h} pixels, expected 32x32: CIFAR images must not be resized"
        )
    return arr


def _decode_item(item: Item) -> Decoded:
    key, display, payload = item
    if isinstance(payload, str):
        try:
            payload = Path(payload).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image {display}: {exc}") from None
    return key, decode_image(payload, display)


def _decode_chunk(chunk: list[Item]) -> list[Decoded]:
    return [_decode_item(item) for item in chunk]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers instantly and without re-importing kdlib/torch (1.7 s a worker);
    # the workers only run Pillow and numpy. Forking a process that has threads can still
    # leave a worker stuck on a lock, or the OOM killer can take one: the stall watchdog
    # in _decode_with_pool covers both.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


# How long ending a pool may take before its workers are killed.
END_SECONDS = 10.0


def _init_worker() -> None:
    # A forked worker inherits the parent's handlers, and the CLI's SIGTERM handler raises:
    # a worker dies quietly on SIGTERM instead, and leaves SIGINT (a Ctrl-C reaches the
    # whole process group) to the parent, which ends the pool.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _end_pool(pool: multiprocessing.pool.Pool, graceful: bool) -> None:
    """End the pool's workers, never waiting on one for ever.

    ``graceful`` (every chunk decoded): ``close`` and ``join``, so idle workers take their
    end-of-work sentinel and exit, and no signal is sent: ``terminate``'s SIGTERM could
    reach a worker still starting, whose Python then drops it (or runs the CLI handler it
    inherited and prints a traceback). Else ``terminate``. A worker that does neither
    within ``END_SECONDS`` (stuck on a lock since its fork, or the signal lost) is killed.
    """

    def finish() -> None:
        if graceful:
            pool.close()
            pool.join()
        else:
            pool.terminate()

    ender = threading.Thread(target=finish, name="kdlib-decode-pool-end", daemon=True)
    ender.start()
    ender.join(END_SECONDS)
    if ender.is_alive():
        for worker in list(getattr(pool, "_pool", ())):  # CPython's list of the workers
            with contextlib.suppress(Exception):
                worker.kill()
        ender.join(END_SECONDS)


def _chunks(stream: Iterator[Item]) -> Iterator[list[Item]]:
    while chunk := list(itertools.islice(stream, CHUNK_ITEMS)):
        yield chunk


def _decode_with_pool(
    pool: multiprocessing.pool.Pool, workers: int, stream: Iterator[Item], bar: tqdm
) -> list[Decoded]:
    """Decode in the pool, a few chunks in flight, in input order.

    A pool is only a speed-up, so it must never stop a prepare: a chunk that takes longer
    than ``STALL_SECONDS`` (a worker killed or stuck) ends the pool, and that chunk and
    the rest are decoded in this process. A bad image still raises its ``DataError``.
    """
    out: list[Decoded] = []
    pending: collections.deque[tuple[list[Item], multiprocessing.pool.AsyncResult]]
    pending = collections.deque()
    chunks = _chunks(stream)

    def collect() -> None:
        chunk, result = pending[0]
        decoded = result.get(timeout=STALL_SECONDS)
        pending.popleft()
        out.extend(decoded)
        bar.update(len(chunk))

    try:
        for chunk in chunks:
            pending.append((chunk, pool.apply_async(_decode_chunk, (chunk,))))
            if len(pending) >= 2 * workers:
                collect()
        while pending:
            collect()
        return out
    except multiprocessing.TimeoutError:
        _end_pool(pool, graceful=False)
        warnings.warn(
            f"the image-decoding pool stopped answering for {STALL_SECONDS:.0f} s (a worker"
            " was killed or is stuck); decoding the rest in this process",
            PoolStalledWarning,
            stacklevel=3,
        )
    rest = [chunk for chunk, _ in pending] + list(chunks)
    for chunk in rest:
        out.extend(_decode_chunk(chunk))
        bar.update(len(chunk))
    return out


def decode_many(
    items: Iterable[Item],
    *,
    total: int | None = None,
    workers: int | None = None,
    desc: str = "decoding",
    progress: bool | None = None,
) -> list[Decoded]:
    """Decode every item, returning ``(key, array)`` pairs in input order.

    ``items`` may be a lazy stream (e.g. members read from a tar archive): with a pool,
    reading the stream and decoding overlap. ``progress=None`` shows a bar only on a TTY.
    """
    workers = default_workers() if workers is None else workers
    it: Iterator[Item] = iter(items)
    head = list(itertools.islice(it, PARALLEL_MIN_ITEMS))
    stream = itertools.chain(head, it)
    with contextlib.ExitStack() as stack:
        pool = None
        if len(head) == PARALLEL_MIN_ITEMS and workers > 1:
            # Start the workers before tqdm starts its monitor thread (fork + threads).
            with contextlib.suppress(OSError):  # no semaphores here: decode in-process
                pool = _pool_context().Pool(workers, _init_worker)
        disable = None if progress is None else not progress
        bar = stack.enter_context(tqdm(total=total, desc=desc, unit="img", disable=disable))
        if pool is not None:
            done = False
            try:
                out = _decode_with_pool(pool, workers, stream, bar)
                done = True
                return out
            finally:
                _end_pool(pool, graceful=done)
        out: list[Decoded] = []
        for item in stream:
            out.append(_decode_item(item))
            bar.update()
    return out
