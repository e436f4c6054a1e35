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

The persistent compilation cache (``configure_compilation_cache``): ``jaxmask
train``, ``run``, ``mask`` and ``evaluate`` keep every program XLA compiles in
``~/.cache/jaxmask/xla`` (``$XDG_CACHE_HOME/jaxmask/xla`` where that is set),
so a second run of the same config loads its programs instead of compiling
them again (benchmarks/RESULTS.md). ``--compilation_cache=DIR`` or
``JAXMASK_COMPILATION_CACHE=DIR`` moves it, ``off`` turns it off (the flag
wins over the variable, the variable over JAX's own
``JAX_COMPILATION_CACHE_DIR``). Entries are keyed by the program, the devices,
``XLA_FLAGS`` and the jax/jaxlib versions, so a stale entry is never used;
the folder only grows: delete it to reclaim the space.
"""

from __future__ import annotations

import gc
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
CACHE_ENV = "JAXMASK_COMPILATION_CACHE"
# What turns a jaxmask switch off, in the environment and on the command line.
OFF = ("0", "false", "no", "off")


def is_off(value: str | None) -> bool:
    return value is not None and value.strip().lower() in OFF


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


def tune_garbage_collector() -> None:
    """Python's collector at higher thresholds, with everything allocated so far (the imports) frozen.

    Tracing a round allocates many short-lived objects, and at the default thresholds (700, 10, 10)
    the collector rescans the whole heap again and again: a cached first round of the default
    ``train`` is 5% faster, the in-process game/step tests take 9% less CPU (benchmarks/RESULTS.md).
    Process-wide: called by the command line and the test session, never on import.
    """
    gc.set_threshold(100_000, 50, 100)
    gc.freeze()


def configure_xla_defaults(environ=None) -> str:
    """Adds jaxmask's XLA defaults to ``XLA_FLAGS`` (user flags win) and returns the result.

    A no-op when ``JAXMASK_XLA_DEFAULTS`` is 0/false/no. Raises RuntimeError if
    a JAX backend already started (the flags would silently not apply).
    """
    environ = os.environ if environ is None else environ
    existing = environ.get("XLA_FLAGS", "")
    if is_off(environ.get(DISABLE_ENV)):
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


# ---- The persistent compilation cache.

def default_cache_dir(environ=None) -> str:
    """``$XDG_CACHE_HOME/jaxmask/xla``, or ``~/.cache/jaxmask/xla``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxmask", "xla")


def compilation_cache_dir(setting: str | None = None, environ=None) -> str | None:
    """Where compiled programs are kept, or None for off.

    ``setting`` (the ``--compilation_cache`` flag) wins, then
    ``JAXMASK_COMPILATION_CACHE``, then JAX's own ``JAX_COMPILATION_CACHE_DIR``,
    then ``default_cache_dir()``. An empty value counts as unset; 0/false/no/off is off.
    """
    environ = os.environ if environ is None else environ
    for value in (setting, environ.get(CACHE_ENV), environ.get("JAX_COMPILATION_CACHE_DIR")):
        if value is not None and value.strip():
            return None if is_off(value) else os.path.abspath(os.path.expanduser(value.strip()))
    return default_cache_dir(environ)


def configure_compilation_cache(setting: str | None = None, environ=None) -> str | None:
    """Points JAX's persistent compilation cache at ``compilation_cache_dir(setting)``; returns it.

    Every compiled program is kept, however quick its compilation (a command
    compiles a few dozen, the slow ones being the training round and the
    evaluation networks). Call before the first compilation: JAX opens the
    cache once per process. Off (None) turns JAX's cache off too.
    """
    import jax
    path = compilation_cache_dir(setting, environ)
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    _listen_to_cache_events()
    return path


def active_cache_dir() -> str | None:
    """The persistent compilation cache this process uses (however it was set), or None."""
    import jax
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir or None


_CACHE_EVENTS = {
    "/jax/compilation_cache/compile_requests_use_cache": "lookups",
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "writes",     # JAX counts a miss when it writes the entry
}
_cache_counts = dict.fromkeys(_CACHE_EVENTS.values(), 0)
_listening = False


def _on_cache_event(event: str, **_) -> None:
    name = _CACHE_EVENTS.get(event)
    if name is not None:
        _cache_counts[name] += 1


def _listen_to_cache_events() -> None:
    global _listening
    if not _listening:
        from jax import monitoring
        monitoring.register_event_listener(_on_cache_event)
        _listening = True


def cache_counts() -> dict[str, int]:
    """Compilations so far in this process: ``lookups`` in the persistent cache, ``hits``, ``writes``.

    Counted from JAX's monitoring events; take one snapshot before and one
    after a phase and pass both to ``describe_cache_use``.
    """
    _listen_to_cache_events()
    return dict(_cache_counts)


def describe_cache_use(before: dict[str, int], after: dict[str, int]) -> str:
    """One phrase for a log line: did the phase between the two snapshots load its programs from the cache?

    "hit" (every program loaded), "miss" (every program compiled), "partial
    hit", "not used" (nothing compiled: all compiled earlier in this process),
    or "off".
    """
    if active_cache_dir() is None:
        return "compilation cache off"
    lookups, hits = after["lookups"] - before["lookups"], after["hits"] - before["hits"]
    if lookups == 0:
        return "compilation cache not used (nothing compiled)"
    if hits == lookups:
        verdict = "hit"
    elif hits == 0:
        verdict = "miss"
    else:
        verdict = "partial hit"
    return f"compilation cache {verdict}: {hits} of {lookups} programs loaded from {active_cache_dir()}"
