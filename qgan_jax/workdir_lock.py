"""One training run per work directory: an advisory `flock` on `<workdir>/.run.lock` held for the run's lifetime.

The kernel drops a `flock` when its process ends in any way (return, exception, SIGKILL), so a crashed run never
leaves the directory locked: there is no stale lock to detect. The file records who holds it (pid, host, start
time) for the error message; its content, not its existence, is informative. In a multi-host run only process 0
takes the lock (every host shares the workdir, and the hosts of one run must not exclude each other). Advisory
locks need a file system that supports them (local disks and most network file systems do; a bucket mounted with
gcsfuse does not, where the lock is a no-op).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import pathlib
import socket

LOCK_FILE = '.run.lock'


class WorkdirInUseError(OSError):
    """Another live run holds the work directory."""


class WorkdirLock:
    """Context manager: `with WorkdirLock(workdir): ...` holds the lock or raises WorkdirInUseError (one line)."""

    def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> 'WorkdirLock':
        if not self.enabled:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors='replace').strip() or 'another process'
            os.close(fd)
            raise WorkdirInUseError(f'work directory {self.path.parent} is in use by another run ({holder}); wait '
                                    f'for it to finish or stop it, or pass another --workdir') from None
        started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()}, started {started}\n'.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
