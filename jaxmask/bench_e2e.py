"""End to end vs the round: ``jaxmask bench --end_to_end``, in one process on one config.

Measures, on a prepared tfds dataset (``synth_faces`` is prepared under
``data_dir`` when the config reads it and it is missing):

1. the input pipeline alone, in images/s: the tfds records read and decoded
   one by one (``cache=False``, per process and with grain workers), the
   one-time decode into the uint8 cache (1 thread and all cores), batches
   gathered from the cache as float32 on the host, and as uint8 placed on
   the mesh with the float conversion on device (what ``jaxmask train`` uses);
2. the compiled round alone (``parallel.wrap``'s round on placed batches,
   median of ``repeats`` blocking calls), before and after step 3;
3. ``train.train_and_evaluate`` for ``rounds`` rounds after its first
   (compiling) round, reading its own log record: images/s over the window
   (final evaluation and checkpoint included) and over its training part
   only, and where the time went.

The ratio end-to-end / round uses the mean of the two round measurements,
so drift from other load during the run shows as their spread.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `jaxmask bench` without --end_to_end never loads grain or tfds.

import os
import statistics
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np


def _rate(next_item: Callable[[], Any], images_per_item: int, seconds: float) -> float:
    jax.block_until_ready(next_item())   # warm-up: threads/workers started, files opened
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        jax.block_until_ready(next_item())
        count += images_per_item
    return count / (time.perf_counter() - start)


def prepare_if_needed(config) -> None:
    """Builds the synth_faces variant ``config`` reads under ``config.data.data_dir`` if it is missing."""
    if config.dataset != "synth_faces":
        return   # real datasets need their raw files: `jaxmask prepare` first
    from jaxmask.data import prepare
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    params = prepare.params_for_experiment(config)
    prepare.prepare(**params)


def input_rates(config, *, workers=(0, 2), seconds: float = 3.0) -> dict[str, float]:
    """Images/s of each input path for ``config``'s train split (see the module docstring)."""
    from jaxmask import parallel
    from jaxmask.data import cache as cache_lib
    from jaxmask.data import pipeline
    source = pipeline.get_source(config, "train")
    steps_per_round = config.predictor_steps + config.obfuscator_steps
    per_round = config.batch_size * steps_per_round
    common = dict(global_batch=config.batch_size, steps_per_round=steps_per_round, seed=config.seed,
                  prefetch=config.data.prefetch)
    rates = {}
    for count in workers:
        iterator = pipeline.train_iterator(source, worker_count=count, cache=False, **common)
        rates[f"records_decoded_workers{count}"] = _rate(lambda: next(iterator), per_round, seconds)
        getattr(iterator, "close", lambda: None)()
    for threads in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        cache = cache_lib.ShardCache.build(source, *pipeline.process_shard(), threads=threads)
        rates[f"cache_build_threads{threads}"] = len(cache) / (time.perf_counter() - start)
    iterator = pipeline.train_iterator(source, cache=cache, **common)
    rates["cache_host_float"] = _rate(lambda: next(iterator), per_round, seconds)
    mesh = parallel.make_mesh(parallel.select_devices(config.num_devices))
    iterator = pipeline.train_iterator(source, cache=cache, mesh=mesh, **common)
    rates["cache_device_uint8"] = _rate(lambda: next(iterator), per_round, seconds)
    iterator.close()
    return rates


def round_seconds(config, repeats: int) -> list[float]:
    """Blocking times of ``repeats`` compiled rounds (after one warm-up) on placed batches."""
    from jaxmask import build, parallel
    from jaxmask.data import pipeline
    compiled = parallel.wrap(build.from_config(config))
    source = pipeline.get_source(config, "train")
    iterator = pipeline.train_iterator(
        source, global_batch=config.batch_size, seed=config.seed, cache=False,
        steps_per_round=config.predictor_steps + config.obfuscator_steps,
        mesh=compiled.mesh if compiled.mode == "jit" else None)
    batches = next(iterator)
    iterator.close()
    round_fn = compiled.play_round
    state = compiled.init_state(jax.random.key(config.seed))
    state, _ = jax.block_until_ready(round_fn(state, batches))    # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = round_fn(state, batches)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    return times


