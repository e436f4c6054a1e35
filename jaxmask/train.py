"""``train_and_evaluate(config, workdir)``: the training loop, read top to bottom.

The loop owns I/O and bookkeeping only: batches come from the grain
pipeline (decoded once into a uint8 cache and, under jit, placed on the mesh
ahead of use), all math runs inside the compiled steps of ``parallel``, and
metrics reach the host once per ``log_every`` rounds (the loop never blocks
on a scalar in between). Each log record also says where the window's wall
time went (input wait, round, evaluation, checkpoint: ``metrics.PhaseTimer``);
records go to metrics.jsonl and TensorBoard events in the workdir.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmask import arguments, build, checkpoint, files, parallel, platform, selection
from jaxmask.data import pipeline
from jaxmask.metrics import MetricsWriter, PhaseTimer
from jaxmask.workdir import StopOnSignal


def evaluate_split(compiled: parallel.ParallelSteps, state, source, global_batch: int,
                   cache=None) -> dict[str, float]:
    """Φ accuracy on the revealed and the hidden part, and the revealed fraction, over ``source``.

    Also each adversary's accuracy, where the game has them (``accuracy_complement``,
    ``accuracy_pattern``). ``cache``: this process's ``ShardCache`` of ``source``
    (the same batches, no decoding).
    """
    totals, pixels_per_image = None, 0
    for batch in pipeline.eval_batches(source, global_batch=global_batch, cache=cache):
        sums = compiled.eval_step(state, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        pixels_per_image = batch["image"].shape[1] * batch["image"].shape[2]
    if totals is None:
        raise ValueError(f"evaluation split has {len(source)} examples, fewer than one batch of {global_batch}")
    totals = jax.device_get(totals)
    count = float(totals["count"])
    pixels = count * pixels_per_image
    accuracies = {f"accuracy_{key[len('correct_'):]}": float(value) / count
                  for key, value in totals.items() if key.startswith("correct_")}
    return {**accuracies, "revealed_fraction": float(totals["revealed"]) / pixels, "count": count}


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(
                f"non-finite {name}={value} in the rounds before round {step}: training stopped. "
                "Lower the learning rates, or use float32 if config.dtype is bfloat16.")


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _log(step, num_rounds, metrics, images_per_s, eta_s, times):
    parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    share = " ".join(f"{name}={100 * times[f'{name}_fraction']:.0f}%"
                     for name in ("input", "round", "eval", "checkpoint", "other"))
    logging.info("round %d/%d  %.1f img/s  ETA %s  time: %s  %s", step, num_rounds, images_per_s,
                 time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0))), share, parts)


def _due(step: int, every: int | None) -> bool:
    """Whether an ``*_every`` interval falls on ``step`` (None: never; the last round always counts elsewhere).

    The commands refuse an interval below 1 up front (jaxmask/config_checks.py); an API caller passing 0
    gets the same sentence here, not a ZeroDivisionError.
    """
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ValueError(f"an *_every interval of {every!r}: it must be an integer ≥ 1 (rounds), or None for never")
    return every is not None and step % every == 0


def train_and_evaluate(config, workdir: str, *, recipe: build.Recipe | None = None,
                       accept_unverified_checkpoint: bool = False) -> dict[str, Any]:
    """Trains the masker and Φ of ``config``; returns the gathered state and last metrics.

    ``recipe``: ``build.from_config(config)`` if the caller built it already
    (the method is built once per process); ``accept_unverified_checkpoint``:
    resume from a checkpoint without checksums (else refused: jaxmask/checkpoint.py).
    """
    # ---- Setup: the recipe (built once, handed down), devices, steps, data.
    workdir = os.path.abspath(arguments.path(workdir, "workdir"))
    accept_unverified_checkpoint = arguments.boolean(accept_unverified_checkpoint, "accept_unverified_checkpoint")
    recipe = build.from_config(config) if recipe is None else recipe
    os.makedirs(workdir, exist_ok=True)
    # Before anything compiles: a workdir whose checkpoint has other shapes or meaning is refused.
    checkpoints = checkpoint.TrainCheckpoints(workdir, recipe, accept_unverified=accept_unverified_checkpoint)
    try:
        compiled = parallel.wrap(recipe)     # nothing compiles yet: the first round does
        # The splits (each at least one batch), decoded once, and the batches (jit: placed on the mesh
        # ahead of use by a prefetch thread; pmap splits host batches itself).
        inputs = pipeline.training_inputs(config, mesh=compiled.mesh if compiled.mode == "jit" else None)
    except BaseException:
        checkpoints.close()
        raise
    logging.info("process %d/%d, %d local / %d global devices (%s), parallel=%s, k=%d of %d pixels",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 len(compiled.devices), compiled.devices[0].platform, compiled.mode, recipe.method.reveal.k,
                 config.image_size ** 2)
    for warning in recipe.warnings:
        logging.warning(warning)
    rounds_batches = config.predictor_steps + config.obfuscator_steps
    data = inputs.batches
    state = compiled.init_state(jax.random.key(config.seed))
    # Resume from the workdir's latest checkpoint, if any.
    state = checkpoints.resume(compiled, state, data)
    # Model selection: fresh validation probes at every evaluation; the best checkpoint's masker is
    # kept as WORKDIR/selected (jaxmask/selection.py). Process 0 only: nothing flows back into training.
    selector = None
    if config.selection.probe_epochs is not None and jax.process_index() == 0:
        selector = selection.Selector(config, workdir, recipe.method)
    if jax.process_index() == 0:   # one writer: a pod's hosts share the workdir
        # After the resume checks: a refused resume leaves the config.json of its checkpoint.
        text = config.to_json_best_effort(indent=2)
        files.write_atomically(os.path.join(workdir, "config.json"), lambda tmp: _write_text(tmp, text))

    # ---- Loop.
    first_round = int(jax.device_get(compiled.gather_state(state).step))
    # A resumed run rewrites the rounds after its checkpoint: TensorBoard drops the killed run's.
    writer = MetricsWriter(workdir, purge_step=first_round + 1 if first_round else None)
    timer = PhaseTimer()
    window, window_rounds = None, 0
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    images_per_round = config.batch_size * rounds_batches
    # The first round's log line says whether it compiled, and its process CPU time (which,
    # unlike the wall time, other load on the machine barely changes).
    cache_before, cpu_before = platform.cache_counts(), time.process_time()
    # Checkpoints every checkpoint_every rounds, at the end, and when SIGTERM/SIGINT
    # (or a multi-process preemption) asks to stop: the round finishes, then saves.
    with checkpoints, writer, StopOnSignal() as stop:
        for round_index in range(first_round, config.num_rounds):
            step = round_index + 1
            with timer.phase("input"):
                batches = next(data)
            with timer.phase("round"):   # dispatch only: the round runs on while the loop goes on
                state, metrics = compiled.play_round(state, batches)
                # Accumulate on device: no host sync until the log line.
                window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
            window_rounds += 1
            if round_index == first_round:
                jax.block_until_ready(state)
                logging.info("first round (compilation included) took %.1f s (%.1f s of CPU); %s",
                             timer.elapsed(), time.process_time() - cpu_before,
                             platform.describe_cache_use(cache_before, platform.cache_counts()))
                window, window_rounds = None, 0
                timer.reset()
            # This round's schedule, decided in one place (a stop asked for later adds a checkpoint).
            is_last = step == config.num_rounds
            evaluating = _due(step, config.eval_every) or is_last
            logging_now = window is not None and (_due(step, config.log_every) or is_last)
            checkpoint_due = _due(step, config.checkpoint_every) or is_last
            if logging_now:
                with timer.phase("round"):   # waits for the window's rounds to finish
                    train_metrics = {k: float(v) / window_rounds for k, v in jax.device_get(window).items()}
                # Before any checkpoint of these rounds is saved.
                _check_finite(step, train_metrics)
            if evaluating:
                with timer.phase("round"):   # queued rounds finish here, not inside the evaluation
                    jax.block_until_ready(state)
                with timer.phase("eval"):
                    eval_metrics = evaluate_split(compiled, state, inputs.validation, config.batch_size,
                                                  cache=inputs.validation_cache)
                    gathered = compiled.gather_state(state) if config.selection.probe_epochs is not None else None
                    if selector is not None:
                        eval_metrics = {**eval_metrics, **selector(step, gathered, config, eval_metrics)}
                logging.info("round %d validation: %s", step,
                             " ".join(f"{k}={v:.4f}" for k, v in eval_metrics.items()))
            # After the evaluation: a resumed run starts after this round and would skip it.
            stopping = stop.requested or checkpoints.reached_preemption(step)
            if checkpoint_due or stopping:
                with timer.phase("round"):
                    jax.block_until_ready(state)
                with timer.phase("checkpoint"):
                    checkpoints.save(step, compiled.gather_state(state), data)
            if logging_now:
                # The window's wall time includes this round's evaluation and checkpoint.
                times = timer.fractions()
                images_per_s = window_rounds * images_per_round / times["window_s"]
                eta = (config.num_rounds - step) * times["window_s"] / window_rounds
                if jax.process_index() == 0:
                    _log(step, config.num_rounds, train_metrics, images_per_s, eta, times)
                train_metrics = {**train_metrics, "images_per_s": images_per_s, **times}
                writer.write(step, "train", train_metrics)
                window, window_rounds = None, 0
                timer.reset()
            if evaluating:   # after the round's train record: records stay ordered by (step, split)
                writer.write(step, "validation", eval_metrics)
            if stopping:
                logging.warning("stopped at round %d (%s) with a checkpoint: run again to resume",
                                step, stop.reason or "preemption")
                break
    if hasattr(data, "close"):
        data.close()   # stops the prefetch threads now, not at interpreter exit

    return {"state": compiled.gather_state(state), "train": train_metrics, "validation": eval_metrics,
            "method": recipe.method, "stopped_by": stop.reason,
            "selected": None if selector is None else selector.path}
