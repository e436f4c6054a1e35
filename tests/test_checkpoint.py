"""Checkpoints: kill -9 anywhere (even mid-save) and resume bit-identically; SIGTERM; device counts.

The kill tests run ``jaxmask train`` (smoke config, 10 rounds, a checkpoint
every 2) as subprocesses: one uninterrupted reference run, then one workdir
taken through a SIGKILL during the commit of checkpoint 4, a SIGKILL in the
middle of training, a SIGTERM, and a final resume to the end. Kill points are
chosen from the log lines, never by sleeping. The subprocesses share the
session's persistent compilation cache (tests/conftest.py) with
tests/test_train.py's run of the same programs, so at most the first of them
compiles, and every later one says so in its first-round log line. They are
slow (five training processes, ~1 min on 2 cores); their fast siblings are the
in-process tests below: a half-written checkpoint never counts and is cleaned
up, SIGTERM sets the stop reason, state and data position survive a restore
across device counts, a workdir of other shapes is refused.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import grain
import jax
import numpy as np
import pytest
from conftest import REPO, load_config

from jaxmask import build, checkpoint, parallel, resume, workdir

ROUNDS, EVERY = 10, 2
# The smoke config's programs (tests/test_train.py compiles the same ones) and a small
# data set crossing epochs every 0.75 rounds: the resumed data position is mid-epoch.
TRAIN_FLAGS = ["--config", os.path.join(REPO, "configs", "synth_hair.py:smoke"),
               f"--config.num_rounds={ROUNDS}", f"--config.checkpoint_every={EVERY}",
               "--config.data.num_train=48", "--config.data.num_validation=32"]

# `jaxmask train`, optionally with the commit (rename) of one checkpoint held
# back for a minute, so that a SIGKILL lands while that checkpoint is half saved.
LAUNCHER = r"""
import asyncio, os, sys
slow = os.environ.get("SLOW_COMMIT_STEP")
if slow:
    from orbax.checkpoint._src.path import atomicity
    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    async def slow_finalize(self, *args, **kwargs):
        if os.path.basename(str(self.get_final())) == slow:
            print(f"SLOW_COMMIT {slow}", file=sys.stderr, flush=True)
            await asyncio.sleep(120)
        return await finalize(self, *args, **kwargs)
    atomicity.AtomicRenameTemporaryPath.finalize = slow_finalize
