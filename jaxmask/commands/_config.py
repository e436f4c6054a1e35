"""The ``--config`` flag shared by the commands that take an experiment config."""

from __future__ import annotations

from ml_collections import config_flags

from jaxmask.config_files import default_config_path


def define_config_flag() -> None:
    config_flags.DEFINE_config_file(
        "config", default_config_path(),
        "Experiment config file, optionally with an argument: configs/x.py[:arg]. "
        "Override fields with --config.field=value.", lock_config=True)
