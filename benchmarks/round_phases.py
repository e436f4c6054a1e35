"""Where a round's first call goes: tracing, lowering, compiling (or loading from the cache), running.

    python benchmarks/round_phases.py --cache /tmp/phases            # compiles, fills the cache
    python benchmarks/round_phases.py --cache /tmp/phases            # loads from it
    python benchmarks/round_phases.py --cache /tmp/phases --config configs/synth_hair.py:smoke

Prints one JSON line per run. The persistent compilation cache skips only the compile: tracing and
lowering run in every process, and loading the executable is its own cost (benchmarks/RESULTS.md).
"""

import argparse
import json
import time

import jax
import numpy as np

from jaxmask import build, config_files, parallel, platform


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/synth_hair.py", help="FILE[:ARG], as `jaxmask train --config`")
    parser.add_argument("--cache", required=True, help="the persistent compilation cache folder to use")
    args = parser.parse_args()
    platform.configure_compilation_cache(args.cache)
    path, _, arg = args.config.partition(":")
    config = config_files.load(path, arg or None)
    config.num_devices = 1
    shape = (config.image_size, config.image_size, config.channels)
    steps = parallel.wrap(build.from_config(config))
    state = steps.init_state(jax.random.key(0))
    rng = np.random.default_rng(0)
    num_steps = config.predictor_steps + config.obfuscator_steps
    batches = jax.device_put({
        "image": rng.uniform(size=(num_steps, config.batch_size, *shape)).astype(np.float32),
        "label": rng.integers(0, config.num_classes, size=(num_steps, config.batch_size)).astype(np.int32)})
    cpu, start = time.process_time(), time.perf_counter()
    traced = steps.round_fn.trace(state, batches)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    before = platform.cache_counts()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()
    state, _ = compiled(state, batches)
    jax.block_until_ready(state)
    first_call_at = time.perf_counter()
    state, _ = compiled(state, batches)
    jax.block_until_ready(state)
    print(json.dumps({
        "config": args.config, "trace_s": round(traced_at - start, 2), "lower_s": round(lowered_at - traced_at, 2),
        "compile_or_load_s": round(compiled_at - lowered_at, 2), "first_call_s": round(first_call_at - compiled_at, 2),
        "second_call_s": round(time.perf_counter() - first_call_at, 2),
        "total_s": round(first_call_at - start, 2), "total_cpu_s": round(time.process_time() - cpu, 2),
        "cache": platform.describe_cache_use(before, platform.cache_counts())}))


if __name__ == "__main__":
    main()
