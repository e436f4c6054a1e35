"""``train_and_evaluate(config, workdir)``: the training loop, read top to bottom.

The loop owns I/O and bookkeeping only: batches come from the grain
pipeline, all math runs inside the compiled steps of ``parallel``, and
metrics reach the host once per ``log_every`` rounds (the loop never blocks
on a scalar in between).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmask import checkpoint, parallel
from jaxmask.data import pipeline


class MetricsWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl`` (process 0 only)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = jax.process_index() == 0

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def evaluate_split(steps: parallel.ParallelSteps, state, source, global_batch: int) -> dict[str, float]:
    """Φ accuracy on the revealed and the hidden part (and each adversary's, where the game has
    them: ``accuracy_complement``, ``accuracy_pattern``), and the revealed fraction, over ``source``."""
    totals = None
    for batch in pipeline.eval_batches(source, global_batch=global_batch):
        sums = steps.eval_step(state, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"evaluation split has {len(source)} examples, fewer than one batch of {global_batch}")
    totals = jax.device_get(totals)
    count = float(totals["count"])
    pixels = count * source_pixels(source)
    accuracies = {f"accuracy_{key[len('correct_'):]}": float(value) / count
                  for key, value in totals.items() if key.startswith("correct_")}
    return {**accuracies, "revealed_fraction": float(totals["revealed"]) / pixels, "count": count}


def source_pixels(source) -> int:
    image = source[0]["image"]
    return int(image.shape[0] * image.shape[1])


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(
                f"non-finite {name}={value} in the rounds before round {step}: training stopped. "
                "Lower the learning rates, or use float32 if config.dtype is bfloat16.")


def _log(step, num_rounds, metrics, images_per_s, eta_s):
    parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    logging.info("round %d/%d  %.1f img/s  ETA %s  %s", step, num_rounds, images_per_s,
                 time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0))), parts)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    """Trains the masker and Φ of ``config``; returns the gathered state and last metrics."""
    # ---- Setup: devices, steps, data.
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    # Before anything compiles: a workdir whose checkpoint has other shapes is refused.
    checkpoints = checkpoint.TrainCheckpoints(workdir, config)
    image_shape = (config.image_size, config.image_size, config.channels)
    steps = parallel.build(config, image_shape)
    logging.info("process %d/%d, %d local / %d global devices (%s), parallel=%s, k=%d of %d pixels",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 len(steps.devices), steps.devices[0].platform, steps.mode, steps.method.k,
                 config.image_size ** 2)
    rounds_batches = config.predictor_steps + config.obfuscator_steps
    train_source = pipeline.get_source(config, "train")
    validation_source = pipeline.get_source(config, "validation")
    data = pipeline.train_iterator(
        train_source, global_batch=config.batch_size, steps_per_round=rounds_batches,
        seed=config.seed, worker_count=config.data.worker_count, prefetch=config.data.prefetch)
    state = steps.init_state(jax.random.key(config.seed))
    # Resume from the workdir's latest checkpoint, if any.
    state = checkpoints.resume(steps, state, data)
    writer = MetricsWriter(workdir)
    if jax.process_index() == 0:   # one writer: a pod's hosts share the workdir
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    # ---- Loop.
    first_round = int(jax.device_get(steps.gather_state(state).step))
    window, window_rounds, window_start = None, 0, time.time()
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    images_per_round = config.batch_size * rounds_batches
    # Checkpoints every checkpoint_every rounds, at the end, and when SIGTERM/SIGINT
    # (or a multi-process preemption) asks to stop: the round finishes, then saves.
    with checkpoints, checkpoint.StopOnSignal() as stop:
        for round_index in range(first_round, config.num_rounds):
            step = round_index + 1
            state, metrics = steps.train_round(state, next(data))
            # Accumulate on device: no host sync until the log line.
            window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
            window_rounds += 1
            if round_index == first_round:
                jax.block_until_ready(state)
                logging.info("first round (compilation included) took %.1f s", time.time() - window_start)
                window, window_rounds, window_start = None, 0, time.time()
            is_last = step == config.num_rounds
            if window is not None and (step % config.log_every == 0 or is_last):
                train_metrics = {k: float(v) / window_rounds for k, v in jax.device_get(window).items()}
                _check_finite(step, train_metrics)
                elapsed = time.time() - window_start
                images_per_s = window_rounds * images_per_round / max(elapsed, 1e-9)
                eta = (config.num_rounds - step) * elapsed / window_rounds
                if jax.process_index() == 0:
                    _log(step, config.num_rounds, train_metrics, images_per_s, eta)
                writer.write(step, "train", {**train_metrics, "images_per_s": images_per_s})
                window, window_rounds, window_start = None, 0, time.time()
            if step % config.eval_every == 0 or is_last:
                eval_metrics = evaluate_split(steps, state, validation_source, config.batch_size)
                logging.info("round %d validation: %s", step,
                             " ".join(f"{k}={v:.4f}" for k, v in eval_metrics.items()))
                writer.write(step, "validation", eval_metrics)
                window_start = time.time()
            # After the evaluation: a resumed run starts after this round and would skip it.
            stopping = stop.requested or checkpoints.reached_preemption(step)
            if (config.checkpoint_every > 0 and step % config.checkpoint_every == 0) or is_last or stopping:
                checkpoints.save(step, steps.gather_state(state), data)
            if stopping:
                logging.warning("stopped at round %d (%s) with a checkpoint: run again to resume",
                                step, stop.reason or "preemption")
                break

    return {"state": steps.gather_state(state), "train": train_metrics, "validation": eval_metrics,
            "method": steps.method, "stopped_by": stop.reason}
