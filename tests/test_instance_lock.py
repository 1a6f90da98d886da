"""One bot process per SQLite file: a second one refuses to start, a dead holder never blocks a restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.instance_lock import DatabaseInUse, InstanceLock

HOLD = """
import sys, time
from collections.abc import Iterator
from pathlib import Path
from bot.instance_lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def _holder(database: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock on `database` until the block ends (or it is killed)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        try:
            yield process
        finally:
            process.kill()


def test_a_second_process_on_the_same_file_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.db"
    with _holder(database) as holder, pytest.raises(DatabaseInUse) as info:
        InstanceLock(database).acquire()
    message = str(info.value)
    assert str(database) in message
    assert f"pid {holder.pid}" in message
    assert "PostgreSQL" in message
    assert "storage.database" in message


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    with _holder(database) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with InstanceLock(database) as lock:
        assert lock.held


def test_release_lets_the_next_one_in_and_is_idempotent(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    first = InstanceLock(database)
    first.acquire()
    first.acquire()  # already held: nothing happens
    with pytest.raises(DatabaseInUse):
        InstanceLock(database).acquire()
    first.release()
    first.release()
    with InstanceLock(database) as second:
        assert second.held
    assert not second.held


def test_another_database_in_the_same_folder_is_not_affected(tmp_path: Path) -> None:
    with InstanceLock(tmp_path / "a.db"), InstanceLock(tmp_path / "b.db") as other:
        assert other.held
