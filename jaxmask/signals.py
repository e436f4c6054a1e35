"""Steps a stop signal must not split: ``deferred()`` holds Ctrl-C and SIGTERM for a few lines.

Python runs a signal's handler between any two bytecodes of the main thread,
so a Ctrl-C (or the command line's SIGTERM, which raises like it) can land
between creating a temporary file and noting it for cleanup, or between a
rename and the bookkeeping after it: the file is then left behind with no
one to remove it (issue 25: ``.001.png.<random>.jaxmask-tmp`` left in a
release folder by a SIGTERM). Blocking the signal in the main thread does not
help: another thread (XLA's, grain's) receives it, and Python still runs the
handler in the main thread at its next bytecode.

``deferred()`` swaps the handlers of SIGINT and SIGTERM for one that only
records the signal; on exit it puts the previous handlers back and hands
them the recorded signal, so it is raised (or acted on) right after the
protected step, where the caller's ``except``/``finally`` cleans up. Outside
the main thread, where handlers cannot be changed, it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred():
    """Holds SIGINT and SIGTERM for the ``with`` body; delivers one that arrived as it exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def record(signum, frame):
        arrived.append(signum)

    previous = {}
    try:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, record)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            _deliver(arrived[0], previous.get(arrived[0]))


def _deliver(signum: int, handler) -> None:
    """What the handler in place before ``deferred()`` would have done with ``signum``."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL or handler is None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)      # the default action (terminate), as if it arrived now
