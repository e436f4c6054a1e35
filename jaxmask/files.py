"""Every file jaxmask reads is a regular file, or the error says why not.

Opening a FIFO for reading blocks until something writes to it, and a device
(``/dev/zero``) never ends: a config file, a manifest, a checkpoint or a
metrics log that is one of those would hang a command without a word. These
checks look at the directory entry first (``os.stat``, which never blocks)
and refuse anything that is not a regular file, naming what it is; reading
then opens the file non-blocking and checks again on the open descriptor, so
a file swapped for a FIFO in between cannot hang it either.

``check_tree`` applies the rule to a whole folder that jaxmask reads (a
workdir, a bundle, a raw dataset's top level) before any of it is read.

Writing: ``write_atomically`` writes every output jaxmask makes (releases,
masks, report files) to a temporary name and renames it into place.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import Callable

from jaxmask import signals

TEMP_SUFFIX = ".jaxmask-tmp"      # an output being written (recognised by the lock's journal, not the name)

KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


class NotARegularFile(ValueError):
    """A path that should be a regular file is a FIFO, socket, device or folder."""


class TooLarge(ValueError):
    """A file larger than any file of its kind (read_bytes' limit): it is not one, or it is damaged."""


def kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a folder', … for an ``st_mode``; 'a regular file' for one."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def describe(path: str) -> str:
    """What is at ``path``: 'a regular file', 'a FIFO (named pipe)', 'nothing', …"""
    try:
        return kind(os.stat(path).st_mode)
    except FileNotFoundError:
        return "nothing" if not os.path.islink(path) else "a dangling symlink"
    except OSError as error:
        return f"unreadable ({error.strerror})"


def check_regular(path: str, what: str = "", fix: str = "replace it with a regular file") -> None:
    """NotARegularFile naming ``path`` (and ``what`` it should be) unless it is a regular file (or absent)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return      # absent or unreadable: the caller's open() says so
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{path}{' (' + what + ')' if what else ''} is {kind(mode)}, not a regular file: "
                              f"jaxmask reads it as a file; {fix}")


def open_regular(path: str, mode: str = "rb", **kwargs):
    """``open(path, mode)`` for reading a regular file; NotARegularFile (never a hang) for anything else."""
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path} is {kind(st.st_mode)}, not a regular file: jaxmask reads it as a file; "
                                  "replace it with a regular file")
        os.set_blocking(fd, True)
        return open(fd, mode, closefd=True, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str, limit: int | None = None, what: str = "") -> bytes:
    """The contents of the regular file ``path``; ValueError when it is larger than ``limit`` bytes."""
    with open_regular(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise TooLarge(f"{path}{' (' + what + ')' if what else ''} is {size} bytes, more than the "
                             f"{limit} such a file can hold: it is not one (or is damaged)")
        return f.read() if limit is None else f.read(limit + 1)


def check_tree(root: str, flag: str, depth: int | None = None) -> None:
    """NotARegularFile naming the first entry under ``root`` that is neither a folder nor a regular file
    (symlinks are judged by their targets; dangling ones are left to the reader). ``depth``: how many
    levels to look at (1: the entries of ``root`` itself; None: all). ``flag`` names the argument."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return
    base = os.path.abspath(root).rstrip(os.sep).count(os.sep)
    for directory, folders, names in os.walk(root):
        level = os.path.abspath(directory).rstrip(os.sep).count(os.sep) - base
        if depth is not None and level + 1 >= depth:
            folders_to_check, folders[:] = list(folders), []
        else:
            folders_to_check = folders
        for name in names + folders_to_check:
            path = os.path.join(directory, name)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise NotARegularFile(f"{path} (in {flag} {root}) is {kind(mode)}, not a regular file: jaxmask "
                                      "reads the files there; move it out of the folder")


# ---- Writing --------------------------------------------------------------------------

def _create_temporary(directory: str, name: str, lock=None) -> str:
    """A new empty file ``.<name>.<random>.jaxmask-tmp`` in ``directory``, journaled in ``lock`` first."""
    # A short prefix: the name itself may already be near the 255-byte limit of a file name.
    prefix = os.fsencode(name)[:64].decode(errors="ignore")
    while True:
        tmp = os.path.join(directory, f".{prefix}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        if lock is not None:
            lock.journal(tmp)      # before it exists: a kill after the creation still finds it listed
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except FileExistsError:    # someone else's file of that name: never touched, another name tried
            if lock is not None:
                lock.settle(tmp, now=True)


def write_atomically(path: str, save: Callable[[str], None], lock=None) -> None:
    """``save(tmp)`` to a temporary name beside ``path``, then rename: no partial output, ever.

    The rename replaces a directory entry: an existing file (or link) at
    ``path`` is replaced, never written through. The temporary file is removed
    however the write ends, a Ctrl-C or SIGTERM included (its creation and the
    rename are never split by one: jaxmask/signals.py); with ``lock`` (the
    output's workdir.OutputLock) it is journaled before it is created, so a
    kill -9 leaves it to the next writer, which removes exactly it.
    """
    directory, name = os.path.split(path)
    tmp = None
    try:
        with signals.deferred():
            tmp = _create_temporary(directory, name, lock)
        save(tmp)
        os.chmod(tmp, 0o644)
        with signals.deferred():
            os.replace(tmp, path)
            done, tmp = tmp, None
            if lock is not None:
                lock.settle(done)
    except BaseException:
        if tmp is not None:
            with signals.deferred():
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                if lock is not None:
                    lock.settle(tmp)
        raise
