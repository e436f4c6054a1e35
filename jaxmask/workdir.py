"""What guards a training's workdir: the one-trainer lock and the stop signals.

A workdir is locked (``.jaxmask-train.lock``, ``fcntl.flock``, by process 0)
while a training uses it: a second training on it would interleave its
checkpoints and double every metrics record, so it is refused at once.
flock is advisory and, on some network file systems, local to a node: there,
one workdir per run remains the user's rule. The lock dies with the process
(kill -9 included), so a stale lock file never blocks a resume.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
from typing import Any

import jax
from absl import logging

LOCK_FILE = ".jaxmask-train.lock"


class WorkdirLockedError(ValueError):
    """Another training holds the workdir's lock."""


_HELD_LOCKS: dict[str, int] = {}    # lock path → fd, this process's


def lock_workdir(workdir: str) -> str:
    """Takes the workdir's training lock (process 0; non-blocking); WorkdirLockedError if held elsewhere."""
    path = os.path.join(workdir, LOCK_FILE)
    if jax.process_index() != 0 or path in _HELD_LOCKS:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EAGAIN, errno.EACCES):
            raise WorkdirLockedError(f"another training is using {workdir} (it holds {path}): wait for it "
                                     "to finish, or pass another --workdir") from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[path] = fd
    return path


def unlock_workdir(workdir: str) -> None:
    fd = _HELD_LOCKS.pop(os.path.join(workdir, LOCK_FILE), None)
    if fd is not None:
        os.close(fd)       # closing releases the flock


class StopOnSignal:
    """Context manager: SIGTERM or SIGINT asks the loop to stop after the current round.

    ``reason`` is the signal's name once one arrived (else None). A second
    SIGINT aborts at once (KeyboardInterrupt). Handlers are installed only in
    the main thread of a single-process run (multi-process runs stop through
    ``TrainCheckpoints.reached_preemption``, which needs every process to
    agree) and the previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def _handle(self, signum, frame) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name
        logging.warning("%s: stopping after this round with a checkpoint (Ctrl-C again aborts without one)",
                        self.reason)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
