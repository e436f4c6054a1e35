"""Test setup, before jax is imported: 8 fake CPU devices, the XLA settings and compilation cache of
the session (subprocesses inherit both through the environment), and parsed absl flags.

Compiling dominates this suite, so:

* ``--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true``: LLVM compiles
  the smoke round with 1.7× less CPU time than at XLA's default level, and the compiled round runs
  as fast (measured on the 2-vCPU Xeon; -O0 compiles 2.2× faster but runs 1.9× slower, which the
  learning tests would pay for). A flag the user put in ``XLA_FLAGS`` wins.
* A persistent compilation cache shared by every test and subprocess: a program compiles once per
  cache, not once per jit object, test module or ``jaxmask`` subprocess. It lives in
  ``.pytest_cache/d/jaxmask-xla`` (git-ignored; ``pytest --cache-clear`` empties it, and a fresh
  clone starts cold); ``JAXMASK_COMPILATION_CACHE=DIR`` moves it and ``=off`` turns it off.
* Test modules run on parallel workers (pytest-xdist, ``-n auto --dist loadfile`` in
  pyproject.toml): each worker takes whole modules, so a module's fixtures are built once, and
  the longest modules are handed out first (``LONGEST_FIRST``), so that no worker is left
  running one of them alone at the end.
"""

import faulthandler
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")

sys.path.insert(0, REPO)
from jaxmask import platform  # noqa: E402  (imports no jax)

os.environ["XLA_FLAGS"] = platform.merge_xla_flags(os.environ.get("XLA_FLAGS", ""), {
    "xla_force_host_platform_device_count": "8", "xla_backend_optimization_level": "1",
    "xla_llvm_disable_expensive_passes": "true"})
os.environ.setdefault("JAX_PLATFORMS", "cpu")

COMPILATION_CACHE = platform.compilation_cache_dir(
    os.environ.get(platform.CACHE_ENV) or os.path.join(REPO, ".pytest_cache", "d", "jaxmask-xla"))
if COMPILATION_CACHE is None:
    os.environ[platform.CACHE_ENV] = "off"
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
else:
    # jaxmask commands read JAXMASK_COMPILATION_CACHE; this process and the `python -c`
    # subprocesses read JAX's own variables when they import jax.
    os.environ[platform.CACHE_ENV] = os.environ["JAX_COMPILATION_CACHE_DIR"] = COMPILATION_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# grain workers and absl logging expect parsed flags.
flags.FLAGS.mark_as_parsed()

# A test worker's heap grows over the session: the commands' collector settings (jaxmask/platform.py).
platform.tune_garbage_collector()


# A worker killed by a fatal signal (a crash in native code) prints faulthandler's dump into the
# middle of the run's output, where a log that keeps only its end loses it (CI's did, 2026-12-07:
# one worker crashed in test_checkpoint.py and only the dump's last lines were kept). So each worker
# also has faulthandler write to a file of its own, and the controller prints this run's dumps,
# shortened to the frames that say where, at the very end.
CRASH_DIR = os.path.join(REPO, ".pytest_cache", "d", "jaxmask-crashes")
_CRASH_FILE = pytest.StashKey()     # the worker's open dump file, kept for the session


@pytest.hookimpl(trylast=True)      # after pytest's own faulthandler plugin
def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:              # the controller (or one process, `-n 0`: the dump reaches stderr)
        if config.pluginmanager.hasplugin("xdist") and os.path.isdir(CRASH_DIR):
            for name in os.listdir(CRASH_DIR):      # an earlier run's files
                if name.endswith(".log"):
                    os.remove(os.path.join(CRASH_DIR, name))
        return
    os.makedirs(CRASH_DIR, exist_ok=True)
    config.stash[_CRASH_FILE] = dump = open(os.path.join(CRASH_DIR, f"{worker}-{os.getpid()}.log"), "w")
    faulthandler.enable(file=dump, all_threads=True)


def _where(dump: str, frames_per_thread: int = 4) -> list[str]:
    """A faulthandler dump cut to each thread's header, its innermost frames and this project's frames."""
    out, kept = [], 0
    for line in dump.splitlines():
        if not line.startswith("  File "):
            out.append(line)
            kept = 0
        elif kept < frames_per_thread or "/jaxmask/" in line or "/tests/" in line:
            out.append(line)
            kept += 1
    return [line for line in out if line.strip()]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if os.environ.get("PYTEST_XDIST_WORKER") is not None or not os.path.isdir(CRASH_DIR):
        return
    for name in sorted(os.listdir(CRASH_DIR)):
        with open(os.path.join(CRASH_DIR, name), errors="replace") as f:
            dump = f.read()
        if dump.strip():
            terminalreporter.write_sep("=", f"a test worker died: faulthandler's dump ({name}, shortened)")
            for line in _where(dump):
                terminalreporter.write_line(line[:300])


# The modules with the most CPU seconds (measured on the 2-vCPU Xeon, README "Testing"), longest first.
LONGEST_FIRST = ("test_learning.py", "test_evaluate.py", "test_parallel.py", "test_multihost.py",
                 "test_checkpoint.py", "test_games.py", "test_bench.py", "test_steps.py", "test_minimal.py")


def pytest_collection_modifyitems(config, items):
    """LONGEST_FIRST's modules first, then the rest; a stable sort keeps each module's own order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg), unlocked for test overrides."""
    from jaxmask import config_files
    return config_files.load(os.path.join(CONFIGS, f"{name}.py"), arg)


@pytest.fixture
def smoke_config():
    return load_config("synth_hair", "smoke")
