"""Issue 12, damaged or meaningless state is never used (rule 2) and a workdir has one trainer (rule 7):
checkpoint checksums, non-finite state, the workdir lock, bundle manifests and foreign files."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import load_config
from test_checkpoint import _iterator, _random_state
from test_export import random_state, small_config

import jaxmask
from jaxmask import build, checkpoint, export, workdir


def _config():
    config = load_config("synth_hair", "smoke")
    config.image_size = 16
    return config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with checkpoint 3 of a random state."""
    workdir = tmp_path_factory.mktemp("ckpt")
    config = _config()
    state = _random_state(config, 3)
    with checkpoint.TrainCheckpoints(str(workdir), build.from_config(config)) as checkpoints:
        checkpoints.save(3, state, _iterator(1))
    return workdir, config, state


def _restore(workdir, config):
    with checkpoint.TrainCheckpoints(str(workdir), read_only=True) as checkpoints:
        return checkpoints.restore(build.from_config(config).template(), 3)


def _state_files(workdir):
    root = os.path.join(workdir, "checkpoints", "3", "state")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                  if os.path.getsize(os.path.join(d, f)) > 64)


def test_a_flipped_byte_in_the_state_is_refused_or_harmless(saved, tmp_path):
    """A flip anywhere is refused or restores bit-identically (never a changed value).

    orbax names its data files by random hashes and splits the arrays among them differently on
    every save, so besides 12 flips drawn over all the files of this save, each payload file (an
    ocdbt ``d/`` file of more than 4 KiB) is flipped twice, so that flips reach stored values
    whatever the layout (a floor of 6 refusals among the 12 alone failed on some layouts).
    """
    workdir, config, state = saved
    files = _state_files(workdir)
    payloads = [i for i, f in enumerate(files) if f"{os.sep}d{os.sep}" in f and os.path.getsize(f) > 4096]
    assert files and payloads
    rng = np.random.default_rng(0)
    trials = [int(i) for i in rng.integers(0, len(files), 12)] + payloads * 2
    refused = 0
    for trial, index in enumerate(trials):
        copy = tmp_path / f"w{trial}"
        shutil.copytree(workdir, copy)
        path = _state_files(copy)[index]
        data = bytearray(open(path, "rb").read())
        data[np.random.default_rng(trial).integers(0, len(data))] ^= 0x10
        open(path, "wb").write(bytes(data))
        try:
            restored = _restore(copy, config)
        except checkpoint.DamagedCheckpointError as error:
            assert "is damaged" in str(error) and "delete" in str(error)
            refused += 1
            continue
        for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):   # flip in unused bytes
            np.testing.assert_array_equal(got, want)
    # The flips reached stored values (9–12 of 18–22 trials were refused over three saves).
    assert refused >= 3


def test_export_refuses_a_damaged_checkpoint(saved, tmp_path):
    workdir, config, _ = saved
    copy = tmp_path / "w"
    shutil.copytree(workdir, copy)
    sums_dir = copy / "checkpoints" / "3" / "checksums"
    sums_file = next(p for p in sums_dir.rglob("*") if p.is_file())
    sums = json.loads(sums_file.read_text())
    name = sorted(sums["state"])[0]
    sums["state"][name] = "0" * 64                     # as if that leaf had changed
    sums_file.write_text(json.dumps(sums))
    with pytest.raises(checkpoint.DamagedCheckpointError, match="does not match the checksum"):
        checkpoint.restore_for_export(str(copy))


def test_non_finite_state_is_never_saved(tmp_path):
    config = _config()
    state = _random_state(config, 1)
    leaf = jax.tree.leaves(state.masker.params)[0]
    leaf.flat[0] = np.nan
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)) as checkpoints:
        with pytest.raises(FloatingPointError, match="non-finite values"):
            checkpoints.save(1, state, _iterator(0))
        assert checkpoints.latest_step() is None


def test_two_trainings_on_one_workdir_are_refused(tmp_path):
    config = _config()
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)):
        # The lock is per process here (a second process gets flock's refusal): simulate one.
        held = workdir._HELD_LOCKS.pop(os.path.join(str(tmp_path), workdir.LOCK_FILE))
        try:
            with pytest.raises(workdir.WorkdirLockedError, match="another training is using"):
                checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config))
        finally:
            workdir._HELD_LOCKS[os.path.join(str(tmp_path), workdir.LOCK_FILE)] = held
    with checkpoint.TrainCheckpoints(str(tmp_path), build.from_config(config)):    # released on close
        pass


# ---- Bundles ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    config = small_config()
    return export.export_masker(random_state(config), config, tmp_path_factory.mktemp("b") / "masker", step=3)


def _edit(bundle_dir, tmp_path, resign, **fields):
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for dotted, value in fields.items():
        *parents, last = dotted.split("__")
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value
    if resign:
        manifest[export.MANIFEST_CHECKSUM] = export.manifest_checksum(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_an_edited_manifest_is_refused(bundle_dir, tmp_path):
    with pytest.raises(export.BundleError, match="does not match its manifest_sha256"):
        jaxmask.load_masker(_edit(bundle_dir, tmp_path, False, k=256))


@pytest.mark.parametrize("fields, message", [
    ({"k": 256}, r"k=256 but round\(topk_fraction"),
    ({"model__masker__widths": []}, r"widths=\[\] must be a non-empty list"),
    ({"image_size": 0}, r"image_size=0 must be a positive integer"),
    ({"channels": -3}, r"channels=-3 must be a positive integer"),
    ({"topk_fraction": 1.5}, r"topk_fraction=1.5 must lie in \(0, 1\]"),
    ({"model__masker__widths": [8, "x"]}, r"must be a positive integer"),
])
def test_re_signed_manifest_fields_are_cross_checked(bundle_dir, tmp_path, fields, message):
    with pytest.raises(export.BundleError, match=message):
        jaxmask.load_masker(_edit(bundle_dir, tmp_path, True, **fields))


def test_non_finite_parameters_are_never_exported_nor_loaded(bundle_dir, tmp_path):
    config = small_config()
    state = random_state(config)
    jax.tree.leaves(state.masker.params)[0].flat[0] = np.inf
    with pytest.raises(export.BundleError, match="non-finite"):
        export.export_masker(state, config, tmp_path / "nan_bundle", step=1)
    assert not (tmp_path / "nan_bundle").exists()
    # A bundle whose arrays were replaced (and re-signed) by NaNs is refused on load too.
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    with np.load(copy / "masker.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    first = sorted(arrays)[0]
    arrays[first] = np.full_like(arrays[first], np.nan)
    with open(copy / "masker.npz", "wb") as f:
        np.savez(f, **arrays)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["masker.npz"] = {"sha256": export.sha256_file(copy / "masker.npz"),
                                       "bytes": os.path.getsize(copy / "masker.npz")}
    manifest[export.MANIFEST_CHECKSUM] = export.manifest_checksum(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(export.BundleError, match="non-finite"):
        jaxmask.load_masker(copy)


def test_export_never_deletes_a_file_it_did_not_write(bundle_dir, tmp_path):
    config = small_config()
    copy = tmp_path / "B"
    shutil.copytree(bundle_dir, copy)
    (copy / "NOTES.txt").write_text("n\n")
    with pytest.raises(export.BundleError, match="refusing to replace it"):
        export.export_masker(random_state(config), config, copy, step=9)
    assert (copy / "NOTES.txt").read_text() == "n\n"
    assert jaxmask.load_masker(copy).step == 3
