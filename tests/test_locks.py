"""Run locks: held by one process at a time, and seen from outside without taking them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib import locks
from kdlib.locks import RunLocked, is_locked, run_lock


@pytest.mark.parametrize("proc_locks", [True, False], ids=["/proc/locks", "flock probe"])
def test_is_locked_sees_a_held_lock_and_only_while_it_is_held(
    proc_locks: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not proc_locks:  # as on a system without /proc/locks
        monkeypatch.setattr(locks, "_held_in_proc_locks", lambda dev, ino: None)
    elif not Path("/proc/locks").exists():
        pytest.skip("no /proc/locks on this system")
    assert not is_locked(tmp_path, "abc")  # never locked: no lock file at all
    with run_lock(tmp_path, "abc"):
        assert is_locked(tmp_path, "abc")
        assert not is_locked(tmp_path, "abd")
        with pytest.raises(RunLocked), run_lock(tmp_path, "abc"):
            pass
    assert not is_locked(tmp_path, "abc")  # released: the file stays, the lock does not
    with run_lock(tmp_path, "abc"):  # looking did not take it
        pass
