"""Data parallelism: the same pure steps, wrapped by ``jit`` over a mesh or by ``pmap``.

``config.parallel``:
  * ``"jit"`` (default): a 1-D ``('data',)`` mesh over the devices, batches
    sharded along ``'data'``, the state replicated and donated. BatchNorm sees
    the global batch because XLA partitions the global computation.
  * ``"pmap"``: the steps under ``jax.pmap(axis_name='data')``; gradients and
    metrics are ``pmean``-ed and BatchNorm averages its statistics across the
    axis, so each device holds the single-device state.

Both take and return host-independent, *unreplicated-looking* objects where
the caller cares: ``init_state`` places a state, ``play_round`` and
``eval_step`` take host numpy batches (this process's share of the global
batch), ``gather_state`` returns the state as one copy. Both wrap the
method the run's ``build.Recipe`` holds (pmap: the same method with its
device axis, ``Method.with_axis_name``); nothing is rebuilt from the config.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmask.games import table
from jaxmask.state import Method

PARALLEL_MODES = ("jit", "pmap")
AXIS = "data"


def select_devices(num_devices: int) -> list[jax.Device]:
    """All devices (``num_devices`` ≤ 0) or the first ``num_devices`` of them.

    Multi-process, every process feeds its own devices, so each contributes
    the same number: the first ``num_devices / process_count`` of its own.
    """
    devices = jax.devices()
    if num_devices <= 0:
        return devices
    if num_devices > len(devices):
        raise ValueError(f"config.num_devices={num_devices} but only {len(devices)} devices are visible")
    processes = jax.process_count()
    if processes == 1:
        return devices[:num_devices]
    if num_devices % processes:
        raise ValueError(f"config.num_devices={num_devices} is not divisible by the {processes} processes: "
                         "each process feeds the same number of its own devices (0 = all devices)")
    per_process = num_devices // processes
    return [d for p in range(processes) for d in [d for d in devices if d.process_index == p][:per_process]]


def make_mesh(devices: list[jax.Device]) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh with Auto axes (sharding left to the compiler)."""
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,),
                             axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_divisible(global_batch: int, num_devices: int, what: str = "config.batch_size") -> None:
    if global_batch % num_devices:
        raise ValueError(
            f"{what}={global_batch} is not divisible by the {num_devices} devices of the data "
            f"axis: set it to a multiple of {num_devices} (e.g. {num_devices * max(1, global_batch // num_devices)}) "
            "or use --config.num_devices")


@dataclasses.dataclass(frozen=True)
class ParallelSteps:
    """Compiled steps for one config and one set of devices.

    Attributes:
      method: the static game (with ``axis_name`` set under pmap).
      devices: the devices of the data axis.
      init_state: rng → placed TrainState.
      place_state: single-copy TrainState → placed TrainState (e.g. after restore).
      gather_state: placed TrainState → single-copy TrainState (host-addressable).
      eval_step: (placed state, batch (B_local, ...)) → metric sums.
      round_fn, eval_fn: the wrapped steps on device arrays (jit: global
        arrays; pmap: a leading local-device axis), e.g. to
        ``.lower(...).compile()`` ahead of time.
    """
    method: Method
    mode: str
    devices: tuple
    mesh: Any
    init_state: Callable
    place_state: Callable
    gather_state: Callable
    place_batches: Callable
    eval_step: Callable
    round_fn: Callable
    eval_fn: Callable

    def play_round(self, state, batches):
        """(placed state, stacked batches (S, B_local, ...)) → (state, metrics): one round.

        Batches already on the mesh (jit: the prefetch thread placed them) go
        straight to the compiled round; host batches are placed first.
        """
        if self.mode == "pmap" or not all(isinstance(x, jax.Array) for x in jax.tree.leaves(batches)):
            batches = self.place_batches(batches)
        state, metrics = self.round_fn(state, batches)
        return state, (jax.tree.map(lambda x: x[0], metrics) if self.mode == "pmap" else metrics)


