"""The exported masker bundle: write it from a state, load it without the training stack.

A bundle is a directory::

    BUNDLE/
      manifest.json      format + format_version, jaxmask version, training step,
                         image size/channels, k, topk_fraction, value mode,
                         model config (masker, and Φ if included), the training
                         config, validation metrics, and the sha256 and size of
                         every array file
      masker.npz         masker variables: "params/<module path>/<name>" and
                         "batch_stats/..." arrays (no optimiser state)
      classifier.npz     Φ's variables, only when exported with the classifier

Arrays are plain ``.npz`` read with ``allow_pickle=False``: no pickle anywhere.
Loading needs numpy, jax and flax only (no optax, orbax, grain or training
code): ``load_masker(path)`` checks the format version, the manifest's own
checksum (``manifest_sha256``: sha256 of the manifest's canonical JSON without
that field, so an edited field is caught), every file checksum, the fields
against each other (k = round(K·H·W), widths non-empty, sizes positive), every
array's name, shape and dtype against the model the manifest describes, and
that every array is finite; it refuses a bundle that fails any of them,
naming the file and the field. Non-finite parameters are never exported.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import secrets
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxmask import __version__, arguments, signals, topk
from jaxmask.bundle_format import (  # noqa: F401  (re-exported: the format's names)
    _DTYPES, CLASSIFIER_FILE, FORMAT, FORMAT_VERSION, MANIFEST, MANIFEST_CHECKSUM, MASKER_FILE,
    SUPPORTED_FORMAT_VERSIONS, VALUE_MODES, BundleError, check_arrays, check_finite, check_headers,
    manifest_checksum, read_manifest, sha256_file, verify_file)
from jaxmask.models import Classifier, Masker

# A workdir's bundle of the checkpoint model selection kept (jaxmask/selection.py): what `jaxmask run`
# evaluates and `jaxmask export` writes without --step.
SELECTED = "selected"

# ---- Models and variables ---------------------------------------------------------------

def _masker_module(model: dict) -> Masker:
    return Masker(widths=tuple(model["widths"]), dtype=_DTYPES[model["dtype"]])


def _classifier_module(model: dict) -> Classifier:
    return Classifier(num_classes=model["num_classes"], widths=tuple(model["widths"]),
                      hidden=model["hidden"], dtype=_DTYPES[model["dtype"]])


def _abstract_variables(module, image_shape) -> dict[str, jax.ShapeDtypeStruct]:
    """Flat {"params/...": ShapeDtypeStruct} of ``module`` on (1, *image_shape) images."""
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *image_shape)),
                                                  train=False))
    return traverse_util.flatten_dict(abstract, sep="/")


def _player_variables(player) -> dict[str, Any]:
    """{'params', 'batch_stats'} of a PlayerState (or of a dict with those keys)."""
    if isinstance(player, dict):
        return {"params": player["params"], "batch_stats": player["batch_stats"]}
    return {"params": player.params, "batch_stats": player.batch_stats}


def _player(state, name: str):
    return state[name] if isinstance(state, dict) else getattr(state, name)


def _config_value(config, name: str):
    return config[name] if isinstance(config, dict) else getattr(config, name)


def _model_config(config) -> dict[str, Any]:
    get = functools.partial(_config_value, config)
    if get("dtype") not in _DTYPES:
        raise ValueError(f"config.dtype={get('dtype')!r}: expected one of {sorted(_DTYPES)}")
    return {
        "masker": {"widths": [int(w) for w in get("masker_widths")], "dtype": get("dtype")},
        "classifier": {"num_classes": int(get("num_classes")), "widths": [int(w) for w in get("phi_widths")],
                       "hidden": int(get("phi_hidden")), "dtype": get("dtype")},
    }


def _jsonable(tree):
    return json.loads(json.dumps(tree, default=lambda x: x.item() if hasattr(x, "item") else str(x)))


def _config_json(config) -> dict[str, Any]:
    if isinstance(config, dict):
        return _jsonable(config)
    return json.loads(config.to_json_best_effort())


# ---- Export -----------------------------------------------------------------------------

def _write_arrays(directory: str, filename: str, variables, module, image_shape, what: str) -> dict:
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(variables), sep="/").items()}
    check_arrays(flat, _abstract_variables(module, image_shape),
                  f"the {what} variables (pass a single-copy state: ParallelSteps.gather_state)")
    check_finite(flat, f"the {what} variables", "training diverged: export an earlier checkpoint "
                  "(--step) or retrain with lower learning rates")
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        np.savez(f, **flat)
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def _replaceable(path: str) -> bool:
    """An empty folder, or a bundle holding only the files its manifest lists (nothing of the user's)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    entries = set(os.listdir(path))
    if not entries:
        return True
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            manifest = json.load(f)
        return manifest.get("format") == FORMAT and entries <= {MANIFEST, *manifest.get("files", {})}
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def export_masker(state, config, out_dir: str, *, step: int, metrics: dict | None = None,
                  with_classifier: bool = False, overwrite: bool = False) -> str:
    """Writes the masker bundle of ``state`` to ``out_dir``; returns its absolute path.

    Args:
      state: a single-copy TrainState (``ParallelSteps.gather_state``; or a dict
        with 'masker' and 'phi' entries holding 'params' and 'batch_stats').
        Only the masker's params and batch stats are written (and Φ's with
        ``with_classifier``); never the optimiser state.
      config: the training config (ConfigDict or dict).
      out_dir: the bundle directory: new or an empty folder; an existing
        bundle there only with ``overwrite`` (the new one is written beside it
        and renamed into place); any other existing path is refused. One
        export at a time: ``.<name>.jaxmask.lock`` beside it (jaxmask/workdir.py).
      step: the training round the state comes from.
      metrics: validation metrics to record (e.g. the last 'validation' record).
      with_classifier: include Φ (for evaluating with the trained classifier).

    Only process 0 writes (every process may call it).
    """
    out_dir = os.path.abspath(arguments.path(out_dir, "out_dir"))
    with_classifier = arguments.boolean(with_classifier, "with_classifier")
    overwrite = arguments.boolean(overwrite, "overwrite")
    step = arguments.integer(step, "step", 0)
    if jax.process_index() != 0:
        return out_dir
    from absl import logging
    from jaxmask import workdir      # not at the top: only writing a bundle needs the lock
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    # The lock journals the temporary folders: what a killed export left is removed, and nothing else.
    with workdir.OutputLock(os.path.join(parent, f".{name}.jaxmask.lock"), f"--out {out_dir}", "jaxmask export",
                            "wait for it to finish, or pass another --out") as lock:
        for entry in lock.remove_journaled():
            logging.warning("removed %s, the temporary folder of an export that was stopped", entry)
        return _export_locked(state, config, out_dir, step=step, metrics=metrics,
                              with_classifier=with_classifier, overwrite=overwrite, lock=lock)


def _temporary_folder(parent: str, name: str, lock) -> str:
    """A new folder ``.<name>.tmp-<random>`` in ``parent``, journaled in ``lock`` before it exists."""
    while True:
        tmp = os.path.join(parent, f".{name}.tmp-{secrets.token_hex(6)}")
        lock.journal(tmp)
        try:
            os.mkdir(tmp, 0o755)
            return tmp
        except FileExistsError:       # someone else's: never touched (and out of the journal at once)
            lock.settle(tmp, now=True)


def _export_locked(state, config, out_dir: str, *, step: int, metrics: dict | None, with_classifier: bool,
                   overwrite: bool, lock) -> str:
    if os.path.lexists(out_dir) and not _replaceable(out_dir):
        raise BundleError(f"{out_dir} exists and is not an empty folder or a masker bundle holding only its "
                          "own files: refusing to replace it (files jaxmask did not write are never "
                          "deleted); pass a new --out")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise BundleError(f"{out_dir} already holds a masker bundle (one this export did not write): pass "
                          "--overwrite to replace it, or a new --out")
    get = functools.partial(_config_value, config)
    size, channels = int(get("image_size")), int(get("channels"))
    values, fraction = get("mask_values"), float(get("topk_fraction"))
    model = _model_config(config)
    if not with_classifier:
        model["classifier"] = None
    parent = os.path.dirname(out_dir)
    tmp = old = None
    try:
        with signals.deferred():      # never split between creating the folder and journaling it
            tmp = _temporary_folder(parent, os.path.basename(out_dir), lock)
        files = {MASKER_FILE: _write_arrays(tmp, MASKER_FILE, _player_variables(_player(state, "masker")),
                                            _masker_module(model["masker"]), (size, size, channels), "masker")}
        if with_classifier:
            files[CLASSIFIER_FILE] = _write_arrays(
                tmp, CLASSIFIER_FILE, _player_variables(_player(state, "phi")),
                _classifier_module(model["classifier"]),
                (size, size, channels + (1 if _config_value(config, "mask_channel") else 0)), "classifier")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "jaxmask_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "step": int(step),
            "image_size": size,
            "channels": channels,
            "k": topk.num_revealed(fraction, size, size),
            "topk_fraction": fraction,
            "values": values,
            "gradient": get("mask_gradient"),
            "model": model,
            "metrics": None if metrics is None else _jsonable(dict(metrics)),
            "config": _config_json(config),
            "files": files,
        }
        manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        with signals.deferred():      # the renames and the bookkeeping, never split by a stop
            if os.path.lexists(out_dir):
                old = tmp + ".old"       # journaled too: removed by the next export if this one is killed
                lock.journal(old)
                os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            lock.settle(tmp)
            tmp = None
        if old is not None:
            shutil.rmtree(old)
            lock.settle(old)
    except BaseException:
        if tmp is not None:
            with signals.deferred():
                shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ---- Load -------------------------------------------------------------------------------

