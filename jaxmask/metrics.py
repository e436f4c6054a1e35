"""Where the loop's metrics go (metrics.jsonl and TensorBoard events) and where its time goes.

``MetricsWriter`` writes every record twice, on process 0 only (a pod's
hosts share the workdir): one JSON line in ``workdir/metrics.jsonl`` (what
``jaxmask export``/``report`` read) and one scalar per key, tagged
``<split>/<key>``, in TensorBoard event files in the workdir itself, so
``tensorboard --logdir WORKDIR`` shows them as flax examples and big_vision
users expect. Events are written by tensorboardX (no TensorFlow needed).

``PhaseTimer`` splits a log window's wall time into the phases the loop
runs: waiting for input, the compiled round (dispatch, and the syncs that
wait for it), evaluation, checkpointing; the rest is "other" (logging,
Python). It only reads the host clock, so it never adds a device sync.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Iterator

import jax

PHASES = ("input", "round", "eval", "checkpoint")


class MetricsWriter:
    """Appends records to ``workdir/metrics.jsonl`` and to TensorBoard event files in ``workdir``.

    ``purge_step``: a resumed run's first round; TensorBoard drops the events
    of a killed run from that step on (metrics.jsonl is rewound by
    ``checkpoint.rewind_metrics``). ``tensorboard=False``: JSONL only.
    """

    def __init__(self, workdir: str, *, purge_step: int | None = None, tensorboard: bool = True):
        self.workdir, self.purge_step, self.tensorboard = workdir, purge_step, tensorboard
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = jax.process_index() == 0
        self.summary = None

    def _summary_writer(self):
        # Opened at the first record, not before the first round: process 0
        # must not reach the round's first collective seconds after the others
        # (multi-process CPU runs time out after 30 s there).
        if self.summary is None and self.tensorboard:
            from tensorboardX import SummaryWriter   # only the writing process needs it
            # flush_secs is a fallback: write() flushes once per record anyway
            # (one per log window), so a crash loses nothing that was logged.
            self.summary = SummaryWriter(self.workdir, purge_step=self.purge_step or None, flush_secs=30)
        return self.summary

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        if self._summary_writer() is not None:
            for key, value in values.items():
                self.summary.add_scalar(f"{split}/{key}", value, global_step=int(step))
            self.summary.flush()

    def close(self) -> None:
        if self.summary is not None:
            self.summary.close()
        self.summary, self.tensorboard = None, False

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(path: str) -> list[dict]:
    """The records of a metrics.jsonl, in order ([] if it does not exist).

    A crash mid-write leaves a torn last line (no newline, not JSON): it is
    dropped with a warning naming the file. Any other line that is not a JSON
    object is corruption: ValueError naming the file and the line.
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as error:      # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if number == len(lines):     # the last line, without its newline: a write cut short
                from absl import logging
                logging.warning("%s: line %d is incomplete (a run stopped while writing it): ignored",
                                path, number)
                break
            raise ValueError(f"{path}:{number} is not a metrics record ({error}): the file is damaged; "
                             f"delete that line (or the file: it is only the log) and run again") from None
        records.append(record)
    return records


class PhaseTimer:
    """Wall time per phase since the last ``reset``; ``fractions()`` for the log record.

    The compiled round is asynchronous: its dispatch returns at once, and the
    device time shows up where the host next waits for it (the metrics pull
    at a log line, the state sync before an evaluation or a checkpoint): the
    loop times those waits as "round". "input" is the time blocked on the
    input iterator; a device with queued rounds keeps computing meanwhile, so
    it is an upper bound on the time the device starved.
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.start = self.clock()
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise KeyError(f"unknown phase {name!r}: expected one of {PHASES}")
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] += self.clock() - start

    def elapsed(self) -> float:
        return self.clock() - self.start

    def fractions(self) -> dict[str, float]:
        """``<phase>_fraction`` of the window's wall time for each phase, plus ``other`` and ``window_s``."""
        wall = max(self.elapsed(), 1e-9)
        out = {f"{name}_fraction": seconds / wall for name, seconds in self.seconds.items()}
        out["other_fraction"] = max(0.0, 1.0 - sum(out.values()))
        out["window_s"] = wall
        return out
