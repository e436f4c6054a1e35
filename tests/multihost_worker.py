"""One process of a multi-host test run (tests/test_multihost.py starts it, N at a time).

    python tests/multihost_worker.py --workdir W --out O --devices 2 \
        [--num_processes 2 --process_id I --port P] --rounds R

Joins the distributed runtime through ``jaxmask.distributed.initialize``
(2 processes × 2 CPU devices, gloo collectives) unless ``--num_processes`` is
1, then runs ``train.train_and_evaluate`` on the workdir (resuming from its
checkpoint if it has one) and writes to ``O/process_<I>.npz`` the gathered
final state, with ``O/process_<I>.json`` describing the run.

Every run sees the same *global* batches, whatever its process count: round r's
batches are a pure function of r, and process i of n feeds rows
[i·B/n, (i+1)·B/n) of them (the real pipeline's per-process shuffle would
give a 1- and a 2-process run different global batches). They come from a grain
iterator, so the checkpoint saves and restores its position like the real one.
It also records which records the real pipeline hands this process
(``pipeline.train_iterator`` / ``eval_batches`` with the runtime's process index).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

IMAGE_SIZE = 16
STEPS_PER_ROUND = 2          # predictor_steps 1 + obfuscator_steps 1: half the compile of 3 + 1
GLOBAL_BATCH = 16
NUM_CLASSES = 4
SHARD_RECORDS = 40           # records of the shard-disjointness source


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, required=True, help="CPU devices of this process")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--parallel", default="jit")
    return parser.parse_args(argv)


def global_round_batches(round_index: int) -> dict[str, np.ndarray]:
    """Round ``round_index``'s global batches: image (S, B, H, W, 3) float32, label (S, B) int32."""
    rng = np.random.default_rng(1000 + round_index)
    return {"image": rng.uniform(size=(STEPS_PER_ROUND, GLOBAL_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3))
            .astype(np.float32),
            "label": rng.integers(0, NUM_CLASSES, size=(STEPS_PER_ROUND, GLOBAL_BATCH)).astype(np.int32)}


def round_batches_iterator(process_index: int, process_count: int):
    """A grain iterator (checkpointable position) of this process's rows of every round's batches."""
    import grain
    rows = GLOBAL_BATCH // process_count
    part = slice(process_index * rows, (process_index + 1) * rows)

    def local(round_index):
        return {k: v[:, part] for k, v in global_round_batches(int(round_index)).items()}

    return iter(grain.MapDataset.range(1_000_000).map(local).to_iter_dataset())


