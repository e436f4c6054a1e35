"""Loading ``configs/*.py`` files by path (they are not a package), checked like the command line.

``load("configs/synth_hair.py:smoke")`` (or ``load(path, arg)``) runs the
file's ``get_config(arg)`` and returns its ``ml_collections.ConfigDict``; the
package exports it as ``jaxmask.load_config``. The command line's ``--config``
goes through the same checks before ml_collections reads the file
(jaxmask/cli.py), so a bad config file is one line naming the file and the
fix, never a traceback: a path that is empty or names no regular file (a
FIFO would hang the import), a file that fails to import (a syntax error, a
missing module), no ``get_config``, a ``get_config`` that raises, or one that
returns anything but a ConfigDict.

Variant configs build on a base file (``load_sibling(__file__, "synth_hair.py",
arg)``) so every config has the same keys and differs only where it says so.
"""

from __future__ import annotations

import importlib.util
import os
import traceback

from jaxmask import arguments, files


class ConfigFileError(ValueError):
    """A config file that cannot give a config; the message names the file and the fix."""


def split_spec(spec: str, arg: str | None = None) -> tuple[str, str | None]:
    """('configs/x.py', 'smoke') from 'configs/x.py:smoke' (a path holding ':' that exists is kept whole)."""
    if arg is not None or os.path.exists(spec) or ":" not in spec:
        return spec, arg
    path, _, given = spec.partition(":")
    return path, given


def _where(error: BaseException, path: str) -> str:
    """' (at path:line)' of the innermost frame of ``error`` inside the config file ``path``."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    return f" (at {path}:{frames[-1].lineno})" if frames else ""


def load(spec: str, arg: str | None = None):
    """``get_config(arg)`` of the config file ``spec`` ('path' or 'path:arg'), a ConfigDict.

    Raises FileNotFoundError for a missing file, ConfigFileError (a ValueError)
    for every other way the file cannot give a config, each naming the file
    and the fix; TypeError/ValueError for an empty or non-path ``spec``.
    """
    import ml_collections
    path, arg = split_spec(arguments.path(spec, "path"), arg)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"config file {path} does not exist (the configs are in configs/*.py)")
    try:
        files.check_regular(path, "a config file", "pass a config file (configs/*.py)")
    except files.NotARegularFile as error:
        raise ConfigFileError(str(error)) from None
    name = "jaxmask_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigFileError(f"config file {path} is not a Python file: pass a .py file defining get_config(arg)")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ConfigFileError(f"config file {path}:{error.lineno}: SyntaxError: {error.msg}: fix the config "
                              "file") from None
    except (Exception, SystemExit) as error:      # the file is the user's: whatever it raises is one line
        raise ConfigFileError(f"config file {path} failed to import: {type(error).__name__}: {error}"
                              f"{_where(error, path)}: fix the config file") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigFileError(f"config file {path} defines no get_config(arg): a config file defines one that "
                              "returns an ml_collections.ConfigDict (see configs/synth_hair.py)")
    try:
        config = get_config() if arg is None else get_config(arg)
    except (Exception, SystemExit) as error:
        call = "get_config()" if arg is None else f"get_config({arg!r})"
        raise ConfigFileError(f"config file {path}: {call} raised {type(error).__name__}: {error}"
                              f"{_where(error, path)}: fix the config file or its argument") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigFileError(f"config file {path}: get_config returned {type(config).__name__}, not an "
                              "ml_collections.ConfigDict: build the config as ml_collections.ConfigDict() "
                              "(see configs/synth_hair.py) and return it")
    return config


# The package's name for the loader (jaxmask.load_config).
load_config = load


def default_config_path(name: str = "synth_hair.py") -> str:
    """configs/<name> of the source checkout jaxmask runs from (the embedded default)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", name)


def load_sibling(this_file: str, name: str, arg: str | None = None):
    """``get_config(arg)`` of config ``name`` in the folder of ``this_file``."""
    return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name), arg)
