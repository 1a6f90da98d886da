"""One bot process per SQLite file: an exclusive lock on `<database>.lock`, held while the bot runs.

SQLite is the embedded, single-process store. A second process on the same file would claim jobs with its
own scheduler and fight over the backends, so it refuses to start instead; running several processes is
what PostgreSQL is for. The lock is an `flock`, so the kernel releases it when the holder dies, even on
kill -9: a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class DatabaseInUse(RuntimeError):
    """Another process runs the bot on this SQLite file; the message is for the operator."""


class InstanceLock:
    """The exclusive lock of one bot process on one SQLite database file."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = self.database.with_name(self.database.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise `DatabaseInUse` naming the file and the holder's pid when known."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = f" (pid {holder})" if holder else ""
            raise DatabaseInUse(
                f"another comfy-imagine process{who} is using the database {self.database} "
                "(storage.database). A SQLite database serves one bot process; stop the other one, or "
                'run several processes on PostgreSQL (storage.database = "postgresql://...").'
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        log.debug("holding %s", self.path)

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> InstanceLock:
        """Acquire on entry."""
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release on exit."""
        self.release()


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text else None
    return None
