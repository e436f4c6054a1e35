"""Loading ``configs/*.py`` files by path (they are not a package).

Variant configs build on a base file (``load_sibling(__file__, "synth_hair.py",
arg)``) so every config has the same keys and differs only where it says so.
"""

from __future__ import annotations

import importlib.util
import os


def load(path: str, arg: str | None = None):
    """``get_config(arg)`` of the config file at ``path``."""
    name = "jaxmask_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def default_config_path(name: str = "synth_hair.py") -> str:
    """configs/<name> of the source checkout jaxmask runs from (the embedded default)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", name)


def load_sibling(this_file: str, name: str, arg: str | None = None):
    """``get_config(arg)`` of config ``name`` in the folder of ``this_file``."""
    return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name), arg)
