"""Training checkpoints of a workdir (orbax), resume, and the config check.

A checkpoint is one directory ``workdir/checkpoints/<step>`` (step = completed
rounds) with three items saved together (``ocp.args.Composite``):

  state/   the single-copy TrainState (``ParallelSteps.gather_state``): it does
           not depend on the device count or the parallel mode, and
           ``ParallelSteps.place_state`` re-places it on whatever a restart runs.
  data/    the grain iterator state, one JSON file per process, so the batches
           continue exactly where they stopped.
  config/  the config as JSON, compared with the config of a resumed run.
  checksums/  sha256 of every state leaf and of the config, computed from the
           host copy before the save: part of the same atomic commit, so a
           checkpoint is never without them; checked on every restore
           (resume and export), so a flipped byte is refused, naming the leaf.

Nothing non-finite is ever saved: a NaN/inf leaf stops the run with the leaf
named (``FloatingPointError``). A workdir is locked while a training uses it
(jaxmask/workdir.py): a second training on it is refused at once.

Saves are asynchronous (the loop goes on while arrays are written) and atomic:
orbax writes ``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>``
only once everything is on disk, so a process killed mid-save leaves a
temporary directory that is never taken as the latest checkpoint (the next run
deletes it). Steps are deterministic on CPU, so a run killed at any point and
resumed ends with the same parameters, bit for bit, as an uninterrupted one.

The state's shapes come from the run's ``build.Recipe`` (built once, handed
in); a checkpoint's own config is completed (``config_checks.complete_saved``)
and built only to export it or to name a field a resume may not change.
The exported masker bundle lives in ``jaxmask.export``, so that loading a
masker never imports the training stack (orbax, grain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging as pylogging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxmask import arguments, build, config_checks
from jaxmask import metrics as metrics_lib
from jaxmask.resume import compare_configs, config_dict
from jaxmask.workdir import lock_workdir, unlock_workdir

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("state", "data", "config", "checksums")
# TrainState fields added since checkpoints were first written: a checkpoint without them restores with
# them empty (a run whose own state has them empty: e.g. no identity adversaries).
ADDED_STATE_FIELDS = ("identity",)


class DamagedCheckpointError(ValueError):
    """A checkpoint whose contents do not match the checksums saved with it (or cannot be read)."""


class UnverifiedCheckpointError(DamagedCheckpointError):
    """A checkpoint without its checksums: its contents cannot be verified (refused unless accepted by name)."""


# The flag of `jaxmask export` and `jaxmask train` that accepts a checkpoint without checksums.
UNVERIFIED_CHECKPOINT_FLAG = "--accept_unverified_checkpoint"


def leaf_checksums(state, like=None) -> dict[str, str]:
    """{leaf path: sha256 of dtype, shape and bytes} of a host state.

    ``like``: a state of the same structure whose dtypes the leaves are cast
    to first. Orbax restores into the template's dtypes (an x64 run's float64
    batch statistics come back float32 in a float32 template), so a save
    hashes what a restore will hand back, not what it was given.
    """
    sums = {}
    dtypes = None if like is None else [np.asarray(x).dtype for x in jax.tree.leaves(like)]
    for i, (path, leaf) in enumerate(jax.tree_util.tree_leaves_with_path(state)):
        array = np.ascontiguousarray(leaf if dtypes is None else np.asarray(leaf, dtypes[i]))
        digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
        sums[jax.tree_util.keystr(path)] = digest.hexdigest()
    return sums


def _json_checksum(tree) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_finite_state(state, step: int) -> None:
    """FloatingPointError naming the first leaf of ``state`` with a NaN or inf."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        array = np.asarray(leaf)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise FloatingPointError(
                f"round {step}: {jax.tree_util.keystr(path)} has non-finite values (NaN/inf): not saved. "
                "Lower the learning rates, or use float32 if config.dtype is bfloat16.")


def rewind_metrics(path: str, step: int) -> int:
    """Drops the records of ``path`` (metrics.jsonl) logged after round ``step``; returns how many.

    A resumed run repeats the rounds after its checkpoint: their records from
    the killed run would otherwise appear twice.
    """
    if jax.process_index() != 0 or not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        complete = f.read().endswith(b"\n")
    records = metrics_lib.read_records(path)     # a torn last line: dropped, with a warning
    kept = [record for record in records if record.get("step", 0) <= step]
    if len(kept) != len(records) or not complete:
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in kept)
        os.replace(path + ".tmp", path)
    return len(records) - len(kept)


