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

The lock file is also the writer's journal: before it creates a temporary
file or folder it appends that name (``journal``), so the next writer removes
exactly what a killed one left (``remove_journaled``), never a file that only
looks like jaxmask's. A file at the lock's path that is not a jaxmask lock
file (a user's) is refused, never overwritten.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import threading
from typing import Any

import jax
from absl import logging

from jaxmask import signals

LOCK_FILE = ".jaxmask-train.lock"
OUTPUT_LOCK_FILE = ".jaxmask.lock"


class WorkdirLockedError(ValueError):
    """Another writer holds the lock of this output (a workdir, a bundle, a folder)."""


_HELD_LOCKS: dict[str, int] = {}    # lock path → fd, this process's
_JOURNAL_END: dict[str, int] = {}   # lock path → where the next journal line goes
_PENDING: dict[str, dict[str, None]] = {}   # lock path → journaled targets not yet settled
JOURNAL_BYTES = 64 << 10


def _parse_lock(text: str) -> tuple[dict[str, Any] | None, list[str]] | None:
    """(holder, journal) of a lock file's text; None when it is not a jaxmask lock file at all.

    Line 1 is the holder's record (JSON; older versions wrote only a pid); each
    further line ``{"tmp": relative path}`` journals a temporary file or folder
    the holder was about to create, so that the next writer removes exactly what
    a killed one left (never by a name pattern: a user's file may match any).
    """
    if not text.strip():
        return None, []
    first, *rest = text.split("\n")
    try:
        holder = json.loads(first)
    except ValueError:
        holder = {"pid": first.strip()} if first.strip().isdigit() else None
    if not isinstance(holder, dict) or not ({"command", "pid"} & set(holder)):
        return None
    journal = []
    for line in rest:
        try:
            entry = json.loads(line)
        except ValueError:
            continue           # a journal line cut short by a kill
        if isinstance(entry, dict) and isinstance(entry.get("tmp"), str):
            journal.append(entry["tmp"])
    return holder, journal


def _read_lock(fd: int) -> tuple[dict[str, Any] | None, list[str]] | None:
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, 16 << 20), 0)
    except OSError:
        return None, []
    return _parse_lock(data.decode("utf-8", "replace"))


