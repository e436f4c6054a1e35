"""Multi-host training on JAX's distributed runtime, on one machine.

Two processes × 2 CPU devices (``jax.distributed`` on 127.0.0.1, gloo
collectives) against one process × 4 devices, all through
``train.train_and_evaluate`` on the same global batches (tests/multihost_worker.py):

  stage 1   A: 2 processes, jit, round 1           B: 1 process, jit, round 1
  stage 2   C: 1 process, jit, resumes A's         D: 2 processes, pmap, resumes B's
               checkpoint, round 2                    checkpoint, round 2

A ≈ B and C ≈ D (float64 + SGD, as tests/test_parallel.py explains), both
processes of a run hold the same state, each resumed run trains one round
only, and the two processes read disjoint shards. The stages run their
processes concurrently; stage 2's single process reuses stage 1's compiled
programs through the session's persistent compilation cache (tests/conftest.py).

The two-stage runs are slow (six worker processes, ~1.5 min on 2 cores): the
fast siblings are the start-up checks below, tests/test_data_pipeline.py's
in-process shard tests (two processes' shards are disjoint and cover the split)
and tests/test_checkpoint.py's restore across device counts and parallel modes.

Also: ahead-of-time compilation of the TPU-pod configs on an 8-device CPU
mesh (sharding errors without hardware; prints the compiled memory analysis).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from conftest import REPO, load_config

WORKER = os.path.join(REPO, "tests", "multihost_worker.py")
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(name, root, workdir, *, processes, devices, rounds, parallel="jit"):
    """Starts one run (``processes`` worker processes); returns its Popen handles."""
    # The session's compilation cache and XLA flags (tests/conftest.py); the worker sets its own
    # device count.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    port = _free_port()
    handles = []
    for process_id in range(processes):
        log = open(root / f"{name}_{process_id}.log", "w")
        command = [sys.executable, WORKER, "--workdir", str(workdir), "--out", str(root / "out" / name),
                   "--devices", str(devices), "--rounds", str(rounds), "--parallel", parallel,
                   "--num_processes", str(processes), "--process_id", str(process_id),
                   "--port", str(port)]
        handles.append((f"{name}_{process_id}", subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log))
    return handles


def _wait(root, handles):
    deadline = time.time() + TIMEOUT_S
    failed = []
    for name, handle, log in handles:
        try:
            code = handle.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            code = "timeout"
        log.close()
        if code != 0:
            failed.append((name, code))
    if failed:
        for _, handle, _ in handles:
            if handle.poll() is None:
                handle.kill()
        tails = "\n".join(f"--- {name} ({code}):\n" + (root / f"{name}.log").read_text()[-3000:]
                          for name, code in failed)
        pytest.fail(f"worker processes failed: {failed}\n{tails}")


def _result(root, name, process_index=0):
    out = root / "out" / name
    with np.load(out / f"process_{process_index}.npz") as leaves:
        state = [leaves[k] for k in sorted(leaves.files)]
    info = json.loads((out / f"process_{process_index}.json").read_text())
    return state, info


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    started = time.time()
    stage1 = (_launch("A", root, root / "A", processes=2, devices=2, rounds=1)
              + _launch("B", root, root / "B", processes=1, devices=4, rounds=1))
    _wait(root, stage1)
    # Resume each topology from the other's checkpoint (copies: A and B stay as written).
    shutil.copytree(root / "A", root / "C")
    shutil.copytree(root / "B", root / "D")
    stage2 = (_launch("C", root, root / "C", processes=1, devices=4, rounds=2)
              + _launch("D", root, root / "D", processes=2, devices=2, rounds=2, parallel="pmap"))
    _wait(root, stage2)
    print(f"multihost runs: {time.time() - started:.1f} s")
    return root


def _assert_states_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_two_processes_join_one_runtime(runs):
    for index in (0, 1):
        _, info = _result(runs, "A", index)
        assert (info["process_index"], info["process_count"], info["how"]) == (index, 2, "flags")
        assert (info["local_devices"], info["global_devices"]) == (2, 4)
    startup = (runs / "A_0.log").read_text()
    assert "process 0/2 (flags): 2 local / 4 global cpu devices" in startup
    assert "mesh {'data': 4}, global batch 16 = 4 per device x 4" in startup
    # Only process 0 logs the loop; process 1 says who it is, then keeps quiet.
    assert "first round (compilation included)" in startup and "round 1 validation" in startup
    other = (runs / "A_1.log").read_text()
    assert "process 1/2 (flags)" in other
    assert "first round" not in other and "validation" not in other
    # ... and process 0 alone writes the workdir's files (one record per round, not one per process).
    records = [json.loads(line) for line in (runs / "A" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(1, "validation")]
    assert json.loads((runs / "A" / "config.json").read_text())["batch_size"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("run", ["A", "D"])
def test_both_processes_hold_the_same_state(runs, run):
    state_0, info_0 = _result(runs, run, 0)
    state_1, info_1 = _result(runs, run, 1)
    for a, b in zip(state_0, state_1):
        np.testing.assert_array_equal(a, b)
    assert info_0["validation"] == info_1["validation"]


@pytest.mark.slow
def test_two_processes_match_one_process(runs):
    two, two_info = _result(runs, "A")
    one, one_info = _result(runs, "B")
    assert two_info["step"] == one_info["step"] == 1
    _assert_states_close(two, one)
    for key, value in one_info["validation"].items():
        assert two_info["validation"][key] == pytest.approx(value, rel=1e-5)


@pytest.mark.slow
def test_checkpoints_restore_across_process_counts(runs):
    # C: 1 process from the 2-process checkpoint; D: 2 processes (pmap) from the 1-process one.
    one, one_info = _result(runs, "C")
    two, two_info = _result(runs, "D")
    for info in (one_info, two_info):
        assert info["step"] == 2 and info["rounds_trained"] == 1, info
    assert "resuming from the checkpoint of round 1" in (runs / "C_0.log").read_text()
    assert "resuming from the checkpoint of round 1" in (runs / "D_0.log").read_text()
    _assert_states_close(two, one)


@pytest.mark.slow
def test_processes_read_disjoint_shards(runs):
    shards = [_result(runs, "A", i)[1]["shards"] for i in (0, 1)]
    train = [set(s["train_epoch"]) for s in shards]
    evaluated = [s["eval"] for s in shards]
    # An epoch of each process's shard: every record once, none in both processes.
    assert all(len(t) == len(s["train_epoch"]) == 20 for t, s in zip(train, shards))
    assert not train[0] & train[1] and train[0] | train[1] == set(range(40))
    assert not set(evaluated[0]) & set(evaluated[1])
    assert sorted(evaluated[0] + evaluated[1]) == list(range(40))


# ---- Start-up checks that need no second process.

def test_detect_multi_process_runs():
    from jaxmask import distributed
    assert distributed.detect("10.0.0.1:1234", {}) == "flags"
    assert distributed.detect("", {"JAX_COORDINATOR_ADDRESS": "h:1"}) == "env"
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}
    assert distributed.detect("", slurm) is None           # the batch script itself, not a task
    step = {**slurm, "SLURM_STEP_NODELIST": "gpu[01-02]"}
    assert distributed.detect("", step) == "slurm"
    assert distributed.detect("", {**step, "SLURM_NTASKS": "1"}) is None
    assert distributed.detect("", {"OMPI_COMM_WORLD_SIZE": "4"}) == "openmpi"
    assert distributed.detect("", {}) is None


def test_initialize_single_process_and_bad_arguments():
    from jaxmask import distributed
    assert distributed.initialize(environ={}) is None
    assert distributed.initialize(mode="off", environ={"SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "4"}) is None
    with pytest.raises(ValueError, match="no coordinator"):
        distributed.initialize(num_processes=2, process_id=1, environ={})
    with pytest.raises(ValueError, match="needs --num_processes and --process_id"):
        distributed.initialize("127.0.0.1:1234", environ={})
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' is not an integer"):
        distributed.initialize(environ={"JAX_NUM_PROCESSES": "two"})
    with pytest.raises(ValueError, match="distributed mode"):
        distributed.initialize(mode="maybe", environ={})


def test_startup_line_and_indivisible_global_batch(smoke_config):
    from jaxmask import distributed
    line = distributed.startup_line(smoke_config)
    assert line.startswith("process 0/1 (single process): 8 local / 8 global cpu devices")
    assert "mesh {'data': 8}, global batch 16 = 2 per device x 8" in line
    smoke_config.batch_size = 12
    with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
        distributed.startup_line(smoke_config)


# ---- The TPU-pod configs compile on an 8-device mesh.

@pytest.mark.parametrize("name", ["celeba_hair_tpu_pod", "ferplus_tpu_pod"])
def test_tpu_pod_config_differs_from_single_host_in_batch_and_dtype_only(name):
    config = load_config(name)
    single_host = load_config(name.replace("_tpu_pod", ""))
    changed = {k for k in config if config[k] != single_host[k]}
    assert changed == {"batch_size", "dtype"}
    assert config.batch_size >= 1024 and config.dtype == "bfloat16" and config.parallel == "jit"


def _compile_pod_round(config):
    """AOT-compiles ``config``'s round on the 8-device mesh and checks its shardings and donation."""
    from jaxmask import build, parallel
    shape = (config.image_size, config.image_size, config.channels)
    recipe = build.from_config(config)
    steps = parallel.wrap(recipe)
    assert dict(steps.mesh.shape) == {"data": 8}
    replicated = NamedSharding(steps.mesh, P())
    by_step_example = NamedSharding(steps.mesh, P(None, "data"))
    abstract = recipe.abstract_state
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
    num_steps = config.predictor_steps + config.obfuscator_steps
    batches = {
        "image": jax.ShapeDtypeStruct((num_steps, config.batch_size, *shape), jnp.float32,
                                      sharding=by_step_example),
        "label": jax.ShapeDtypeStruct((num_steps, config.batch_size), jnp.int32, sharding=by_step_example)}
    # LLVM at -O0: how well the CPU code is optimised has no bearing on what is checked here (shardings,
    # donation, buffer sizes, all decided on the HLO before code generation); 18% less compile CPU.
    compiled = steps.round_fn.lower(state, batches).compile({"xla_backend_optimization_level": 0})

    # The round's input batches stay sharded, its state replicated (and donated).
    state_shardings, batch_shardings = compiled.input_shardings[0]
    assert all(s.is_equivalent_to(replicated, x.ndim) for s, x in
               zip(jax.tree.leaves(state_shardings), jax.tree.leaves(abstract)))
    assert batch_shardings["image"].is_equivalent_to(by_step_example, 5)
    assert batch_shardings["label"].is_equivalent_to(by_step_example, 2)
    memory = compiled.memory_analysis()
    params = sum(x.size for x in jax.tree.leaves((abstract.masker.params, abstract.phi.params)))
    print(f"\nglobal batch {config.batch_size} over 8 devices, {params / 1e6:.2f} M parameters; "
          f"per device: arguments {memory.argument_size_in_bytes / 2**20:.1f} MiB, "
          f"outputs {memory.output_size_in_bytes / 2**20:.1f} MiB (aliased "
          f"{memory.alias_size_in_bytes / 2**20:.1f} MiB), temporaries {memory.temp_size_in_bytes / 2**20:.1f} MiB")
    assert memory.alias_size_in_bytes > 0          # the donated state is reused in place


@pytest.mark.slow
def test_tpu_pod_config_compiles_on_eight_devices():
    """The pod config as it is (64×64, paper widths; ~1.5 min on 2 cores). ferplus_tpu_pod has the
    same game and shapes but for num_classes: one compile is enough."""
    _compile_pod_round(load_config("celeba_hair_tpu_pod"))


def test_tpu_pod_config_at_smoke_size_compiles_on_eight_devices():
    """The fast sibling: the pod config's game, global batch, dtype and mesh, on the smoke model
    with one predictor step a round."""
    config = load_config("celeba_hair_tpu_pod", "smoke")
    config.batch_size = load_config("celeba_hair_tpu_pod").batch_size
    config.predictor_steps = 1
    assert (config.dtype, config.parallel, config.game) == ("bfloat16", "jit", load_config("celeba_hair_tpu_pod").game)
    _compile_pod_round(config)