def _read_arrays(path: str, expected: dict) -> dict[str, Any]:
    try:
        check_headers(path, expected)
        with np.load(path, allow_pickle=False) as npz:
            flat = {name: npz[name] for name in npz.files}
    except BundleError:
        raise
    except Exception as error:   # OSError, ValueError, zipfile.BadZipFile, zlib.error: a damaged file
        raise BundleError(f"{path} cannot be read as arrays: {type(error).__name__}: {error}") from None
    check_arrays(flat, expected, path)
    check_finite(flat, path, "the bundle holds a diverged model; re-export from a good checkpoint")
    return traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})


def _release(masker, variables, images, k: int, values: str, cap_threshold: float | None = None,
             opening_size: int | None = None):
    # topk.release is the release rule steps.mask_images applies too (tests/test_export.py
    # checks both give identical arrays); steps itself is not imported: it needs optax.
    return topk.release(masker.apply(variables, images, train=False), images, k, values, cap_threshold,
                        opening_size)


class MaskerBundle:
    """A loaded masker bundle; ``bundle(images)`` = ``bundle.mask(images)``.

    Attributes: ``path``, ``manifest``, ``config`` (training config, dict),
    ``step``, ``metrics``, ``image_size``, ``channels``, ``k`` (revealed pixels
    per image), ``topk_fraction``, ``values`` ('binary' | 'soft'), ``masker``
    (flax Masker), ``variables`` ({'params', 'batch_stats'}), ``classifier`` and
    ``classifier_variables`` (None unless exported with the classifier).
    """

    def __init__(self, path: str, manifest: dict, variables, classifier_variables=None):
        self.path = path
        self.manifest = manifest
        self.config = manifest["config"]
        self.step = int(manifest["step"])
        self.metrics = manifest.get("metrics")
        self.image_size = int(manifest["image_size"])
        self.channels = int(manifest["channels"])
        self.k = int(manifest["k"])
        self.topk_fraction = float(manifest["topk_fraction"])
        self.values = manifest["values"]
        self.masker = _masker_module(manifest["model"]["masker"])
        self.variables = variables
        classifier_model = manifest["model"].get("classifier")
        self.classifier = None if classifier_variables is None else _classifier_module(classifier_model)
        self.classifier_variables = classifier_variables
        # reveal='cap' trainings release at most k pixels, those scored above cap_threshold.
        self.cap_threshold = (float(self.config.get("cap_threshold", 0.5))
                              if self.config.get("reveal", "exact") == "cap" else None)
        # ... and with an opening, only the squares of its side that fit in them (topk.opening).
        self.opening = self.config.get("opening") if self.cap_threshold is not None else None
        if self.opening is not None and (not isinstance(self.opening, int) or isinstance(self.opening, bool)
                                         or not 1 <= self.opening <= 15 or self.opening % 2 == 0):
            raise BundleError(f"{self.path}: its config's opening={self.opening!r} is not an odd side in [1, 15]: "
                              "the bundle was edited or damaged; re-export it with `jaxmask export`")
        self._release = jax.jit(functools.partial(_release, self.masker), static_argnums=(2, 3, 4, 5))
        self._scores = jax.jit(functools.partial(self.masker.apply, train=False))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)

    def num_revealed(self, topk_fraction: float | None = None) -> int:
        """k for ``topk_fraction`` (default: the trained one) at model resolution."""
        if topk_fraction is None:
            return self.k
        return topk.num_revealed(topk_fraction, self.image_size, self.image_size)

    def mask(self, images, *, values: str | None = None, topk_fraction: float | None = None):
        """(released images, reveal mask) for a batch at model resolution.

        Args:
          images: (B, image_size, image_size, channels) floats in [0, 1].
          values: 'binary' (release h ⊙ x) or 'soft' (m ⊙ h ⊙ x); default: the trained mode.
          topk_fraction: reveal this fraction instead of the trained K.

        Returns float32 (B, H, W, C) released images and the (B, H, W, 1) mask
        (h in binary mode, m ⊙ h in soft mode); exactly k pixels per image are nonzero in h.
        """
        values = arguments.choice(self.values if values is None else values, "values", VALUE_MODES)
        if topk_fraction is not None:
            topk_fraction = arguments.fraction(topk_fraction, "topk_fraction")
        images = self.check_images(images)
        return self._release(self.variables, images, self.num_revealed(topk_fraction), values, self.cap_threshold,
                             self.opening)

    __call__ = mask

    def scores(self, images):
        """The masker's soft scores m, float32 (B, H, W, 1) in [0, 1], for a batch at model resolution."""
        return self._scores(self.variables, self.check_images(images)).astype(jnp.float32)

    def check_images(self, images) -> jax.Array:
        """``images`` as float32 (B, H, W, C), after the checks ``jaxmask mask`` runs on every image: a
        non-empty batch of this masker's shape, floats (not 0–255 integers), finite, in [0, 1].
        TypeError / ValueError naming ``images`` and the fix."""
        shape = f"(B, {self.image_size}, {self.image_size}, {self.channels})"
        if isinstance(images, (str, bytes, os.PathLike)) or images is None:
            raise TypeError(f"images must be an array {shape} of floats in [0, 1], got {type(images).__name__} "
                            f"{images!r:.60} (to mask files, use masking.mask_folder or `jaxmask mask`)")
        if not isinstance(images, (np.ndarray, jax.Array)):
            try:
                images = np.asarray(images)
            except (TypeError, ValueError) as error:
                raise TypeError(f"images must be an array {shape} of floats in [0, 1]: {error}") from None
        if images.dtype.kind not in "f" and images.dtype != jnp.bfloat16:
            hint = " (divide 8-bit images by 255)" if images.dtype.kind in "uib" else ""
            raise TypeError(f"images must be floats in [0, 1], got dtype {images.dtype}{hint}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images: this masker takes {shape} images in [0, 1]; got shape {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError(f"images is an empty batch (shape {tuple(images.shape)}): pass at least one image")
        xp = np if isinstance(images, np.ndarray) else jnp
        finite = xp.isfinite(images)
        if not bool(finite.all()):
            bad = int(finite.size - finite.sum())
            raise ValueError(f"images hold {bad} NaN/inf value(s): the masker cannot score them (`jaxmask mask` "
                             "refuses such images too); replace them first")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise ValueError(f"images must lie in [0, 1], got values in [{low:g}, {high:g}]"
                             f"{' (divide 8-bit images by 255)' if high > 1 else ''}")
        return jnp.asarray(images, jnp.float32)

    def release_scores(self, images):
        """``scores``, set to 0 where the model-resolution release hides a pixel because no square of the
        bundle's opening fits there (``topk.opening``); the scores themselves without an opening. The
        reveal at an image's own size ranks these (jaxmask/release.py), so it keeps the same shapes."""
        m = self.scores(images)
        if not self.opening or self.opening == 1:
            return m
        return m * topk.capped_indicator(m, self.k, self.cap_threshold, self.opening)

    def __repr__(self) -> str:
        return (f"MaskerBundle({self.path!r}, step={self.step}, image={self.image_shape}, k={self.k}, "
                f"values={self.values!r}, classifier={self.classifier is not None})")


def load_masker(path, *, accept_unverified_manifest: bool = False) -> MaskerBundle:
    """Loads the masker bundle at ``path`` (written by ``export_masker`` / ``jaxmask export``).

    Raises BundleError naming the file for a missing, truncated or modified
    file, and listing the versions understood for an unknown format version.
    ``accept_unverified_manifest``: also load a format-version-1 bundle, whose
    manifest has no checksum of its own (see jaxmask/bundle_format.py).
    """
    bundle = os.path.abspath(arguments.path(path, "path"))
    accept_unverified_manifest = arguments.boolean(accept_unverified_manifest, "accept_unverified_manifest")
    manifest = read_manifest(bundle, accept_unverified_manifest)
    if accept_unverified_manifest and MANIFEST_CHECKSUM not in manifest:
        import warnings
        warnings.warn(f"{bundle}: format version 1 manifest, used unverified (accepted by the caller)",
                      stacklevel=2)
    manifest_path = os.path.join(bundle, MANIFEST)
    try:
        files = manifest["files"]
        paths = {name: verify_file(bundle, name, entry) for name, entry in files.items()}
        if MASKER_FILE not in paths:
            raise BundleError(f"{manifest_path} lists no {MASKER_FILE}")
        model = manifest["model"]
        image_shape = (int(manifest["image_size"]),) * 2 + (int(manifest["channels"]),)
        if manifest["values"] not in VALUE_MODES:
            raise BundleError(f"{manifest_path}: values={manifest['values']!r} is not one of {VALUE_MODES}")
        variables = _read_arrays(paths[MASKER_FILE],
                                 _abstract_variables(_masker_module(model["masker"]), image_shape))
        classifier_variables = None
        if CLASSIFIER_FILE in paths:
            if not model.get("classifier"):
                raise BundleError(f"{manifest_path} lists {CLASSIFIER_FILE} but no classifier model")
            classifier = _classifier_module(model["classifier"])
            # With the mask channel Φ sees the part plus its 0/1 mask: one more input channel.
            extra = 1 if (manifest.get("config") or {}).get("mask_channel") else 0
            classifier_shape = image_shape[:2] + (image_shape[2] + extra,)
            classifier_variables = _read_arrays(paths[CLASSIFIER_FILE], _abstract_variables(classifier, classifier_shape))
        return MaskerBundle(bundle, manifest, variables, classifier_variables)
    except (KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{manifest_path} is incomplete or malformed ({type(error).__name__}: {error})") from None