def _read_holder(fd: int) -> dict[str, Any] | None:
    parsed = _read_lock(fd)
    return parsed[0] if parsed else None


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
    live writer holds it. A file at ``path`` that is not a jaxmask lock file
    (a user's) is refused, never overwritten or deleted. The stale holder's
    journal (``holder["journal"]``: paths relative to the lock's folder) is
    carried into the new lock file until ``remove_journaled`` has removed it.
    Multi-process runs: process 0 only.
    """
    path = os.path.abspath(path)
    if jax.process_index() != 0 or path in _HELD_LOCKS:
        return None
    # From creating the file to holding it in _HELD_LOCKS, no stop: else the file would be left behind.
    # A stop that arrived meanwhile is delivered as the step ends: the lock just taken is given back.
    taken = False
    try:
        with signals.deferred():
            stale = _acquire(path, what, command, fix)
            taken = True
    except BaseException:
        if taken:
            release_lock(path)
        raise
    return stale


def _acquire(path: str, what: str, command: str, fix: str) -> dict[str, Any] | None:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{path} is not a regular file: jaxmask keeps its lock there; move it away")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise WorkdirLockedError(f"{what} is being written by {describe_holder(holder)}, which holds "
                                         f"{path}: {fix}") from None
            raise
        except BaseException:
            os.close(fd)
            raise
        try:      # the file we locked must still be the one at `path` (a finishing writer removes it)
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    parsed = _read_lock(fd)
    if parsed is None:
        os.close(fd)
        raise ValueError(f"{path} exists and is not a jaxmask lock file (it would be overwritten, then "
                         f"deleted): move or rename it, it is where jaxmask locks {what}")
    stale, journal = parsed
    if stale:
        stale = {**stale, "journal": journal}
        logging.warning("%s: took over the lock left by %s, which is no longer running", what, describe_holder(stale))
    record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    text = json.dumps(record) + "\n" + "".join(json.dumps({"tmp": rel}) + "\n" for rel in journal)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:          # e.g. a full disk: leave no lock file behind
        os.unlink(path)
        os.close(fd)
        raise
    _HELD_LOCKS[path] = fd
    _JOURNAL_END[path] = len(text.encode())
    _PENDING[path] = dict.fromkeys(journal)
    return stale


def journal(lock_path: str, target: str) -> None:
    """Notes in the held lock ``lock_path`` that ``target`` (a temporary file or folder inside the lock's
    folder) is about to be created: a writer killed before it is renamed or removed leaves it to the next
    writer (``remove_journaled``). Call it before creating ``target``, and ``settle`` once it is gone."""
    lock_path = os.path.abspath(lock_path)
    fd = _HELD_LOCKS.get(lock_path)
    if fd is None:
        return
    rel = os.path.relpath(os.path.abspath(target), os.path.dirname(lock_path))
    _PENDING.setdefault(lock_path, {})[rel] = None
    line = (json.dumps({"tmp": rel}) + "\n").encode()
    os.pwrite(fd, line, _JOURNAL_END[lock_path])
    _JOURNAL_END[lock_path] += len(line)


def settle(lock_path: str, target: str, now: bool = False) -> None:
    """``target`` was renamed into place or removed: it no longer needs the journal. The journal is
    rewritten with only the pending entries once it grows past ``JOURNAL_BYTES`` (a release of a
    million images keeps a lock file of a few lines), or at once with ``now`` (a journaled name that
    turned out to be someone else's file: it must never be in a journal the next writer reads)."""
    lock_path = os.path.abspath(lock_path)
    fd = _HELD_LOCKS.get(lock_path)
    pending = _PENDING.get(lock_path)
    if fd is None or pending is None:
        return
    pending.pop(os.path.relpath(os.path.abspath(target), os.path.dirname(lock_path)), None)
    if now or _JOURNAL_END[lock_path] > JOURNAL_BYTES:
        first = os.pread(fd, 4096, 0).split(b"\n", 1)[0] + b"\n"
        text = first + b"".join((json.dumps({"tmp": rel}) + "\n").encode() for rel in pending)
        # Written over the old journal, then cut: a kill in between leaves old entries of renamed
        # files (no longer there) or a torn line (skipped), never loses a pending one.
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        _JOURNAL_END[lock_path] = len(text)


def remove_journaled(lock_path: str, stale: dict[str, Any] | None) -> list[str]:
    """Removes what the stale holder's journal lists and is still there (files, or folders holding only
    what a writer puts there); the relative paths removed. Only journaled paths are ever removed."""
    if not stale:
        return []
    import shutil
    folder = os.path.dirname(os.path.abspath(lock_path))
    removed = []
    for rel in stale.get("journal", ()):
        target = os.path.normpath(os.path.join(folder, rel))
        if rel.startswith(os.sep) or not target.startswith(folder + os.sep):
            continue      # a journal entry that leaves the folder is not ours to follow
        try:
            mode = os.lstat(target).st_mode
        except OSError:
            continue      # renamed into place or removed before the kill
        try:
            if stat.S_ISDIR(mode):
                shutil.rmtree(target)
            elif stat.S_ISREG(mode):
                os.unlink(target)
            else:
                continue
        except OSError:
            continue
        removed.append(rel)
    return sorted(removed)


def release_lock(path: str) -> None:
    """Removes and releases a lock taken by ``acquire_lock`` (nothing if this process does not hold it)."""
    path = os.path.abspath(path)
    with signals.deferred():
        fd = _HELD_LOCKS.pop(path, None)
        _JOURNAL_END.pop(path, None)
        _PENDING.pop(path, None)
        if fd is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(fd)       # closing releases the flock


def release_all_locks() -> None:
    """Releases every lock this process holds (the command line's last step, however a command ended:
    a lock is never left behind by a stop or an error that skipped its owner's ``finally``)."""
    for path in list(_HELD_LOCKS):
        release_lock(path)


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

    def journal(self, target: str) -> None:
        journal(self.path, target)

    def settle(self, target: str, now: bool = False) -> None:
        settle(self.path, target, now)

    def remove_journaled(self) -> list[str]:
        """What a killed holder left (its journal), removed; the relative paths."""
        return remove_journaled(self.path, self.stale)


class Journal:
    """The journal of a lock this process holds (``journal_of``), for a writer that did not take it."""

    def __init__(self, lock_path: str):
        self.path = lock_path

    def journal(self, target: str) -> None:
        journal(self.path, target)

    def settle(self, target: str, now: bool = False) -> None:
        settle(self.path, target, now)


def journal_of(path: str) -> Journal | None:
    """The journal of the innermost lock this process holds whose folder contains ``path`` (None: none)."""
    path = os.path.abspath(path)
    folders = [(os.path.dirname(lock), lock) for lock in _HELD_LOCKS]
    inside = [(len(folder), lock) for folder, lock in folders if path == folder or path.startswith(folder + os.sep)]
    return Journal(max(inside)[1]) if inside else None


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
