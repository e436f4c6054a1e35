"""The masker bundle's format: its constants and every check a bundle passes before it is used.

Kept apart from jaxmask/export.py (writing and loading) so the rules that
decide whether a bundle may mask anything read in one place: the manifest's
own checksum, the file checksums, the fields against each other, the arrays'
shapes and dtypes, and finiteness.

All or nothing: every check a bundle can carry must pass, and no field
switches one off. ``format_version`` must be one of the supported integers
(``true`` or ``1.0`` are not versions); a ``manifest_sha256`` present is
always verified, whatever the version; one missing is an error for version 2
and, for version 1 (which never had one), unless the caller accepts an
unverified manifest by name. Every listed file needs both its ``sha256`` and
its ``bytes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxmask import __version__, files, topk

FORMAT = "jaxmask.masker"
FORMAT_VERSION = 2
# Version 1 has no manifest checksum: its manifest cannot be verified, so it is
# used only when the caller names that risk (``accept_unverified_manifest``,
# ``jaxmask mask --accept_unverified_manifest``); its fields are cross-checked either way.
SUPPORTED_FORMAT_VERSIONS = (1, 2)
UNVERIFIED_MANIFEST_FLAG = "--accept_unverified_manifest"
MANIFEST_CHECKSUM = "manifest_sha256"
MANIFEST = "manifest.json"
MASKER_FILE = "masker.npz"
CLASSIFIER_FILE = "classifier.npz"
VALUE_MODES = ("binary", "soft")
# Bounds on what a manifest may ask for, checked before anything is allocated: a manifest is a few KB;
# no masker jaxmask trains takes images larger than this (the paper's: 64); images are grey or RGB.
MANIFEST_BYTES = 16 << 20
MAX_IMAGE_SIZE = 4096
CHANNELS = (1, 3)
MAX_WIDTH = 1 << 16

# Compute dtypes by config name (state.compute_dtype's table; state imports optax).
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


class BundleError(ValueError):
    """A masker bundle that is missing, damaged, tampered with, or of an unknown format."""


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with files.open_regular(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_finite(flat: dict[str, np.ndarray], where: str, fix: str) -> None:
    for name, array in flat.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise BundleError(f"{where}: {name} has {bad} non-finite value(s) (NaN/inf): {fix}")


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys), without its own checksum field."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_arrays(flat: dict[str, np.ndarray], expected: dict, where: str) -> None:
    missing, extra = sorted(set(expected) - set(flat)), sorted(set(flat) - set(expected))
    if missing or extra:
        raise BundleError(f"{where} do not match the model: missing {missing[:4]}, unexpected {extra[:4]}")
    for name, spec in expected.items():
        array = flat[name]
        if tuple(array.shape) != tuple(spec.shape) or array.dtype != spec.dtype:
            raise BundleError(f"{where}: {name} is {array.dtype}{list(array.shape)}, the model needs "
                              f"{spec.dtype}{list(spec.shape)}")


def check_headers(path: str, expected: dict) -> None:
    """Every array's header (name, shape, dtype) against ``expected`` before any data is read: a header
    claiming 10**12 elements would otherwise have numpy allocate them first."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        found = {name[:-4] for name in names if name.endswith(".npy")}
        if len(found) != len(names) or found != set(expected):
            check_arrays(dict.fromkeys(found), expected, path)      # names what is missing or unexpected
            raise BundleError(f"{path} holds entries that are not arrays: {sorted(set(names))[:4]}")
        for name in names:
            with archive.open(name) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
            spec = expected[name[:-4]]
            if tuple(shape) != tuple(spec.shape) or dtype != spec.dtype:
                raise BundleError(f"{path}: {name[:-4]} is {dtype}{list(shape)}, the model needs "
                                  f"{spec.dtype}{list(spec.shape)}")


