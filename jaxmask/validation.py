"""Checks that turn a user's mistake into one line naming the thing and the fix, before long work.

Config checks are generic, by field-name pattern (new fields following the
naming convention are covered without being listed here):

  ``*_every``                   an interval in rounds: an integer ≥ 1
  ``num_rounds``, ``*batch_size``, ``*image_size``, ``*_widths`` entries: integers ≥ 1
                                (ensembles: a list of such lists)
  ``*_steps``                   an integer ≥ 0
  ``*learning_rate``            a finite number > 0
  ``num_classes``               ≥ 2 (one class is no task: Φ is right without looking)
  ``topk_fraction``             in (0, 1]
  ``*_accuracy``                a threshold in [0, 1]

``None`` passes (an optional field left unset): a field whose "off" value
is 0 should say so with ``None`` instead.

Path checks: a folder argument that is an existing file (or the reverse) and
an output that cannot be written are refused up front, so that nothing runs
for minutes before failing.
"""

from __future__ import annotations

import math
import os
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot be meant; the message names the field and the fix."""


def _flatten(config, prefix: str = "") -> dict[str, Any]:
    items = config.items() if hasattr(config, "items") else []
    flat = {}
    for key, value in items:
        if hasattr(value, "items"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(name: str, value) -> str | None:
    """Why ``value`` is not valid for field ``name`` (by its name's pattern), or None."""
    leaf = name.rsplit(".", 1)[-1]
    if value is None:          # an optional field left unset
        return None
    if leaf.endswith("_every") or leaf == "num_rounds" or leaf.endswith(("batch_size", "image_size")):
        if not _is_int(value) or value < 1:
            return "must be an integer ≥ 1"
    elif leaf.endswith("_steps"):
        if not _is_int(value) or value < 0:
            return "must be an integer ≥ 0"
    elif leaf.endswith("learning_rate"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or value <= 0:
            return "must be a finite number > 0"
    elif leaf == "num_classes":
        if not _is_int(value) or value < 2:
            return "must be an integer ≥ 2 (a single class is no task to learn)"
    elif leaf == "topk_fraction":
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            return "must lie in (0, 1]"
    elif leaf.endswith("_accuracy"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            return "must be an accuracy in [0, 1] (or unset: None)"
    elif leaf.endswith("_widths"):
        # An ensemble's widths (adversary.*_widths) are a list of such lists, one per member.
        members = value if value and all(isinstance(w, (tuple, list)) for w in value) else [value]
        for widths in members:
            if not isinstance(widths, (tuple, list)) or not widths or not all(_is_int(w) and w >= 1 for w in widths):
                return "must be a non-empty list of integers ≥ 1 (an ensemble: a non-empty list of such lists)"
    return None


def check_training_config(config) -> None:
    """ConfigError naming the first field whose value cannot be meant (see the module doc)."""
    for name, value in _flatten(config).items():
        why = _check_field(name, value)
        if why is not None:
            raise ConfigError(f"config.{name}={value!r} {why}: pass --config.{name}=<value>")


def check_folder_argument(path: str, flag: str) -> None:
    """A folder to create or reuse must not be an existing file (or a link to one)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} is a file, not a folder: pass a new or existing folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path}: {parent} is a file, so the folder cannot be created")


def check_writable_folder(path: str, flag: str) -> None:
    """``check_folder_argument``, then create the folder and check that a file can be written in it."""
    check_folder_argument(path, flag)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".jaxmask-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{flag} {path} cannot be written ({error.strerror}): pass a writable folder") from None
