"""``jaxmask train --config configs/x.py[:arg] --workdir DIR``.

Multi-host (docs/scaling.md): run the same command on every host. TPU pods
and SLURM (``srun``) are detected; elsewhere pass
``--coordinator_address HOST0:PORT --num_processes N --process_id I``.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from jaxmask.commands._config import define_config_flag


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
    flags.DEFINE_enum("distributed", "auto", distributed.MODES,
                      "auto: join jax.distributed when the run is multi-process; on: always call "
                      "jax.distributed.initialize() (JAX detects the cluster); off: never.")


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import distributed, train
    config, FLAGS = flags.FLAGS.config, flags.FLAGS
    try:
        # Before anything touches a device: the backends see the global topology once.
        how = distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                     FLAGS.process_id, FLAGS.distributed)
        logging.info("%s", distributed.startup_line(config, how))
        distributed.restrict_logging_to_main_process()
        train.train_and_evaluate(config, FLAGS.workdir)
    except (FloatingPointError, ValueError) as e:
        logging.error("%s", e)
        print(f"jaxmask train: error: {e}", file=sys.stderr)
        raise SystemExit(1)
