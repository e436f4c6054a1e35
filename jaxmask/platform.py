"""Process-wide XLA settings jaxmask applies by default, and how to override them.

XLA reads ``XLA_FLAGS`` once, when the first backend starts, so
``configure_xla_defaults()`` must run before the first JAX computation
(``jaxmask.cli.main`` calls it before it imports a command). It only *adds*
flags: a flag already named in ``XLA_FLAGS`` keeps the user's value, and
``JAXMASK_XLA_DEFAULTS=0`` turns the defaults off altogether.

The defaults (measured in benchmarks/RESULTS.md):

* ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: on
  jaxlib 0.10 XLA:CPU hands every convolution to YNNPACK. Its forward
  convolutions are fine, but the *weight-gradient* convolutions (a window as
  large as the image) run 1.1–1.9× slower than on XLA's Eigen path.
  Keeping convolutions on Eigen makes the paper-size training round 1.40×
  faster (1.65× with the GEMM upsampling and reshape pooling of
  jaxmask/models.py) on a 2-vCPU Xeon, and changes no result beyond float
  rounding.

Unknown names in ``XLA_FLAGS`` abort the process, and these CPU flags are
experimental, so each default is tied to the jaxlib versions it was measured
on and is skipped on others (add a version to ``_CPU_DEFAULTS`` after
re-measuring with ``benchmarks/cpu_flags.py``).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import sys

# flag name → (value, [(lowest, first untested) jaxlib (major, minor)]).
_CPU_DEFAULTS: dict[str, tuple[str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "xla_cpu_experimental_ynn_fusion_type": ("-individual_convolution", ((0, 10), (0, 11))),
}

DISABLE_ENV = "JAXMASK_XLA_DEFAULTS"


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def xla_defaults(jaxlib_version: tuple[int, int] | None = None) -> dict[str, str]:
    """The flags jaxmask would add for this jaxlib (``{name: value}``, names without dashes)."""
    version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
    if version is None:
        return {}
    return {name: value for name, (value, (low, high)) in _CPU_DEFAULTS.items()
            if low <= version < high}


def _flag_names(flags: str) -> set[str]:
    names = set()
    for token in shlex.split(flags):
        name = token.lstrip("-").split("=", 1)[0]
        names.add(name[2:] if name.startswith("no") and name[2:].startswith("xla_") else name)
    return names


def merge_xla_flags(existing: str, defaults: dict[str, str]) -> str:
    """``existing`` plus ``--name=value`` for every default whose name it does not set."""
    present = _flag_names(existing)
    added = [f"--{name}={value}" for name, value in defaults.items() if name not in present]
    return " ".join([existing.strip(), *added]).strip()


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # private API moved: assume the caller knows what it does
        return False


def configure_xla_defaults(environ=None) -> str:
    """Adds jaxmask's XLA defaults to ``XLA_FLAGS`` (user flags win) and returns the result.

    A no-op when ``JAXMASK_XLA_DEFAULTS`` is 0/false/no. Raises RuntimeError if
    a JAX backend already started (the flags would silently not apply).
    """
    environ = os.environ if environ is None else environ
    existing = environ.get("XLA_FLAGS", "")
    if environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return existing
    merged = merge_xla_flags(existing, xla_defaults())
    if merged == existing:
        return existing
    if environ is os.environ and _backends_started():
        raise RuntimeError(
            "configure_xla_defaults() ran after a JAX backend started, so XLA_FLAGS would not "
            "apply: call it before the first JAX computation (jaxmask.cli.main does)")
    environ["XLA_FLAGS"] = merged
    return merged