from jaxmask.cli import main
main(["jaxmask", "train"] + sys.argv[1:])
"""


def train_env(**extra):
    """The environment of a one-device `jaxmask train` subprocess (tests/test_train.py's too)."""
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", **extra)
    # One CPU device: the conftest's 8 fake devices only slow the subprocesses down.
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
    return env


def train(workdir, env, *extra_flags, until=None, send=None, timeout=240):
    """Runs ``jaxmask train``; sends ``send`` when a log line contains ``until``. → (returncode, log)."""
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *TRAIN_FLAGS, f"--workdir={workdir}", *extra_flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines, sent = [], False
    try:
        for line in proc.stdout:
            lines.append(line)
            if until and not sent and until in line:
                proc.send_signal(send)
                sent = True
        returncode = proc.wait()
    finally:
        watchdog.cancel()
    log = "".join(lines)
    assert until is None or sent, f"never saw {until!r}:\n{log[-3000:]}"
    return returncode, log


def restore(workdir, step=None):
    config = load_config("synth_hair", "smoke")
    with checkpoint.TrainCheckpoints(workdir, read_only=True) as checkpoints:
        step = checkpoints.latest_step() if step is None else step
        return checkpoints.restore(build.from_config(config).template(), step)


def data_state(workdir, step):
    with open(os.path.join(workdir, "checkpoints", str(step), "data", "process_0-of-1.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The reference run and the interrupted one, with what each stage observed."""
    root = tmp_path_factory.mktemp("kill")
    env = train_env()
    reference, resumed = str(root / "reference"), str(root / "resumed")
    seen = {}
    seen["reference"] = train(reference, env)

    # 1. SIGKILL while checkpoint 4 is being committed (2 is complete).
    seen["kill_in_save"] = train(resumed, train_env(SLOW_COMMIT_STEP="4"),
                                 until="SLOW_COMMIT 4", send=signal.SIGKILL)
    seen["after_kill_in_save"] = sorted(os.listdir(os.path.join(resumed, "checkpoints")))
    with checkpoint.TrainCheckpoints(resumed, read_only=True) as checkpoints:
        seen["latest_after_kill_in_save"] = checkpoints.latest_step()
    # 2. SIGKILL in the middle of training (the first round after the resume is done).
    seen["kill_in_training"] = train(resumed, env, until="first round", send=signal.SIGKILL)
    seen["after_kill_in_training"] = sorted(os.listdir(os.path.join(resumed, "checkpoints")))
    # 3. SIGTERM: finish the round, save, exit 143 (128 + SIGTERM: not a finished training).
    seen["sigterm"] = train(resumed, env, until="first round", send=signal.SIGTERM)
    with checkpoint.TrainCheckpoints(resumed, read_only=True) as checkpoints:
        seen["latest_after_sigterm"] = checkpoints.latest_step()
    # 4. Resume to the end.
    seen["final"] = train(resumed, env)
    seen["root"], seen["env"] = root, env
    return reference, resumed, seen


@pytest.mark.slow
def test_every_run_says_whether_its_first_round_compiled(runs):
    _, _, seen = runs
    logs = [seen[name][1] for name in ("reference", "kill_in_training", "sigterm", "final")]
    lines = [[line for line in log.splitlines() if "first round (compilation included) took" in line]
             for log in logs]
    assert all(len(found) == 1 for found in lines), lines
    assert all("compilation cache " in found[0] for found in lines), lines
    # The reference run compiled or loaded every program of the round; the runs after it load them all.
    for found in lines[1:]:
        assert "compilation cache hit: " in found[0], found


@pytest.mark.slow
def test_sigkill_during_a_save_never_leaves_it_as_the_latest(runs):
    _, resumed, seen = runs
    returncode, _ = seen["kill_in_save"]
    assert returncode == -signal.SIGKILL
    # The killed save left its temporary directory, and only step 2 counts.
    assert any(name.startswith("4.orbax-checkpoint-tmp") for name in seen["after_kill_in_save"])
    assert "4" not in seen["after_kill_in_save"]
    assert seen["latest_after_kill_in_save"] == 2
    # The next run resumed from 2 and deleted the leftover.
    assert "resuming from the checkpoint of round 2" in seen["kill_in_training"][1]
    assert not any("tmp" in name for name in seen["after_kill_in_training"])


@pytest.mark.slow
def test_sigterm_exits_non_zero_with_a_checkpoint_of_the_round_reached(runs):
    _, resumed, seen = runs
    returncode, log = seen["sigterm"]
    assert returncode == 128 + signal.SIGTERM, log[-3000:]     # `train && export` must not export
    assert "stopped by SIGTERM" in log
    stopped = [line for line in log.splitlines() if "stopped at round" in line]
    assert len(stopped) == 1, log[-3000:]
    step = int(stopped[0].split("stopped at round ")[1].split()[0])
    assert step < ROUNDS and seen["latest_after_sigterm"] == step
    assert f"resuming from the checkpoint of round {step}" in seen["final"][1]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_bit_identical(runs):
    reference, resumed, seen = runs
    assert seen["reference"][0] == 0 and seen["final"][0] == 0, seen["final"][1][-3000:]
    expected, got = restore(reference, ROUNDS), restore(resumed, ROUNDS)
    assert int(got.step) == ROUNDS
    leaves = jax.tree_util.tree_leaves_with_path(expected)
    for (path, want), have in zip(leaves, jax.tree.leaves(got)):
        np.testing.assert_array_equal(have, want, err_msg=jax.tree_util.keystr(path))
    assert data_state(resumed, ROUNDS) == data_state(reference, ROUNDS)

    def records(workdir):   # metrics.jsonl: the killed runs' records after their checkpoint are gone
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return [(r["step"], r["split"], r.get("accuracy_revealed")) for r in map(json.loads, f)]
    assert [r for r in records(resumed) if r[1] == "validation"] == \
        [r for r in records(reference) if r[1] == "validation"]
    assert [r[:2] for r in records(resumed)] == sorted(set(r[:2] for r in records(resumed)))


def test_a_workdir_of_other_shapes_is_refused_naming_the_field(tmp_path):
    """`jaxmask train` on a workdir checkpointed with other masker widths: exit 1 before compiling."""
    config = load_config("synth_hair", "smoke")
    config.data.num_train, config.data.num_validation = 48, 32  # as TRAIN_FLAGS: only the widths differ
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:
        checkpoints.save(EVERY, _random_state(config, EVERY), _iterator(1))
    returncode, log = train(str(tmp_path), train_env(), "--config.masker_widths=(8,32)")
    assert returncode == 1
    assert "masker_widths=[8, 16]" in log and "masker_widths=[8, 32]" in log, log[-2000:]
    assert "first round" not in log
    assert os.listdir(tmp_path / "checkpoints") == [str(EVERY)]


def test_compare_configs_names_shape_fields_and_reports_the_rest():
    saved = load_config("synth_hair", "smoke")
    current = load_config("synth_hair", "smoke")
    current.num_rounds, current.num_devices, current.masker_learning_rate = 50, 1, 0.01
    changed = resume.compare_configs(saved, build.from_config(current), "ckpt")
    assert changed == {"num_rounds": (6, 50), "masker_learning_rate": (0.001, 0.01)}
    for field, value in [("image_size", 64), ("phi_hidden", 32), ("phi_widths", (8, 8)), ("optimizer", "sgd")]:
        other = load_config("synth_hair", "smoke")
        other[field] = value
        with pytest.raises(resume.IncompatibleCheckpointError, match=f"ckpt was trained with {field}="):
            resume.compare_configs(saved, build.from_config(other), "ckpt")


def _random_state(config, seed):
    """A single-copy TrainState of ``config``'s shapes with random contents (no compilation)."""
    rng = np.random.default_rng(seed)
    template = build.from_config(config).template()
    state = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(x.dtype) if x.dtype.kind == "f"
                         else np.asarray(x), template)
    return state.replace(step=np.int32(seed))


def _iterator(position):
    it = iter(grain.MapDataset.range(1000).seed(1).shuffle().to_iter_dataset().batch(4))
    for _ in range(position):
        next(it)
    return it


def test_a_checkpoint_written_before_a_state_field_existed_restores_with_it_empty(tmp_path):
    """TrainState gained ``identity`` (the identity adversaries): a checkpoint of the state as it was
    before restores, checksums verified, into a run without identity adversaries; one that has them
    is refused as before (its shapes differ)."""
    import flax

    @flax.struct.dataclass
    class StateBefore:      # TrainState's fields before the identity ensembles
        step: object
        masker: object
        phi: object
        complement: tuple = ()
        pattern: tuple = ()
        log_multipliers: dict = flax.struct.field(default_factory=dict)

    config = load_config("synth_hair", "smoke")
    config.adversary.identity_widths = ()        # a run as they were: no identity adversaries
    state = _random_state(config, 4)
    before = StateBefore(**{name: getattr(state, name) for name in
                            ("step", "masker", "phi", "complement", "pattern", "log_multipliers")})
    recipe = build.from_config(config)
    with checkpoint.TrainCheckpoints(str(tmp_path), recipe) as checkpoints:
        checkpoints._template = before           # the checksums of the state as it was then
        checkpoints.save(4, before, _iterator(0))
    with checkpoint.TrainCheckpoints(str(tmp_path), read_only=True) as checkpoints:
        restored = checkpoints.restore(recipe.template(), 4)
    assert restored.identity == ()
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(got), want)
    config.adversary.identity_widths = ((8, 8, 8, 8),)
    with checkpoint.TrainCheckpoints(str(tmp_path), read_only=True) as checkpoints:
        with pytest.raises(checkpoint.DamagedCheckpointError):
            checkpoints.restore(build.from_config(config).template(), 4)


def test_restore_across_device_counts_and_parallel_modes(tmp_path):
    """8 devices (jit) → 1 device → 8 devices (pmap): the state and the data position survive."""
    config = load_config("synth_hair", "smoke")
    config.image_size = 16
    built = {}

    def steps_for(mode, n):
        c = load_config("synth_hair", "smoke")
        c.image_size, c.parallel, c.num_devices = 16, mode, n
        return built.setdefault((mode, n), parallel.wrap(build.from_config(c)))

    saved = _random_state(config, 5)
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:
        eight = steps_for("jit", 8)
        placed = eight.place_state(saved)
        assert len(jax.tree.leaves(placed)[0].sharding.device_set) == 8
        checkpoints.save(5, eight.gather_state(placed), _iterator(3))
    template = build.from_config(config).template()
    for step, (mode, n) in [(5, ("jit", 1)), (6, ("pmap", 8))]:
        steps = steps_for(mode, n)
        data = _iterator(0)
        with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:
            assert checkpoints.latest_step() == step
            placed = steps.place_state(checkpoints.restore(template, step, data))
            gathered = steps.gather_state(placed)
            for want, got in zip(jax.tree.leaves(saved), jax.tree.leaves(gathered)):
                np.testing.assert_array_equal(np.asarray(got), want)
            np.testing.assert_array_equal(next(data), next(_iterator(3)))
            saved = gathered.replace(step=np.int32(step + 1))
            checkpoints.save(step + 1, saved, _iterator(3))


def test_a_partial_checkpoint_is_ignored_and_cleaned_up(tmp_path):
    """What a process killed mid-save leaves (orbax's temporary directory) never counts."""
    config = load_config("synth_hair", "smoke")
    config.image_size = 16
    state = _random_state(config, 2)
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:
        checkpoints.save(2, state, _iterator(1))
    root = tmp_path / "checkpoints"
    partial = root / "4.orbax-checkpoint-tmp"      # orbax names it so until the commit renames it
    shutil.copytree(root / "2", partial)
    for path in partial.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with checkpoint.TrainCheckpoints(str(tmp_path), read_only=True) as checkpoints:
        assert checkpoints.latest_step() == 2 and checkpoints.all_steps() == [2]
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:   # a training run opens it
        assert checkpoints.latest_step() == 2
        restored = checkpoints.restore(build.from_config(config).template())
    assert not partial.exists()
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(got, want)


def test_stop_on_signal_sets_the_reason_and_restores_handlers():
    previous = signal.getsignal(signal.SIGTERM)
    with workdir.StopOnSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is previous
