"""Test setup: 8 fake CPU devices (set before jax is imported) and parsed absl flags."""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# grain workers and absl logging expect parsed flags.
flags.FLAGS.mark_as_parsed()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg), unlocked for test overrides."""
    from jaxmask import config_files
    return config_files.load(os.path.join(CONFIGS, f"{name}.py"), arg)


@pytest.fixture
def smoke_config():
    return load_config("synth_hair", "smoke")
