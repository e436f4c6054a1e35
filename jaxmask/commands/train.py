"""``jaxmask train --config configs/x.py[:arg] --workdir DIR``."""

from __future__ import annotations

import sys

from absl import flags, logging

from jaxmask.commands._config import define_config_flag


def define_flags() -> None:
    define_config_flag()
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and config.json.",
                        required=True)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import train
    config = flags.FLAGS.config
    try:
        train.train_and_evaluate(config, flags.FLAGS.workdir)
    except (FloatingPointError, ValueError) as e:
        logging.error("%s", e)
        print(f"jaxmask train: error: {e}", file=sys.stderr)
        raise SystemExit(1)