def end_to_end(config, rounds: int, workdir: str) -> dict[str, float]:
    """``train_and_evaluate`` for 1 + ``rounds`` rounds; its one log window covers the last ``rounds``."""
    from jaxmask import train
    config = config.copy_and_resolve_references()
    config.num_rounds = rounds + 1
    config.log_every = config.eval_every = config.num_rounds
    config.checkpoint_every = None       # only the final checkpoint (None: never on the way)
    start = time.perf_counter()
    result = train.train_and_evaluate(config, workdir)
    record = dict(result["train"])
    record["run_s"] = time.perf_counter() - start
    busy = 1.0 - record["eval_fraction"] - record["checkpoint_fraction"]
    record["images_per_s_training"] = record["images_per_s"] / max(busy, 1e-9)
    return record


def run(config, *, rounds: int = 4, repeats: int = 5, workers=(0, 2), seconds: float = 3.0,
        workdir: str | None = None) -> dict[str, Any]:
    """The three measurements and the ratio end-to-end / round (JSON-ready)."""
    if repeats < 5:
        raise ValueError(f"repeats={repeats}: the round time is a median of at least 5 repeats")
    prepare_if_needed(config)
    report: dict[str, Any] = {"input_images_per_s": input_rates(config, workers=workers, seconds=seconds)}
    images_per_round = config.batch_size * (config.predictor_steps + config.obfuscator_steps)
    before = round_seconds(config, repeats)
    with tempfile.TemporaryDirectory() as scratch:
        report["end_to_end"] = end_to_end(config, rounds, workdir or os.path.join(scratch, "train"))
    after = round_seconds(config, repeats)
    rates = [images_per_round / statistics.median(t) for t in (before, after)]
    report["round"] = {"times_before_s": before, "times_after_s": after,
                       "images_per_s_before": rates[0], "images_per_s_after": rates[1],
                       "images_per_s": float(np.mean(rates))}
    e2e = report["end_to_end"]
    report["ratio_end_to_end_over_round"] = e2e["images_per_s"] / report["round"]["images_per_s"]
    report["ratio_training_over_round"] = e2e["images_per_s_training"] / report["round"]["images_per_s"]
    # Load-independent: measured inside the one training run, the share of its
    # training time (evaluation and checkpoint excluded) spent in the round.
    report["training_time_in_round"] = e2e["round_fraction"] / max(
        1.0 - e2e["eval_fraction"] - e2e["checkpoint_fraction"], 1e-9)
    report["images_per_round"] = images_per_round
    report["cpu_count"] = os.cpu_count()
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"input pipeline (img/s, {report['cpu_count']} CPUs):"]
    lines += [f"  {name:<30}{rate:12.0f}" for name, rate in report["input_images_per_s"].items()]
    r, e = report["round"], report["end_to_end"]
    lines.append(f"round alone: {r['images_per_s']:.1f} img/s (before {r['images_per_s_before']:.1f}, "
                 f"after {r['images_per_s_after']:.1f})")
    lines.append(f"train_and_evaluate: {e['images_per_s']:.1f} img/s over the window "
                 f"({e['images_per_s_training']:.1f} without the final eval/checkpoint); time: " + ", ".join(
                     f"{name} {100 * e[f'{name}_fraction']:.1f}%"
                     for name in ("input", "round", "eval", "checkpoint", "other")))
    lines.append(f"end-to-end / round: {report['ratio_end_to_end_over_round']:.3f} "
                 f"(training part: {report['ratio_training_over_round']:.3f}; share of the training "
                 f"time spent in the round, same run: {report['training_time_in_round']:.3f})")
    return "\n".join(lines)
