"""The suite's own harness (tests/conftest.py): a worker that dies of a fatal signal is reported
with the frames that say where, at the end of the run's output (where a log that keeps only its end
still has them)."""

import os
import shutil
import subprocess
import sys

from conftest import REPO

CRASHING_TEST = '''
import faulthandler


def test_dies_in_native_code():
    faulthandler._sigsegv()      # what a crash inside XLA or tensorstore does to the worker
'''


def test_a_crashed_worker_s_dump_ends_the_output(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(os.path.join(REPO, "tests", "conftest.py"), tests / "conftest.py")
    (tests / "test_crash_here.py").write_text(CRASHING_TEST)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_XDIST_WORKER", None)     # the inner run has a controller of its own
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "1",
                             "tests/test_crash_here.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-3000:]
    assert "worker 'gw0' crashed while running" in out, out[-3000:]
    dump = out[out.index("a test worker died: faulthandler's dump"):]
    # The worker's file: the fatal signal, then the test's own frame.
    assert "Segmentation fault" in dump, dump
    assert "test_crash_here.py\", line 6 in test_dies_in_native_code" in dump, dump
    # After the dump only pytest's last line: a log's end keeps it.
    assert len(dump.splitlines()) < 40, dump
