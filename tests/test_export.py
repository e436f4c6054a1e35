"""The masker bundle: export → load_masker → masks exactly like the live state; damage is refused."""

import ast
import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys

import grain
import jax
import numpy as np
import pytest
from conftest import REPO, load_config

import jaxmask
from jaxmask import build, checkpoint, export, resume, steps
from jaxmask.build import build_method

IMAGE_SIZE = 16


def random_state(config, seed: int = 0):
    """A single-copy TrainState of ``config``'s shapes with random contents (positive BN variances)."""
    rng = np.random.default_rng(seed)

    def fill(path, x):
        if x.dtype.kind != "f":
            return np.asarray(x)
        if "var" in jax.tree_util.keystr(path):
            return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
        return (0.3 * rng.normal(size=x.shape)).astype(x.dtype)

    state = jax.tree_util.tree_map_with_path(fill, build.from_config(config).template())
    return state.replace(step=np.int32(7))


def small_config():
    config = load_config("synth_hair", "smoke")
    config.image_size = IMAGE_SIZE
    config.topk_fraction = 0.25     # the release tests count k = round(0.25·H·W) at every size
    config.game, config.reveal = "realx", "exact"   # exact-k (test_games tests a capped bundle)
    return config


@pytest.fixture(scope="module")
def live():
    config = small_config()
    images = np.random.default_rng(1).uniform(size=(5, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    return config, random_state(config), build_method(config), images


@pytest.fixture(scope="module")
def bundle_dir(live, tmp_path_factory):
    config, state, _, _ = live
    metrics = {"step": 7, "split": "validation", "accuracy_revealed": np.float32(0.75)}
    return export.export_masker(state, config, tmp_path_factory.mktemp("export") / "masker", step=7,
                                metrics=metrics)


def test_loaded_bundle_masks_exactly_like_the_live_state(live, bundle_dir):
    config, state, method, images = live
    bundle = jaxmask.load_masker(bundle_dir)
    assert (bundle.k, bundle.values, bundle.image_size, bundle.channels, bundle.step) == \
        (method.reveal.k, "binary", IMAGE_SIZE, 3, 7)
    assert bundle.config == resume.config_dict(config)
    assert bundle.classifier is None and bundle.classifier_variables is None
    for values in ("binary", "soft"):
        # Both jitted: eager and fused soft masks may differ in the last bit.
        live_method = dataclasses.replace(method, reveal=dataclasses.replace(method.reveal, values=values))
        bundle_method = dataclasses.replace(live_method, players=dataclasses.replace(
            method.players, masker=bundle.masker))    # the bundle's own module, in the training's release
        want = jax.jit(functools.partial(steps.mask_images, live_method))(state.masker.variables, images)
        for got in (bundle.mask(images, values=values),
                    jax.jit(functools.partial(steps.mask_images, bundle_method))(bundle.variables, images)):
            for w, g in zip(want, got):
                assert g.dtype == np.float32
                np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    released, mask = bundle(images)
    assert mask.shape == (5, IMAGE_SIZE, IMAGE_SIZE, 1)
    np.testing.assert_array_equal(np.asarray(mask).reshape(5, -1).sum(1), method.reveal.k)
    _, half = bundle.mask(images, topk_fraction=0.5)
    np.testing.assert_array_equal(np.asarray(half).reshape(5, -1).sum(1), IMAGE_SIZE * IMAGE_SIZE // 2)
    with pytest.raises(ValueError, match=r"takes \(B, 16, 16, 3\) images"):
        bundle.mask(images[:, :8])


def test_manifest_and_files(bundle_dir):
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format_version"] == 2 and manifest["jaxmask_version"] == jaxmask.__version__
    assert manifest["model"]["masker"] == {"widths": [8, 16], "dtype": "float32"}
    assert manifest["model"]["classifier"] is None
    assert manifest["metrics"] == {"step": 7, "split": "validation", "accuracy_revealed": 0.75}
    assert set(os.listdir(bundle_dir)) == {"manifest.json", "masker.npz"}
    with open(os.path.join(bundle_dir, "masker.npz"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == manifest["files"]["masker.npz"]["sha256"]
    with np.load(os.path.join(bundle_dir, "masker.npz"), allow_pickle=False) as arrays:
        assert {name.split("/")[0] for name in arrays.files} == {"params", "batch_stats"}   # no opt_state


def test_classifier_is_included_on_request(live, tmp_path):
    config, state, method, images = live
    bundle = jaxmask.load_masker(export.export_masker(state, config, tmp_path / "b", step=7,
                                                      with_classifier=True))
    # Φ sees the revealed part and, with the mask channel (the default game), its 0/1 mask.
    inputs = (np.concatenate([images, np.ones((*images.shape[:3], 1), images.dtype)], -1)
              if method.game.mask_channel else images)
    want = method.players.phi.apply(state.phi.variables, inputs, train=False)
    np.testing.assert_array_equal(bundle.classifier.apply(bundle.classifier_variables, inputs, train=False), want)


def _damage(bundle, how):
    path = os.path.join(bundle, "masker.npz")
    manifest_path = os.path.join(bundle, "manifest.json")
    data = open(path, "rb").read()
    manifest = json.load(open(manifest_path))
    if how == "flipped byte":
        open(path, "wb").write(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    elif how == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "missing":
        os.unlink(path)
    elif how == "future version":
        manifest["format_version"] = 99
    elif how == "other widths":
        manifest["model"]["masker"]["widths"] = [8, 32]
    elif how == "not json":
        open(manifest_path, "w").write("{ not json")
    if how in ("future version", "other widths"):
        # Re-signed, as a careful forger would: the checks behind the checksum must still refuse it.
        manifest[export.MANIFEST_CHECKSUM] = export.manifest_checksum(manifest)
        json.dump(manifest, open(manifest_path, "w"))


@pytest.mark.parametrize("how, message", [
    ("flipped byte", r"masker\.npz does not match its sha256"),
    ("truncated", r"masker\.npz is \d+ bytes, the manifest says \d+"),
    ("missing", r"masker\.npz is missing"),
    ("future version", r"format_version 99; jaxmask .* reads format version\(s\) \[1, 2\]"),
    ("other widths", r"masker\.npz: .* the model needs"),
    ("not json", r"manifest\.json is not valid JSON"),
])
def test_damaged_bundles_are_refused_naming_the_file(bundle_dir, tmp_path, how, message):
    import shutil
    copy = str(tmp_path / "copy")
    shutil.copytree(bundle_dir, copy)
    _damage(copy, how)
    with pytest.raises(export.BundleError, match=message):
        jaxmask.load_masker(copy)


def test_export_replaces_a_bundle_but_nothing_else(live, tmp_path):
    config, state, _, _ = live
    target = tmp_path / "out"
    export.export_masker(state, config, target, step=1)
    with pytest.raises(export.BundleError, match="--overwrite"):      # issue 18: only when asked to
        export.export_masker(state, config, target, step=2)
    export.export_masker(state, config, target, step=2, overwrite=True)
    assert jaxmask.load_masker(target).step == 2
    assert sorted(os.listdir(tmp_path)) == ["out"]          # no temporary leftovers
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(export.BundleError, match="not an empty folder or a masker bundle holding only its own files: refusing"):
        export.export_masker(state, config, tmp_path / "mine", step=3)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_the_bundle_module_needs_no_training_stack():
    tree = ast.parse(open(export.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("optax", "grain", "orbax", "tensorflow_datasets")
                or m in ("jaxmask.state", "jaxmask.steps", "jaxmask.train", "jaxmask.data")}, imported


def test_export_command_and_loading_without_the_input_pipeline(live, tmp_path):
    config, state, method, images = live
    workdir = tmp_path / "work"
    with checkpoint.TrainCheckpoints(str(workdir), build.from_config(config)) as checkpoints:
        checkpoints.save(7, state, iter(grain.MapDataset.range(8).to_iter_dataset()))
    records = [{"step": 6, "split": "validation", "accuracy_revealed": 0.5},
               {"step": 7, "split": "train", "predictor_loss": 1.0},
               {"step": 7, "split": "validation", "accuracy_revealed": 0.625},
               {"step": 9, "split": "validation", "accuracy_revealed": 0.9}]   # after the checkpoint
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    out = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "jaxmask.cli", "export", "--workdir", str(workdir),
                           "--out", str(out), "--with-classifier"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported the masker of round 7 to {out}" in done.stdout
    np.save(tmp_path / "images.npy", images)
    # The bundle loads and masks with the input pipeline and the training loop unimportable.
    script = f"""
import sys
for name in ("grain", "tensorflow_datasets", "jaxmask.train", "jaxmask.data"):
    sys.modules[name] = None
import numpy as np, jaxmask
bundle = jaxmask.load_masker({str(out)!r})
released, mask = bundle(np.load({str(tmp_path / "images.npy")!r}))
np.save({str(tmp_path / "mask.npy")!r}, np.asarray(mask))
print(bundle.step, bundle.metrics["step"], bundle.metrics["accuracy_revealed"], bundle.classifier is not None)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["7", "7", "0.625", "True"]
    _, want = steps.mask_images(method, state, images)
    np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), want)


def test_export_of_a_workdir_without_checkpoints_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no checkpoints"):
        checkpoint.restore_for_export(str(tmp_path))


def _export_cli(*argv) -> str:
    done = subprocess.run([sys.executable, "-m", "jaxmask.cli", "export", *argv], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_export_without_step_writes_the_masker_model_selection_kept(tmp_path):
    """train → export → mask hands out the masker `jaxmask run` evaluates: WORKDIR/selected (round 3),
    not the last checkpoint (round 5), and says so; --step exports a checkpoint."""
    config = small_config()
    workdir = tmp_path / "W"
    with checkpoint.TrainCheckpoints(str(workdir), build.from_config(config)) as checkpoints:
        checkpoints.save(5, random_state(config, seed=5).replace(step=np.int32(5)),
                         iter(grain.MapDataset.range(10).to_iter_dataset()))
    kept = random_state(config, seed=3)
    export.export_masker(kept, config, workdir / export.SELECTED, step=3, metrics={"selection_score": 0.5})
    assert "from the round model selection kept" in _export_cli("--workdir", str(workdir), "--out", str(tmp_path / "B"))
    bundle = jaxmask.load_masker(tmp_path / "B")
    assert bundle.step == 3 and bundle.metrics["selection_score"] == 0.5
    for want, got in zip(jax.tree.leaves(kept.masker.variables), jax.tree.leaves(bundle.variables)):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert "from the checkpoint of round 5" in _export_cli("--workdir", str(workdir), "--out", str(tmp_path / "C"), "--step", "5")
    assert jaxmask.load_masker(tmp_path / "C").step == 5
