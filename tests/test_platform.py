"""Process-wide settings (jaxmask/platform.py): the persistent compilation cache and its log phrase.

The XLA-flag defaults are tested in tests/test_bench.py.
"""

import os
import subprocess
import sys

from conftest import REPO

from jaxmask import platform

HOME = os.path.expanduser("~")


def test_cache_folder_precedence_and_off():
    assert platform.compilation_cache_dir(None, {}) == os.path.join(HOME, ".cache", "jaxmask", "xla")
    assert platform.compilation_cache_dir(None, {"XDG_CACHE_HOME": "/c"}) == "/c/jaxmask/xla"
    jax_own = {"JAX_COMPILATION_CACHE_DIR": "/jax"}
    assert platform.compilation_cache_dir(None, jax_own) == "/jax"
    ours = {**jax_own, platform.CACHE_ENV: "~/mine"}
    assert platform.compilation_cache_dir(None, ours) == os.path.join(HOME, "mine")
    assert platform.compilation_cache_dir("/flag", ours) == "/flag"           # the flag wins
    assert platform.compilation_cache_dir("", {platform.CACHE_ENV: ""}) == platform.default_cache_dir({})
    for off in ("off", "OFF", "0", "false", "no"):
        assert platform.compilation_cache_dir(off, ours) is None
        assert platform.compilation_cache_dir(None, {**ours, platform.CACHE_ENV: off}) is None
    # "off" is spelled as for JAXMASK_XLA_DEFAULTS.
    assert platform.configure_xla_defaults({"XLA_FLAGS": "", platform.DISABLE_ENV: "off"}) == ""


def test_cache_phrase_counts_loaded_programs():
    before = {"lookups": 3, "hits": 1, "writes": 2}
    assert platform.describe_cache_use(before, before).startswith("compilation cache not used")
    phrase = lambda lookups, hits: platform.describe_cache_use(
        before, {"lookups": 3 + lookups, "hits": 1 + hits, "writes": 2 + lookups - hits})
    assert phrase(2, 2).startswith("compilation cache hit: 2 of 2 programs loaded from ")
    assert phrase(2, 0).startswith("compilation cache miss: 0 of 2 programs loaded from ")
    assert phrase(3, 1).startswith("compilation cache partial hit: 1 of 3 programs loaded from ")


COMPILE_ONE = r"""
import sys
import jax, jax.numpy as jnp
from jaxmask import platform
where = platform.configure_compilation_cache(sys.argv[1])
before = platform.cache_counts()
jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))))
print(where, "|", platform.describe_cache_use(before, platform.cache_counts()))
"""


def test_second_process_loads_what_the_first_compiled(tmp_path):
    """The cache works across processes on this backend, and the phrase says so (miss, hit, off)."""
    def run(setting):
        done = subprocess.run([sys.executable, "-c", COMPILE_ONE, setting], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    cache = str(tmp_path / "xla")
    first, second = run(cache), run(cache)
    assert first.startswith(f"{cache} | compilation cache miss: 0 of ")
    assert second.startswith(f"{cache} | compilation cache hit: ")
    lookups = int(second.split(" of ")[1].split()[0])
    assert lookups >= 1 and second.split("hit: ")[1].startswith(f"{lookups} of {lookups}")
    assert len(os.listdir(cache)) >= lookups
    assert run("off") == "None | compilation cache off"
