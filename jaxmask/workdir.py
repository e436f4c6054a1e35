"""What guards an output: one writer at a time (locks), and the stop signals.

One writer per output. Every command that writes takes a lock on what it
writes before writing anything: ``train`` its workdir
(``.jaxmask-train.lock``), ``run`` its workdir and ``evaluate`` its --out
(``.jaxmask.lock`` inside), ``mask`` its output folder (``.jaxmask.lock``
inside), ``export`` its bundle (``.<bundle>.jaxmask.lock`` beside it: the
bundle holds only its own files). A second writer is refused at once with
one line naming the holder (command, pid, host, start time), which the lock
file records. The lock is ``fcntl.flock``: it dies with its process (kill -9
included), so the file a killed writer leaves is stale by construction: the
next writer takes it over (saying whose it was) and every writer removes its
lock file when done. flock is advisory and, on some network file systems,
local to a node: there, one writer per output stays the user's rule.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import signal
import socket
import threading
from typing import Any

import jax
from absl import logging

LOCK_FILE = ".jaxmask-train.lock"
OUTPUT_LOCK_FILE = ".jaxmask.lock"


class WorkdirLockedError(ValueError):
    """Another writer holds the lock of this output (a workdir, a bundle, a folder)."""


_HELD_LOCKS: dict[str, int] = {}    # lock path → fd, this process's


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        holder = json.loads(text)
        return holder if isinstance(holder, dict) else None
    except ValueError:     # the lock files of older versions hold only a pid
        return {"pid": text} if text.isdigit() else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'`jaxmask mask` (pid 12, host h, since …)' from a lock file's record."""
    if not holder:
        return "another process (its lock file names none)"
    what = f"`{holder['command']}`" if holder.get("command") else "a process"
    details = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host"):
        details.append(f"host {holder['host']}")
    if holder.get("since"):
        details.append(f"since {holder['since']}")
    return f"{what} ({', '.join(details)})"


def acquire_lock(path: str, what: str, command: str, fix: str) -> dict[str, Any] | None:
    """Takes the lock file ``path`` (non-blocking); returns the stale holder it replaced, if any.

    WorkdirLockedError("{what} is being written by {holder} …; {fix}") when a
    live writer holds it. Multi-process runs: process 0 only.
    """
    path = os.path.abspath(path)
    if jax.process_index() != 0 or path in _HELD_LOCKS:
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise WorkdirLockedError(f"{what} is being written by {describe_holder(holder)}, which holds "
                                         f"{path}: {fix}") from None
            raise
        try:      # the file we locked must still be the one at `path` (a finishing writer removes it)
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    stale = _read_holder(fd)
    if stale:
        logging.warning("%s: took over the lock left by %s, which is no longer running", what, describe_holder(stale))
    record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:          # e.g. a full disk: leave no lock file behind
        os.unlink(path)
        os.close(fd)
        raise
    _HELD_LOCKS[path] = fd
    return stale


def release_lock(path: str) -> None:
    """Removes and releases a lock taken by ``acquire_lock`` (nothing if this process does not hold it)."""
    fd = _HELD_LOCKS.pop(os.path.abspath(path), None)
    if fd is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)       # closing releases the flock


class OutputLock:
    """Context manager over ``acquire_lock``/``release_lock``; ``stale`` is the replaced holder, if any."""

    def __init__(self, path: str, what: str, command: str, fix: str):
        self.path, self.what, self.command, self.fix = os.path.abspath(path), what, command, fix
        self.stale: dict[str, Any] | None = None
        self._held = False

    def __enter__(self) -> "OutputLock":
        self._held = self.path not in _HELD_LOCKS
        self.stale = acquire_lock(self.path, self.what, self.command, self.fix)
        return self

    def __exit__(self, *exc) -> None:
        if self._held:
            release_lock(self.path)


def lock_folder(folder: str, command: str, flag: str) -> OutputLock:
    """The lock of an output folder (``folder/.jaxmask.lock``; the folder must exist)."""
    return OutputLock(os.path.join(folder, OUTPUT_LOCK_FILE), f"{flag} {folder}", command,
                      f"wait for it to finish, or pass another {flag}")


def lock_workdir(workdir: str) -> str:
    """Takes the workdir's training lock (process 0; non-blocking); WorkdirLockedError if held elsewhere."""
    path = os.path.join(workdir, LOCK_FILE)
    acquire_lock(path, f"another training is using {workdir}: it", "jaxmask train",
                 "wait for it to finish, or pass another --workdir")
    return path


def unlock_workdir(workdir: str) -> None:
    release_lock(os.path.join(workdir, LOCK_FILE))


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