def verify_file(bundle: str, name: str, entry: dict) -> str:
    if os.path.basename(name) != name or name in ("", ".", ".."):
        raise BundleError(f"{os.path.join(bundle, MANIFEST)} lists a file outside the bundle: {name!r}")
    path = os.path.join(bundle, name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or \
            isinstance(entry.get("bytes"), bool) or not isinstance(entry.get("bytes"), int):
        raise BundleError(f"{os.path.join(bundle, MANIFEST)}: the entry of {name} must give its sha256 and its "
                          f"bytes (got {entry!r}): a file without both cannot be verified; re-export the bundle")
    if not os.path.lexists(path):
        raise BundleError(f"{path} is missing from the bundle")
    files.check_regular(path, f"a file of the bundle {bundle}", "re-export the bundle with `jaxmask export`")
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        raise BundleError(f"{path} is {size} bytes, the manifest says {entry['bytes']}: truncated or replaced")
    if sha256_file(path) != entry["sha256"]:
        raise BundleError(f"{path} does not match its sha256 in {MANIFEST}: the file was modified or damaged")
    return path


def read_manifest(bundle: str, accept_unverified_manifest: bool = False) -> dict[str, Any]:
    """The verified manifest of ``bundle`` (BundleError naming the file, the field and the fix).

    ``accept_unverified_manifest``: use a version-1 manifest, which carries no
    checksum of its own (an edited field could not be detected); off by default.
    """
    path = os.path.join(bundle, MANIFEST)
    if not os.path.isdir(bundle):
        what = "" if not os.path.exists(bundle) else f" ({files.describe(bundle)})"
        raise BundleError(f"{bundle}{what} is not a masker bundle directory (write one with `jaxmask export`)")
    if not os.path.lexists(path):
        raise BundleError(f"{bundle} is not a masker bundle: {MANIFEST} is missing")
    files.check_regular(path, "the bundle's manifest", "re-export the bundle with `jaxmask export`")
    try:
        text = files.read_bytes(path, MANIFEST_BYTES, "a bundle's manifest")
    except (files.NotARegularFile, files.TooLarge) as error:
        raise BundleError(str(error)) from None
    try:
        manifest = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{path} is not valid JSON ({error}): the bundle is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    # An integer, exactly: `true` == 1 and 1.0 == 1 in Python, and must not read as version 1.
    if type(version) is not int or version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(f"{path} has format_version {version!r}; jaxmask {__version__} reads format "
                          f"version(s) {list(SUPPORTED_FORMAT_VERSIONS)}: use the jaxmask that wrote it "
                          f"(jaxmask_version {manifest.get('jaxmask_version')!r}) or re-export")
    if MANIFEST_CHECKSUM in manifest:     # a check the manifest carries is verified, whatever its version
        if manifest[MANIFEST_CHECKSUM] != manifest_checksum(manifest):
            raise BundleError(f"{path} does not match its {MANIFEST_CHECKSUM}: the manifest was edited or "
                              "damaged; re-export the bundle with `jaxmask export`")
    elif version >= 2:
        raise BundleError(f"{path} has no {MANIFEST_CHECKSUM}, which format version {version} always carries: "
                          "the manifest was edited or damaged; re-export the bundle with `jaxmask export`")
    elif not accept_unverified_manifest:
        raise BundleError(f"{path} is format version 1, which has no {MANIFEST_CHECKSUM}: an edited field (K, the "
                          "reveal rule) could not be detected. Re-export it with `jaxmask export` (from its "
                          f"checkpoint), or pass {UNVERIFIED_MANIFEST_FLAG} to use it at that risk")
    cross_check(manifest, path)
    return manifest


def _positive_int(value, name: str, where: str, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BundleError(f"{where}: {name}={value!r} must be a positive integer: the bundle is damaged")
    if high is not None and value > high:
        raise BundleError(f"{where}: {name}={value} is larger than any masker jaxmask writes (at most {high}): "
                          "the bundle is damaged or edited; re-export it")
    return value


def cross_check(manifest: dict, where: str) -> None:
    """The fields that decide what is released, checked against each other before anything is masked."""
    try:
        size = _positive_int(manifest["image_size"], "image_size", where, MAX_IMAGE_SIZE)
        if _positive_int(manifest["channels"], "channels", where) not in CHANNELS:
            raise BundleError(f"{where}: channels={manifest['channels']!r} must be one of {CHANNELS} (grey or "
                              "RGB): the bundle is damaged or edited; re-export it")
        fraction = manifest["topk_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise BundleError(f"{where}: topk_fraction={fraction!r} must lie in (0, 1]: the bundle is damaged")
        expected = topk.num_revealed(fraction, size, size)
        if manifest["k"] != expected:
            raise BundleError(f"{where}: k={manifest['k']!r} but round(topk_fraction·H·W) = round({fraction}·"
                              f"{size}·{size}) = {expected}: the manifest was edited or damaged; re-export")
        if manifest["values"] not in VALUE_MODES:
            raise BundleError(f"{where}: values={manifest['values']!r} is not one of {VALUE_MODES}")
        for role, model in manifest["model"].items():
            if model is None:
                continue
            widths = model["widths"]
            if not isinstance(widths, list) or not widths or len(widths) > 16:
                raise BundleError(f"{where}: model.{role}.widths={widths!r} must be a non-empty list (of at most "
                                  "16 levels): the bundle is damaged")
            for width in widths:
                _positive_int(width, f"model.{role}.widths", where, MAX_WIDTH)
            if model["dtype"] not in _DTYPES:
                raise BundleError(f"{where}: model.{role}.dtype={model['dtype']!r} is not one of {sorted(_DTYPES)}")
        if not isinstance(manifest["files"], dict):
            raise BundleError(f"{where}: files must be an object of file name → checksum")
    except (KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{where} is incomplete or malformed ({type(error).__name__}: {error})") from None
