"""What the command line and the Python API accept, checked the same way in both.

Every entry point runs its arguments through these before it does anything
(docs/reliability.md, "The third tour"): the command line's flags and the
API's keyword arguments share one rule each, so the API keeps the command
line's promises.

* **Paths.** An empty or blank path is refused (it would mean the current
  folder: ``--input ""`` once masked the whole working folder); so is
  anything that is not a ``str``/``os.PathLike``.
* **Booleans** are ``bool`` (or numpy's): the string ``'false'`` is true to
  ``if``, so it is refused, as is ``1``.
* **Numbers** are numbers of the right kind (an ``int`` where a count is
  meant, never a ``bool`` or a string), finite, and inside their range.
* **Sizes are bounded before memory is asked for**: ``check_bytes`` refuses
  an allocation larger than the memory this machine has, naming what asked
  for it and the fix, before numpy, Pillow or XLA is asked for it.

Each error is one line naming the argument (``name``: the flag for the
command line, the keyword for the API) and the fix.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np


def path(value, name: str) -> str:
    """``value`` as a path string; TypeError unless str/PathLike, ValueError if empty or blank."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__} {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__} {value!r}")
    if not text.strip():
        raise ValueError(f"{name} is empty ({text!r}): pass a path (an empty path is not taken to mean the "
                         "current folder; pass . for that)")
    return text


def boolean(value, name: str) -> bool:
    """``value`` if it is a bool (Python's or numpy's); TypeError otherwise ('false' is true to ``if``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def integer(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in [low, high]; TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = (f"≥ {low}" if high is None else f"≤ {high}" if low is None else f"in [{low}, {high}]")
        raise ValueError(f"{name}={value} must be {span}")
    return value


def fraction(value, name: str) -> float:
    """``value`` if it is a real number in (0, 1] (a share of pixels); TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1], got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{name}={value} must lie in (0, 1] (the share of pixels revealed)")
    return value


def choice(value, name: str, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")
    return value


# ---- Memory --------------------------------------------------------------------------------

def physical_memory() -> int:
    """Bytes of RAM on this machine (cgroup limits not included); 2**40 where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} EB"


def check_bytes(needed: int, what: str, fix: str, budget: int | None = None) -> None:
    """ValueError unless ``needed`` bytes fit ``budget`` (default: this machine's memory), before asking for them."""
    budget = physical_memory() if budget is None else budget
    if needed > budget:
        raise ValueError(f"{what} needs {human_bytes(needed)}, more than the {human_bytes(budget)} "
                         f"{'this machine has' if budget == physical_memory() else 'allowed'}: {fix}")
