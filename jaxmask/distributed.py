"""Multi-host start-up on JAX's own multi-controller runtime (``jax.distributed``).

Every process runs the same program on its own host (or GPU); together they
see one global device list, and the ``('data',)`` mesh of ``parallel`` spans
them all. This module only joins the runtime and answers "am I process 0?";
per-process input shards live in ``data/pipeline.py`` and global batches are
assembled in ``parallel.py``.

How a run joins (``initialize``), first match wins:
  * explicit: ``--coordinator_address host:port --num_processes N --process_id I``
    (any cluster; what ``launch/local_multiprocess.sh`` uses on 127.0.0.1);
  * ``JAX_COORDINATOR_ADDRESS`` in the environment (with ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``, or a cluster JAX detects);
  * an ``srun`` step of more than one task: JAX reads SLURM's variables;
  * a Cloud TPU VM: JAX asks the TPU metadata for the slice's workers (a
    single-host slice becomes a one-process runtime, which costs nothing);
  * Open MPI with more than one rank (``mpirun``);
  * otherwise a single process: nothing to join.
``mode="on"`` always calls ``jax.distributed.initialize()`` (let JAX detect
another cluster, e.g. Kubernetes); ``mode="off"`` never does.

It must run before anything touches a JAX device (``jax.devices()``, the
first ``jnp`` array): the backends are created once, with the global topology.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from typing import Mapping

import jax
from absl import logging

MODES = ("auto", "on", "off")


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _on_cloud_tpu_vm() -> bool:
    # The TPU chips' device files plus libtpu: the same evidence JAX's own
    # TPU cluster detection starts from, without touching a backend.
    has_chips = bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))
    return has_chips and importlib.util.find_spec("libtpu") is not None


def detect(coordinator_address: str = "", environ: Mapping[str, str] | None = None) -> str | None:
    """How this process joins a multi-process run: a cluster name, or None (single process).

    One of ``"flags"``, ``"env"``, ``"slurm"``, ``"tpu_vm"``, ``"openmpi"``, None.
    """
    environ = os.environ if environ is None else environ
    if coordinator_address:
        return "flags"
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    # SLURM_STEP_NODELIST: inside an `srun` step (an sbatch script or salloc
    # shell itself is one process, whatever the allocation's task count).
    if environ.get("SLURM_STEP_NODELIST") and (_int_env(environ, "SLURM_NTASKS") or 1) > 1:
        return "slurm"
    if _on_cloud_tpu_vm():
        return "tpu_vm"
    if (_int_env(environ, "OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return "openmpi"
    return None


def initialize(coordinator_address: str = "", num_processes: int | None = None,
               process_id: int | None = None, mode: str = "auto",
               environ: Mapping[str, str] | None = None) -> str | None:
    """Joins JAX's distributed runtime when the run is multi-process; returns how (see ``detect``).

    Args:
      coordinator_address: ``host:port`` of process 0 (every process passes the same).
      num_processes: processes in the run; default ``JAX_NUM_PROCESSES`` or the cluster's.
      process_id: this process, in [0, num_processes); default ``JAX_PROCESS_ID`` or the cluster's.
      mode: ``auto`` (join when ``detect`` finds a multi-process run), ``on``, ``off``.
    """
    environ = os.environ if environ is None else environ
    if mode not in MODES:
        raise ValueError(f"distributed mode {mode!r}: expected one of {MODES}")
    if mode == "off":
        if coordinator_address:
            raise ValueError("--coordinator_address was given with --distributed=off")
        return None
    if num_processes is None:
        num_processes = _int_env(environ, "JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _int_env(environ, "JAX_PROCESS_ID")
    how = detect(coordinator_address, environ)
    if how is None and mode == "auto":
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError(
                f"num_processes={num_processes}, process_id={process_id} but no coordinator: pass "
                "--coordinator_address host:port (process 0's address, the same on every process)")
        return None
    if how == "flags" and (num_processes is None or process_id is None):
        raise ValueError("--coordinator_address needs --num_processes and --process_id "
                         "(or JAX_NUM_PROCESSES / JAX_PROCESS_ID)")
    # Multi-process CPU runs need cross-process collectives; gloo ships with
    # jaxlib. An explicit choice (e.g. mpi) is left alone.
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address or None,
                                   num_processes=num_processes, process_id=process_id)
    except ValueError as error:
        if how != "tpu_vm" or mode != "auto":
            raise
        # A TPU VM whose metadata names no slice (e.g. a single-host VM outside
        # GCE): nothing to join. A real pod slice always has the metadata.
        logging.warning("TPU VM without slice metadata (%s): running as a single process", error)
        return None
    _orbax_barriers_through_coordinator()
    return how or "on"


def _orbax_barriers_through_coordinator() -> None:
    # orbax's default barrier is a collective: a device allgather that jit
    # compiles anew at every barrier (tens per save and restore: 0.5–1 s each
    # measured on 2 CPU processes). The coordination service JAX just started
    # answers the same barrier in milliseconds, with a timeout.
    import orbax.checkpoint  # noqa: F401  (defines the flag)
    from absl import flags
    name = "experimental_orbax_use_distributed_barrier"
    if name in flags.FLAGS and not flags.FLAGS[name].present:
        flags.FLAGS[name].value = True


def is_main_process() -> bool:
    """True on process 0, the one that logs, writes reports and exports."""
    return jax.process_index() == 0


def restrict_logging_to_main_process() -> None:
    """Keeps INFO logs on process 0; the others log warnings and errors only."""
    if not is_main_process():
        logging.set_verbosity(logging.WARNING)


def startup_line(config, how: str | None = None) -> str:
    """One line: process index/count, local and global devices, and the data mesh of ``config``.

    Raises ValueError (as ``parallel.wrap`` would) when ``config.batch_size``
    does not divide over the devices, so a misconfigured pod fails at start-up
    on every process with the same message.
    """
    from jaxmask import parallel     # start-up: the commands import this module before any model code
    devices = parallel.select_devices(config.num_devices)
    parallel.check_batch_divisible(config.batch_size, len(devices))
    local = [d for d in devices if d.process_index == jax.process_index()]
    if config.parallel == "jit":
        mesh = f"mesh {dict(parallel.make_mesh(devices).shape)}"
    else:
        mesh = f"pmap axis {parallel.AXIS!r} over {len(devices)} devices"
    per_device = config.batch_size // len(devices)
    return (f"process {jax.process_index()}/{jax.process_count()} ({how or 'single process'}): "
            f"{len(local)} local / {len(devices)} global {devices[0].platform} devices "
            f"({jax.device_count()} visible), parallel={config.parallel}, {mesh}, "
            f"global batch {config.batch_size} = {per_device} per device x {len(devices)}")