class _OrbaxInfoFilter:
    """Drops orbax's INFO records (dozens per save) from the absl log; warnings and errors pass.

    Errors pass as one line: orbax logs each failure of its writer threads
    (a full disk: four of them) with a traceback, and the same error reaches
    the loop and ends the run with one line of its own. ``-v 1`` keeps them.
    """

    def filter(self, record) -> bool:
        if f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        if record.exc_info and not logging.level_debug():
            record.exc_info, record.exc_text = None, None
        return record.levelno >= pylogging.WARNING


def _quiet_orbax() -> None:
    logger = logging.get_absl_logger()
    if not any(isinstance(f, _OrbaxInfoFilter) for f in logger.filters):
        logger.addFilter(_OrbaxInfoFilter())


def _grain_args():
    # grain only where an iterator is saved or restored: this module is imported
    # by load_masker's callers, which must not need the input pipeline.
    import grain.checkpoint
    return grain.checkpoint


class TrainCheckpoints:
    """The orbax CheckpointManager of ``workdir/checkpoints``.

    Args:
      workdir: the training directory (made absolute: orbax wants absolute paths).
      recipe: the run's ``build.Recipe``. Its config is compared with the
        latest checkpoint's at once (IncompatibleCheckpointError for another
        model, before anything compiles) and saved with every checkpoint; its
        template shapes every restore; the config's ``max_checkpoints``
        newest checkpoints are kept (0: all). None: restoring only.
      read_only: open an existing directory for restoring only (export):
        nothing is created, saved, or cleaned up.
    """

    def __init__(self, workdir: str, recipe: build.Recipe | None = None, *, read_only: bool = False,
                 accept_unverified: bool = False):
        _quiet_orbax()
        self.recipe, self.read_only = recipe, arguments.boolean(read_only, "read_only")
        self.accept_unverified = arguments.boolean(accept_unverified, "accept_unverified")
        self.config = None if recipe is None else recipe.config
        self._template = None       # the recipe's zero state, made at the first save
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, CHECKPOINT_DIR)
        if not read_only:
            os.makedirs(self.workdir, exist_ok=True)
            lock_workdir(self.workdir)
        try:
            self._open(self.config, read_only)
        except BaseException:
            if not read_only:
                unlock_workdir(self.workdir)
            raise

    def _open(self, config, read_only: bool) -> None:
        if read_only and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"{self.workdir} has no checkpoints: expected {self.directory}/<step>/ "
                                    "(written by `jaxmask train --workdir`)")
        max_to_keep = 0 if config is None else config.max_checkpoints     # 0: keep every checkpoint
        policy = ocp.checkpoint_managers.LatestN(max_to_keep) if max_to_keep > 0 else None
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only,
            # Leftovers of a save killed mid-write: never a checkpoint, so delete them.
            cleanup_tmp_directories=not read_only, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        step = self.latest_step()
        if config is not None and step is not None:
            where = f"the checkpoint of round {step} in {self.directory}"
            changed = compare_configs(self.restore_config(step), self.recipe, where)
            if changed:
                logging.warning("resuming with a config that differs from %s: %s", where,
                                "; ".join(f"{k}: {a} → {b}" for k, (a, b) in changed.items()))

    def __enter__(self) -> "TrainCheckpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        """The newest committed checkpoint's step (partial saves never count), or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def _step_or_latest(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory} holds no complete checkpoint")
        if step not in self.manager.all_steps():
            raise FileNotFoundError(f"{self.directory} has no checkpoint of step {step}; "
                                    f"it has {self.all_steps()}")
        return step

    def _where(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _damaged(self, step: int, what: str) -> DamagedCheckpointError:
        older = [s for s in self.all_steps() if s < step]
        fix = (f"delete {self._where(step)} to resume from round {older[-1]}" if older else
               f"delete {self._where(step)} (no older checkpoint: training restarts from scratch)")
        return DamagedCheckpointError(f"the checkpoint {self._where(step)} is damaged: {what}; {fix}, "
                                      "or restore the workdir from a backup")

    def _restore_items(self, step: int, **items):
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:   # orbax/tensorstore raise many types for a damaged file
            raise self._damaged(step, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from None

    def _checksums(self, step: int) -> dict[str, Any] | None:
        """The checksums saved with ``step``; None only for a checkpoint without them that the caller
        accepted (``accept_unverified``), else UnverifiedCheckpointError."""
        if not os.path.isdir(os.path.join(self._where(step), "checksums")):
            if not self.accept_unverified:
                raise UnverifiedCheckpointError(
                    f"the checkpoint {self._where(step)} has no checksums/ (deleted, or written by a jaxmask "
                    "before checksums): its contents cannot be verified, so it is not used. Pass "
                    f"{UNVERIFIED_CHECKPOINT_FLAG} to use it at that risk (it is still checked for NaN/inf)")
            logging.warning("%s has no checksums: its contents cannot be verified (used because %s was "
                            "passed)", self._where(step), UNVERIFIED_CHECKPOINT_FLAG)
            return None
        sums = self._restore_items(step, checksums=ocp.args.JsonRestore())["checksums"]
        if not isinstance(sums, dict) or not isinstance(sums.get("state"), dict) or \
                not isinstance(sums.get("config"), str):
            raise self._damaged(step, "its checksums/ item does not hold a table of the state and the config")
        return sums

    def restore_config(self, step: int | None = None) -> dict[str, Any]:
        """The config saved with checkpoint ``step`` (default: the latest), as a dict; verified, then
        completed with the fields added since it was written (``config_checks.complete_saved``)."""
        step = self._step_or_latest(step)
        config = self._restore_items(step, config=ocp.args.JsonRestore())["config"]
        sums = self._checksums(step)
        if sums is not None and sums.get("config") != _json_checksum(config):
            raise self._damaged(step, "its config does not match the checksum saved with it")
        if not isinstance(config, dict):
            raise self._damaged(step, "its config/ item does not hold a config")
        return config_checks.complete_saved(config)

    def restore(self, template, step: int | None = None, data=None):
        """The single-copy state of checkpoint ``step`` (default: the latest), as host arrays.

        ``template``: a single-copy state of the same structure and shapes (e.g.
        ``recipe.template()``); ``data``: a grain iterator to set to the
        saved position (optional).
        """
        step = self._step_or_latest(step)
        template = jax.tree.map(np.asarray, template)
        state = self._restore_state(step, template)
        state = jax.tree.map(np.asarray, state)
        sums = self._checksums(step)
        if sums is not None:
            saved, restored = sums["state"], leaf_checksums(state)
            for name, digest in restored.items():
                if saved.get(name) != digest:
                    raise self._damaged(step, f"{name} does not match the checksum saved with it")
            if set(saved) != set(restored):     # every check it carries: none may go unused
                raise self._damaged(step, f"its checksums name leaves the state does not have: "
                                          f"{sorted(set(saved) - set(restored))[:3]}")
        try:
            check_finite_state(state, step)
        except FloatingPointError as error:
            raise self._damaged(step, str(error).split(": not saved")[0]) from None
        if data is not None:
            self._restore_data(step, data)
        return state

    def _restore_state(self, step: int, template):
        try:
            return self._restore_items(step, state=ocp.args.StandardRestore(template))["state"]
        except DamagedCheckpointError as error:
            added = [name for name in ADDED_STATE_FIELDS if not jax.tree.leaves(getattr(template, name, ()))]
            if not added:
                raise
            # Written before those fields existed? Its fields, into a dict, then the empty ones added.
            older = {field.name: getattr(template, field.name) for field in dataclasses.fields(template)
                     if field.name not in added}
            try:
                restored = self._restore_items(step, state=ocp.args.StandardRestore(older))["state"]
            except DamagedCheckpointError:
                raise error from None
            return template.replace(**restored)

    def _restore_data(self, step: int, data) -> None:
        """Sets ``data`` to this process's saved position (grain's file layout, read directly).

        A run on another process count has no file of its own: it continues
        from the position of process ``index mod saved count``, with a warning
        (its shards differ, so its batches differ from an uninterrupted run's).
        """
        import grain
        index, count = jax.process_index(), jax.process_count()
        folder = os.path.join(self.directory, str(step), "data")
        path = os.path.join(folder, f"process_{index}-of-{count}.json")
        if not os.path.exists(path):
            saved = sorted(name for name in os.listdir(folder) if name.startswith("process_"))
            if not saved:
                raise FileNotFoundError(f"{folder} holds no data iterator state")
            saved_count = int(saved[0].rsplit("-of-", 1)[1].split(".")[0])
            path = os.path.join(folder, f"process_{index % saved_count}-of-{saved_count}.json")
            logging.warning("the data position of round %d was saved by %d process(es), this run has %d: "
                            "process %d continues from %s (other shards: batches differ from an "
                            "uninterrupted run)", step, saved_count, count, index, os.path.basename(path))
        with open(path) as f:
            text = f.read()
        # grain's CheckpointHandler format: JSON for dataset iterators, raw bytes for DataLoader ones.
        data.set_state(json.loads(text) if isinstance(data, grain.DatasetIterator) else text.encode())

    def save(self, step: int, state, data) -> bool:
        """Starts the asynchronous save of round ``step``; False if that step is already saved.

        ``state``: single-copy (``gather_state``); ``data``: the grain iterator,
        positioned after the last batch of round ``step``.
        """
        if self.read_only or self.config is None:
            raise ValueError(f"{self.directory} was opened for restoring only")
        if step == self.latest_step():
            return False
        # Our own host copy: the loop donates the device buffers of the next round.
        state = jax.tree.map(np.array, state)
        check_finite_state(state, step)
        config = config_dict(self.config)
        if self._template is None:
            self._template = self.recipe.template()
        checksums = {"state": leaf_checksums(state, like=self._template), "config": _json_checksum(config)}
        self.manager.save(step, force=True, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=_grain_args().CheckpointSave(data),
            config=ocp.args.JsonSave(config),
            checksums=ocp.args.JsonSave(checksums)))
        return True

    def reached_preemption(self, step: int) -> bool:
        """Multi-process runs: True when JAX's preemption service says every process stops here."""
        return jax.process_count() > 1 and self.manager.reached_preemption(step)

    def resume(self, compiled, state, data):
        """Restores the latest checkpoint into (``state``, ``data``) if there is one.

        ``compiled``: the run's ``parallel.ParallelSteps`` (places the restored state).
        Returns the placed state (``state`` itself if there is no checkpoint).
        Records of metrics.jsonl after the restored round are dropped.
        """
        step = self.latest_step()
        metrics_path = os.path.join(self.workdir, "metrics.jsonl")
        if step is None:
            dropped = rewind_metrics(metrics_path, 0)
            logging.info("no checkpoint in %s: training from scratch%s", self.directory,
                         f" (dropped {dropped} metric records of a run that saved none)" if dropped else "")
            return state
        where = f"the checkpoint of round {step} in {self.directory}"
        restored = self.restore(self.recipe.template(), step, data)
        if int(restored.step) != step:
            raise ValueError(f"{where} holds a state of step {int(restored.step)}")
        rewind_metrics(metrics_path, step)
        logging.info("resuming from %s%s", where, "" if step < self.config.num_rounds else
                     f": already at num_rounds={self.config.num_rounds}, nothing left to train")
        return compiled.place_state(restored)

    def wait(self) -> None:
        """Blocks until the last save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.manager.wait_until_finished()
            self.manager.close()
        finally:
            if not self.read_only:
                unlock_workdir(self.workdir)


def restore_for_export(workdir: str, step: int | None = None, *, accept_unverified: bool = False):
    """(single-copy state, config ConfigDict, step) of ``workdir``'s checkpoint (default: latest).

    ``accept_unverified``: also use a checkpoint without checksums (else UnverifiedCheckpointError).
    """
    with TrainCheckpoints(workdir, read_only=True, accept_unverified=accept_unverified) as checkpoints:
        step = checkpoints._step_or_latest(step)
        config = ml_collections.ConfigDict(checkpoints.restore_config(step))
        return checkpoints.restore(build.from_config(config).template(), step), config, step


def last_validation_metrics(workdir: str, step: int | None = None) -> dict[str, Any] | None:
    """The last 'validation' record of ``workdir/metrics.jsonl`` (at or before ``step``), or None."""
    found = None
    for record in metrics_lib.read_records(os.path.join(workdir, "metrics.jsonl")):
        if record.get("split") == "validation" and (step is None or record.get("step", 0) <= step):
            found = record
    return found
