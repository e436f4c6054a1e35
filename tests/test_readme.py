"""The README's Python API example runs as written, in a fresh interpreter.

A fresh process matters: inside the suite other tests have imported jaxmask's submodules, which sets
them as attributes of the package, so an example that reads ``jaxmask.build`` without importing it
would pass here and fail for a user (it did).
"""

import os
import re
import subprocess
import sys

from conftest import REPO


def readme_python_blocks():
    text = open(os.path.join(REPO, "README.md")).read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_api_example_runs_in_a_fresh_interpreter():
    blocks = readme_python_blocks()
    assert len(blocks) == 1, "the README's Python API section holds one example"
    check = ('\nassert released.shape == batches["image"][0].shape\n'
             'assert 0 < float(mask.mean()) <= config.topk_fraction + 1e-6   # a capped reveal: at most K\n'
             'assert all(np.isfinite(float(v)) for v in metrics.values())\n'
             'print("README example ok")\n')
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
    result = subprocess.run([sys.executable, "-c", blocks[0] + check], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "README example ok" in result.stdout
