"""``jaxmask train --config configs/x.py[:arg] --workdir DIR``.

Multi-host (docs/scaling.md): run the same command on every host. TPU pods
and SLURM (``srun``) are detected; elsewhere pass
``--coordinator_address HOST0:PORT --num_processes N --process_id I``.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import signal
import sys

from absl import flags, logging

from jaxmask.commands._config import define_config_flag

# A second Ctrl-C aborts without a checkpoint (the first one stops after the round, with one).
STOPPED = ("the last completed checkpoint is kept (a save cut short is discarded by the next run); run the "
           "same command again to resume from it")
PATH_FLAGS = ("workdir",)


def define_flags() -> None:
    from jaxmask import distributed
    define_config_flag()
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and config.json.",
                        required=True)
    flags.DEFINE_string("coordinator_address", "",
                        "Multi-process run: host:port of process 0, the same on every process "
                        "(default: JAX_COORDINATOR_ADDRESS, or detected on TPU pods and SLURM).")
    flags.DEFINE_integer("num_processes", None,
                         "Multi-process run: number of processes (default: JAX_NUM_PROCESSES or detected).")
    flags.DEFINE_integer("process_id", None,
                         "Multi-process run: this process, 0 … num_processes-1 "
                         "(default: JAX_PROCESS_ID or detected).")
    flags.DEFINE_bool("accept_unverified_checkpoint", False,
                      "resume from a checkpoint that has no checksums/ (its contents cannot be verified; it is "
                      "still checked for NaN/inf)")
    flags.DEFINE_enum("distributed", "auto", distributed.MODES,
                      "auto: join jax.distributed when the run is multi-process; on: always call "
                      "jax.distributed.initialize() (JAX detects the cluster); off: never.")


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import build, config_checks, distributed, files, train
    config, FLAGS = flags.FLAGS.config, flags.FLAGS
    try:
        # User mistakes first, before anything starts: one line each.
        build.check_training_config(config)
        config_checks.check_folder_argument(FLAGS.workdir, "--workdir")
        files.check_tree(FLAGS.workdir, "--workdir")      # a resume reads its files: no FIFO hangs it
        recipe = build.from_config(config)     # the model builds (eval_shape): built once, handed down
        # Before anything touches a device: the backends see the global topology once.
        how = distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                     FLAGS.process_id, FLAGS.distributed)
        logging.info("%s", distributed.startup_line(config, how))
        distributed.restrict_logging_to_main_process()
        result = train.train_and_evaluate(config, FLAGS.workdir, recipe=recipe,
                                          accept_unverified_checkpoint=FLAGS.accept_unverified_checkpoint)
    except (FloatingPointError, OSError, ValueError) as e:
        logging.error("%s", e)
        print(f"jaxmask train: error: {e}", file=sys.stderr)
        raise SystemExit(1)
    if result.get("stopped_by"):
        # Non-zero, so that `jaxmask train … && jaxmask export …` never exports a half-trained masker.
        reason = result["stopped_by"]
        print(f"jaxmask train: stopped by {reason} at round {int(result['state'].step)} of "
              f"{config.num_rounds} with a checkpoint: run the same command again to resume", file=sys.stderr)
        raise SystemExit(128 + getattr(signal, reason, signal.SIGTERM))
