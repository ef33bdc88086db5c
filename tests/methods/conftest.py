"""Fixtures of the method tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny batches run fastest on one thread (no thread contention). A file that runs real
    models on small batches asks for it: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ckpt(teacher_checkpoints: dict[str, str]) -> str:
    """A real (randomly initialised) resnet20 checkpoint: validation loads it."""
    return teacher_checkpoints["resnet20"]