def validation_records(count: int = GLOBAL_BATCH) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [{"image": rng.uniform(size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
             "label": np.int32(i % NUM_CLASSES)} for i in range(count)]


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg) (conftest.py's loader, without its 8-device setup)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def make_config(args):
    config = load_config("synth_hair", "smoke")
    config.image_size = IMAGE_SIZE
    config.batch_size = GLOBAL_BATCH
    config.parallel, config.num_devices = args.parallel, 0
    # float64 + SGD, as in tests/test_parallel.py (its docstring says why).
    config.dtype, config.optimizer = "float64", "sgd"
    config.masker_learning_rate = config.phi_learning_rate = 0.05
    config.predictor_steps, config.obfuscator_steps = 1, 1
    # The paper's game: this worker tests processes, shards and checkpoints, not a
    # game, and the realx game's random masks drawn with the rbg PRNG (set below
    # for speed) depend on the per-device batch size (rbg is not vmap-invariant).
    # tests/test_parallel.py checks the realx game across devices.
    config.game, config.mask_channel, config.reveal = "paper", False, "exact"
    # The smallest networks the shapes allow: compile time is the test's cost.
    config.masker_widths, config.phi_widths, config.phi_hidden = (4, 8), (4,), 8
    config.num_rounds = args.rounds
    config.log_every = config.checkpoint_every = 1
    config.eval_every = 1000
    config.selection.probe_epochs = None   # model selection is tested in tests/test_selection.py
    return config


def shard_report() -> dict[str, list[int]]:
    """The record ids the real pipeline gives this process (its defaults: the runtime's index/count)."""
    import jax
    from jaxmask.data import pipeline
    process_count = jax.process_count()
    source = [{"image": np.zeros((2, 2, 1), np.float32), "label": np.int32(i)} for i in range(SHARD_RECORDS)]
    local_batch = 4 // process_count
    epoch = SHARD_RECORDS // process_count // local_batch
    train = pipeline.train_iterator(source, global_batch=4, steps_per_round=1, seed=0)
    seen = [int(x) for _ in range(epoch) for x in next(train)["label"].ravel()]
    evaluated = [int(x) for batch in pipeline.eval_batches(source, global_batch=4) for x in batch["label"]]
    return {"train_epoch": seen, "eval": evaluated}


def main(argv=None) -> None:
    started = time.time()
    args = parse_args(argv)
    # This process's device count, and the test session's other XLA flags (tests/conftest.py).
    os.environ["XLA_FLAGS"] = " ".join(
        [f"--xla_force_host_platform_device_count={args.devices}"]
        + [flag for flag in os.environ.get("XLA_FLAGS", "").split()
           if not flag.startswith("--xla_force_host_platform_device_count")])
    os.environ["JAX_PLATFORMS"] = "cpu"
    from jaxmask import platform
    platform.configure_xla_defaults()
    import jax
    from absl import flags, logging
    flags.FLAGS.mark_as_parsed()       # as under `jaxmask train` (absl parses them there)
    from jaxmask import distributed
    how = None
    if args.num_processes > 1:
        how = distributed.initialize(f"127.0.0.1:{args.port}", args.num_processes, args.process_id)
    jax.config.update("jax_enable_x64", True)
    # XLA's RngBitGenerator compiles the initialisers in a third of threefry's
    # time on CPU; every run here uses it, so they still start from one state.
    jax.config.update("jax_default_prng_impl", "rbg")
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)

    from jaxmask import parallel, train
    from jaxmask.data import pipeline
    config = make_config(args)
    logging.info("%s", distributed.startup_line(config, how))
    distributed.restrict_logging_to_main_process()

    shards = shard_report()      # the real pipeline, before the patches below
    rounds_trained = []
    wrap = parallel.wrap

    def counting_wrap(*wrap_args, **wrap_kwargs):
        # Counts the rounds this run trains: a resumed run trains only the rest.
        compiled = wrap(*wrap_args, **wrap_kwargs)

        def round_fn(state, batches):
            rounds_trained.append(1)
            return compiled.round_fn(state, batches)

        return dataclasses.replace(compiled, round_fn=round_fn)

    def train_iterator(source, **kwargs):
        assert kwargs["global_batch"] == GLOBAL_BATCH and kwargs["steps_per_round"] == STEPS_PER_ROUND
        return round_batches_iterator(jax.process_index(), jax.process_count())

    parallel.wrap = counting_wrap
    pipeline.train_iterator = train_iterator
    pipeline.get_source = lambda config, split: validation_records()
    ready = time.time()
    result = train.train_and_evaluate(config, args.workdir)
    trained = time.time()

    os.makedirs(args.out, exist_ok=True)
    leaves = {f"leaf_{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(result["state"]))}
    np.savez(os.path.join(args.out, f"process_{jax.process_index()}.npz"), **leaves)
    info = {
        "process_index": jax.process_index(), "process_count": jax.process_count(), "how": how,
        "local_devices": jax.local_device_count(), "global_devices": jax.device_count(),
        "step": int(result["state"].step), "rounds_trained": len(rounds_trained),
        "validation": result["validation"],
        "shards": shards,
        "seconds": {"start": ready - started, "train": trained - ready},
    }
    with open(os.path.join(args.out, f"process_{jax.process_index()}.json"), "w") as f:
        json.dump(info, f)
    if how is not None:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
