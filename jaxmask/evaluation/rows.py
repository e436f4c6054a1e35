"""The rows of the evaluation: each a release of both splits and how the protocols treat it.

A row is the baselines' release function (``jaxmask.baselines``), a masker
bundle's, or a fixed reveal of each split (the Oracles, built from the
ground-truth task regions). Two flags replace any special case by name:

* ``fine_tune``: the retrained protocol fine-tunes the evaluator and attacker
  on this row's released training images (False for the originals, whose
  retrained protocol is the original network itself);
* ``probe_by_default``: the fresh-network probes and the mask swap run on it
  when ``eval.probe_releases`` is () (every masker and Oracle).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from jaxmask import baselines, topk
from jaxmask.config_checks import ORACLE_ROWS
from jaxmask.evaluation import probes
from jaxmask.evaluation.common import Released, apply_release


@dataclasses.dataclass
class Row:
    name: str
    release: Callable | None = None            # images -> (released, revealed), in batches
    fixed: tuple[np.ndarray, np.ndarray] | None = None   # (train, test) reveals (N, H, W, 1)
    fine_tune: bool = True
    probe_by_default: bool = False
    bundle: Any = None                          # the masker bundle of a masker row

    def release_splits(self, train: dict, test: dict, batch_size: int) -> Released:
        """Both splits released: a fixed reveal times the images, or the release function in batches."""
        if self.fixed is not None:
            train_revealed, test_revealed = self.fixed
            return Released(train["image"] * train_revealed, train_revealed,
                            test["image"] * test_revealed, test_revealed)
        test_released, test_revealed = apply_release(self.release, test["image"], batch_size)
        train_released, train_revealed = apply_release(self.release, train["image"], batch_size)
        return Released(train_released, train_revealed, test_released, test_revealed)


def baseline_rows(eval_config, fraction: float) -> list[Row]:
    """Original, Block, Gaussian Blur and Random-K at ``fraction``, in table order."""
    releases = baselines.standard(eval_config, fraction)
    return [Row(name, release, fine_tune=name != "Original",
                probe_by_default=name == "Random-K" and bool(eval_config.probe_random_k))
            for name, release in releases.items()]


def oracle_rows(train: dict, test: dict, k: int, seed: int) -> list[Row]:
    """The ground-truth task region trimmed to k, padded to exactly k (``Oracle``, the floor for
    exact-k) or not (``Oracle-exact``, the floor for a capped reveal)."""
    return [Row(name, fixed=(probes.oracle_indicator(train["task_mask"], k, seed, pad=pad),
                             probes.oracle_indicator(test["task_mask"], k, seed + 1, pad=pad)),
                probe_by_default=True)
            for name, pad in zip(ORACLE_ROWS, (True, False))]


def masker_rows(models: dict[str, Any], fraction: float | None = None) -> list[Row]:
    """One row per exported masker (``fraction``: re-ranked at another K)."""
    return [Row(name, baselines.masker(bundle, fraction), probe_by_default=True, bundle=bundle)
            for name, bundle in models.items()]


def from_config(config, models, eval_config, train: dict, test: dict) -> list[Row]:
    """Every row of the evaluation at the config's K, in table order."""
    out = baseline_rows(eval_config, config.topk_fraction)
    if eval_config.oracle and "task_mask" in train and "task_mask" in test:
        k = topk.num_revealed(config.topk_fraction, config.image_size, config.image_size)
        out += oracle_rows(train, test, k, eval_config.seed)
    return out + masker_rows(models)


def probed(eval_config, rows: list[Row]) -> set[str]:
    """The rows the probes and the mask swap run on (``eval_config.probe_releases``, whose names
    ``config_checks.check_eval_config`` checked against the rows the evaluation makes)."""
    if not eval_config.probe_releases:
        return {row.name for row in rows if row.probe_by_default}
    return set(eval_config.probe_releases) & {row.name for row in rows if row.fine_tune}
