"""The ``--config`` flag shared by the commands that take an experiment config."""

from __future__ import annotations

import os

from ml_collections import config_flags

import jaxmask


def default_config_path(name: str = "synth_hair.py") -> str:
    """configs/<name> of the source checkout jaxmask runs from (the embedded default)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(jaxmask.__file__))),
                        "configs", name)


def define_config_flag() -> None:
    config_flags.DEFINE_config_file(
        "config", default_config_path(),
        "Experiment config file, optionally with an argument: configs/x.py[:arg]. "
        "Override fields with --config.field=value.", lock_config=True)
