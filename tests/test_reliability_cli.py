"""Issue 12, rules 6 and 7: a user's mistake is one line and a non-zero exit status, before long work.

The commands run in one subprocess that imports jaxmask once and forks a
child per command (absl defines flags once per process), so the whole file
costs about one interpreter start.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from jaxmask.data import prepare

DRIVER = r"""
import json, os, sys
import jax, absl.app, ml_collections  # noqa: F401  imported once, before the forks
import jaxmask.cli
results = []
for argv in json.loads(sys.argv[1]):
    out = os.path.join(sys.argv[2], f"{len(results)}.log")
    pid = os.fork()
    if pid == 0:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1); os.dup2(fd, 2)
        code = 0
        sys.argv = ["jaxmask", *argv]     # ml_collections reads the overrides from sys.argv
        try:
            jaxmask.cli.main(sys.argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else (print(e.code, file=sys.stderr) or 1))
        except BaseException:
            import traceback; traceback.print_exc(); code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    results.append([os.waitstatus_to_exitcode(status), open(out).read()])
print(json.dumps(results))
"""

SMOKE = os.path.join(REPO, "configs", "synth_hair.py:smoke")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "a_file").write_text("x")
    bundle = root / "bundle"
    bundle.mkdir()
    (root / "images").mkdir()
    cases = {
        "missing config file": ["train", "--config", os.path.join(REPO, "configs", "nope.py"),
                                "--workdir", str(root / "w1")],
        "config typo": ["train", "--config", SMOKE, "--config.topk_fracton=0.1", "--workdir", str(root / "w2")],
        "log_every=0": ["train", "--config", SMOKE, "--config.log_every=0", "--workdir", str(root / "w3")],
        "num_rounds=0": ["train", "--config", SMOKE, "--config.num_rounds=0", "--workdir", str(root / "w4")],
        "nan learning rate": ["train", "--config", SMOKE, "--config.masker_learning_rate=nan",
                              "--workdir", str(root / "w5")],
        "one class": ["train", "--config", SMOKE, "--config.num_classes=1", "--workdir", str(root / "w6")],
        "train workdir is a file": ["train", "--config", SMOKE, "--workdir", str(root / "a_file")],
        "run workdir is a file": ["run", "--config", SMOKE, "--workdir", str(root / "a_file")],
        "unprepared dataset": ["train", "--config", os.path.join(REPO, "configs", "celeba_hair.py:smoke"),
                               f"--config.data.data_dir={root / 'no_data'}", "--workdir", str(root / "w7")],
        "evaluate out is a file": ["evaluate", "--config", SMOKE, "--models", f"A={bundle}",
                                   "--out", str(root / "a_file")],
        "mask output is a file": ["mask", "--model", str(bundle), "--input", str(root / "images"),
                                  "--output", str(root / "a_file")],
        "mask input is a file": ["mask", "--model", str(bundle), "--input", str(root / "a_file"),
                                 "--output", str(root / "out")],
        "mask bundle missing": ["mask", "--model", str(root / "nothing"), "--input", str(root / "images"),
                                "--output", str(root / "out2")],
        "export workdir missing": ["export", "--workdir", str(root / "nothing"), "--out", str(root / "b2")],
    }
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(cases.values())), str(root)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return dict(zip(cases, results)), root


@pytest.mark.parametrize("case, expected", [
    ("missing config file", "nope.py: no such config file"),
    ("config typo", 'Did you mean "topk_fraction"'),
    ("log_every=0", "config.log_every=0 must be an integer ≥ 1"),
    ("num_rounds=0", "config.num_rounds=0 must be an integer ≥ 1"),
    ("nan learning rate", "config.masker_learning_rate=nan must be a finite number > 0"),
    ("one class", "config.num_classes=1 must be an integer ≥ 2"),
    ("train workdir is a file", "is a file, not a folder"),
    ("run workdir is a file", "is a file, not a folder"),
    ("unprepared dataset", "is not prepared"),
    ("evaluate out is a file", "--out"),
    ("mask output is a file", "exists and is not a folder"),
    ("mask input is a file", "is a file, not a folder"),
    ("mask bundle missing", "is not a masker bundle directory"),
    ("export workdir missing", "has no checkpoints"),
])
def test_a_user_mistake_is_one_line_and_a_non_zero_exit(outcomes, case, expected):
    results, root = outcomes
    code, log = results[case]
    assert code not in (0, 99), log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    assert expected in log, log[-2000:]
    assert not (root / "w3").exists() and not (root / "w4").exists()     # refused before anything started
    assert (root / "a_file").read_text() == "x"


def _folder(root, classes, seed=0):
    rng = np.random.default_rng(seed)
    for label in classes:
        os.makedirs(root / "train" / label)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / "train" / label / f"{i}.png")


def test_prepare_refuses_a_single_class_and_another_source_under_the_same_name(tmp_path):
    _folder(tmp_path / "one", ["cat"])
    with pytest.raises(ValueError, match="only one class"):
        prepare.prepare("image_folder", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "one"),
                        image_size=8)
    _folder(tmp_path / "first", ["cat", "dog"])
    _folder(tmp_path / "second", ["cat", "dog"], seed=1)
    data_dir = str(tmp_path / "tfds")
    first = prepare.prepare("image_folder", data_dir=data_dir, manual_dir=str(tmp_path / "first"), image_size=8)
    assert not first.reused
    again = prepare.prepare("image_folder", data_dir=data_dir, manual_dir=str(tmp_path / "first"), image_size=8)
    assert again.reused
    with pytest.raises(ValueError, match="was prepared from .*first.* not from .*second.*--overwrite"):
        prepare.prepare("image_folder", data_dir=data_dir, manual_dir=str(tmp_path / "second"), image_size=8)
    rebuilt = prepare.prepare("image_folder", data_dir=data_dir, manual_dir=str(tmp_path / "second"),
                              image_size=8, overwrite=True)
    assert not rebuilt.reused
    assert prepare.prepare("image_folder", data_dir=data_dir, manual_dir=str(tmp_path / "second"),
                           image_size=8).reused                       # now recorded as built from second


def test_config_checks_come_from_one_declaration_per_field(smoke_config):
    """Every field is declared once (type, range, what None means): an undeclared field (a typo in a
    config file) is refused with the nearest name, and every declared field refuses a value of the wrong
    type, and NaN where it takes a number, naming the field: derived from the declarations, not a list."""
    from jaxmask import build, config_checks
    build.check_training_config(smoke_config)          # the shipped config passes
    config = smoke_config.copy_and_resolve_references()
    config.unlock()
    config.topk_fracton = 0.1
    with pytest.raises(config_checks.ConfigError, match="config.topk_fracton is not a field.*did you mean config.topk_fraction"):
        build.check_training_config(config)
    for name, field in config_checks.TRAINING.items():
        bad = [object()] + ([float("nan")] if field.kind in ("int", "float") else [])
        for value in bad:
            config = smoke_config.copy_and_resolve_references()
            node, leaf = config, name
            *parents, leaf = name.split(".")
            for parent in parents:
                node = node[parent]
            with node.ignore_type():
                node[leaf] = value
            with pytest.raises(config_checks.ConfigError, match=f"config.{name}="):
                build.check_training_config(config)
    for name, value, message in [("cap_threshold", 1.5, r"in \(0, 1\)"), ("channels", 2, r"one of \(1, 3\)"),
                                 ("batch_size", 10 ** 11, "integer in"), ("eval_every", 0, "use None")]:
        with pytest.raises(config_checks.ConfigError, match=f"config.{name}=.*{message}"):
            build.check_training_config(_set(smoke_config, name, value))
    build.check_training_config(_set(smoke_config, "eval_every", None))   # optional fields left unset pass
    # An empty ensemble is the identity adversaries' off-switch only: the hidden part's judges are needed.
    build.check_training_config(_set(smoke_config, "adversary.identity_widths", ()))
    with pytest.raises(config_checks.ConfigError, match="complement_widths=\\(\\).*silently vanish"):
        build.check_training_config(_set(smoke_config, "adversary.complement_widths", ()))
    with pytest.raises(config_checks.ConfigError, match="pattern_widths=\\(\\) with pattern_weight > 0"):
        build.check_training_config(_set(smoke_config, "adversary.pattern_widths", ()))
    build.check_training_config(_set(_set(smoke_config, "adversary.pattern_widths", ()), "adversary.pattern_weight", 0.0))


def _set(config, name, value):
    out = config.copy_and_resolve_references()
    *parents, leaf = name.split(".")
    node = out
    for parent in parents:
        node = node[parent]
    with node.ignore_type():
        node[leaf] = value
    return out