def _global_array(sharding, local):
    return jax.make_array_from_process_local_data(sharding, np.asarray(local))


def wrap(recipe) -> ParallelSteps:
    """The steps of a run's ``build.Recipe``, wrapped for ``config.parallel`` over ``config.num_devices``."""
    config = recipe.config
    if config.parallel not in PARALLEL_MODES:
        raise ValueError(f"config.parallel={config.parallel!r}: expected one of {PARALLEL_MODES}")
    devices = select_devices(config.num_devices)
    check_batch_divisible(config.batch_size, len(devices))
    if config.parallel == "jit":
        return _wrap_jit(recipe, devices)
    return _wrap_pmap(recipe, devices)


def _wrap_jit(recipe, devices) -> ParallelSteps:
    method = recipe.method
    mesh = make_mesh(devices)
    replicated = NamedSharding(mesh, P())
    by_example = NamedSharding(mesh, P(AXIS))            # (B, ...)
    by_step_example = NamedSharding(mesh, P(None, AXIS))  # (S, B, ...)

    # Donate the state: the old one is dead once the round returns.
    round_fn = jax.jit(functools.partial(table.play_round, method),
                       in_shardings=(replicated, by_step_example),
                       out_shardings=(replicated, replicated), donate_argnums=0)
    eval_fn = jax.jit(functools.partial(table.eval_step, method),
                      in_shardings=(replicated, by_example), out_shardings=replicated)

    def place_state(state):
        # Not jax.device_put: on a multi-process mesh it first checks that every
        # process holds the same values (one compiled allgather per leaf, ~17 s
        # for this state on 2 CPU processes). They do by construction: the same
        # seed, or the same checkpoint.
        return jax.tree.map(functools.partial(_global_array, replicated), state)

    def init_state(rng):
        return place_state(recipe.init(rng))

    def place_batches(batches):
        return jax.tree.map(functools.partial(_global_array, by_step_example), batches)

    def eval_step(state, batch):
        return eval_fn(state, jax.tree.map(functools.partial(_global_array, by_example), batch))

    return ParallelSteps(method, "jit", tuple(devices), mesh, init_state, place_state,
                         lambda state: jax.device_get(state), place_batches, eval_step, round_fn, eval_fn)


def _wrap_pmap(recipe, devices) -> ParallelSteps:
    method = recipe.method.with_axis_name(AXIS)
    local = [d for d in devices if d.process_index == jax.process_index()]
    n = len(local)

    round_fn = jax.pmap(functools.partial(table.play_round, method), axis_name=AXIS,
                        devices=devices, donate_argnums=0)
    eval_fn = jax.pmap(functools.partial(table.eval_step, method), axis_name=AXIS, devices=devices)

    def split(batch_axis, x):
        x = np.asarray(x)
        shape = x.shape[:batch_axis] + (n, x.shape[batch_axis] // n) + x.shape[batch_axis + 1:]
        return np.moveaxis(x.reshape(shape), batch_axis, 0)

    def place_state(state):
        # One copy per local device on a new leading axis; pmap places them.
        # pmap's devices must be the same list on every process (the global one).
        stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), state)
        return jax.pmap(lambda s: s, axis_name=AXIS, devices=devices)(stacked)

    def init_state(rng):
        return place_state(recipe.init(rng))     # the single-device method's init: the same shapes

    def gather_state(state):
        return jax.device_get(jax.tree.map(lambda x: x[0], state))

    def place_batches(batches):
        return jax.tree.map(functools.partial(split, 1), batches)

    def eval_step(state, batch):
        return jax.tree.map(lambda x: x[0], eval_fn(state, jax.tree.map(functools.partial(split, 0), batch)))

    return ParallelSteps(method, "pmap", tuple(devices), None, init_state, place_state,
                         gather_state, place_batches, eval_step, round_fn, eval_fn)
