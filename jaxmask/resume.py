"""What a resumed training may change in its config, and what it may not (``compare_configs``).

A workdir's checkpoint was trained with one config; a resume brings another.
Refused before anything compiles, naming the field and the fix:

* a change of the state's shapes or structure. Not a list of fields: the
  run's abstract state (its ``build.Recipe``) is compared with the saved
  config's (``build.abstract_state``: jax.eval_shape, nothing is allocated
  or compiled), and each changed field is tried alone to name the one(s)
  responsible;
* a change of what a state of the same shapes *means* (``MEANING_FIELDS``).

Everything else (learning rates, schedules, intervals, the compute dtype) may
change: it is logged.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections

from jaxmask import build
from jaxmask.config_checks import flatten

# The fields that change what the saved state *means* with the same shapes: the data it
# learns from, the task, K, the reveal rule and value mode, the game, and the seed (a run
# resumed under another seed is neither seed's run).
MEANING_FIELDS = ("dataset", "task", "data.num_train", "data.num_identities", "topk_fraction", "mask_values",
                  "reveal", "cap_threshold", "game", "seed")
# Fields expected to differ between a run and its resumption (not reported).
RUNTIME_FIELDS = ("parallel", "num_devices")

_MISSING = "<absent>"


class IncompatibleCheckpointError(ValueError):
    """The workdir's checkpoint was trained with a config of other state shapes or meaning."""


def config_dict(config) -> dict[str, Any]:
    """A ConfigDict (or dict) as plain JSON types: tuples become lists."""
    if isinstance(config, dict):
        return json.loads(json.dumps(config))
    return json.loads(config.to_json_best_effort())


def compare_configs(saved: dict, recipe: build.Recipe, where: str) -> dict[str, tuple[Any, Any]]:
    """The fields the run's config (``recipe.config``) changes from ``saved``, as {dotted name:
    (saved, current)}.

    Raises IncompatibleCheckpointError, naming the field and the fix, when a
    change alters the state's shapes (the recipe's abstract state against the
    saved config's) or its meaning (``MEANING_FIELDS``).
    """
    current = recipe.config
    saved_flat, current_flat = flatten(config_dict(saved)), flatten(config_dict(current))
    changed = {}
    for name in sorted(set(saved_flat) | set(current_flat)):
        before, after = saved_flat.get(name, _MISSING), current_flat.get(name, _MISSING)
        if before != after and name not in RUNTIME_FIELDS:
            changed[name] = (before, after)

    def refuse(names: list[str], why: str):
        shown = ", ".join(f"{n}={changed[n][0]}" for n in names)
        now = ", ".join(f"{n}={changed[n][1]}" for n in names)
        fix = " ".join(f"--config.{n}={_flag_value(changed[n][0])}" for n in names)
        return IncompatibleCheckpointError(
            f"{where} was trained with {shown}, but this config has {now}: {why}, so the run cannot resume "
            f"it. Use a new --workdir, or {fix} to continue it.")

    meaning = [name for name in MEANING_FIELDS if name in changed]
    if meaning:
        raise refuse(meaning, f"{'it changes' if len(meaning) == 1 else 'they change'} what the saved state means")
    if changed:
        saved_shapes = _state_shapes(_with_values(current, {n: v for n, (v, _) in changed.items()}), where)
        if saved_shapes != _shapes(recipe.abstract_state):
            culprits = [name for name in changed if _state_shapes(
                _with_values(current, {n: v for n, (v, _) in changed.items() if n != name}), where) != saved_shapes]
            raise refuse(culprits or list(changed), "that changes the shapes of the saved state")
    return changed


def _flag_value(value) -> str:
    return json.dumps(value).replace("[", "(").replace("]", ")").replace(" ", "") if isinstance(value, list) \
        else str(value)


def _with_values(config, values: dict[str, Any]):
    """A copy of ``config`` (a ConfigDict) with the dotted fields of ``values`` set (lists as tuples)."""
    out = ml_collections.ConfigDict(config_dict(config))
    for name, value in values.items():
        *parents, leaf = name.split(".")
        node = out
        for parent in parents:
            node = node[parent]
        if value is _MISSING:
            continue

        def tuples(x):
            return tuple(tuples(v) for v in x) if isinstance(x, list) else x
        node[leaf] = tuples(value)
    return out


def _state_shapes(config, where: str):
    """(tree structure, [(shape, dtype)]) of the state ``config`` describes."""
    try:
        abstract = build.abstract_state(config)
    except Exception as error:    # a config that builds no model (e.g. of an older jaxmask)
        raise IncompatibleCheckpointError(f"{where}: the state of its config cannot be built to compare "
                                          f"({type(error).__name__}: {error}); use a new --workdir") from None
    return _shapes(abstract)


def _shapes(abstract):
    return jax.tree.structure(abstract), [(x.shape, x.dtype) for x in jax.tree.leaves(abstract)]
