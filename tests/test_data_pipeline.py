"""grain pipeline over prepared tfds datasets: decode contract, resume, per-process shards, configs, CLI,
the uint8 shard cache and batches placed on the mesh."""

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from jax.sharding import NamedSharding, PartitionSpec as P

from data_fixtures import build, read_prepared, write_celeba, write_ferplus, write_image_folder
from jaxmask import parallel
from jaxmask.data import cache as cache_lib
from jaxmask.data import pipeline, prepare

SYNTH = dict(task="hair", image_size=32, num_identities=5, seed=3, num_train=24, num_validation=8, num_test=8)


def synth_config(data_dir=""):
    config = load_config("synth_hair", "smoke")
    config.task, config.image_size, config.seed = SYNTH["task"], SYNTH["image_size"], SYNTH["seed"]
    config.data.num_identities = SYNTH["num_identities"]
    config.data.num_train, config.data.num_validation, config.data.num_test = 24, 8, 8
    config.data.data_dir = str(data_dir)
    return config


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    build("synth_faces", data_dir, **SYNTH)
    return data_dir


def _digest(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_tfds_synth_faces_equals_the_in_memory_source(synth_dir):
    config = synth_config(synth_dir)
    source = pipeline.get_source(config, "validation")
    assert isinstance(source, pipeline.TfdsSource) and len(source) == 8
    memory = pipeline.get_source(synth_config(""), "validation")
    variant = prepare.variant_for_experiment(config)
    for name, record in read_prepared(synth_dir, "synth_faces", variant, "validation").items():
        truth = memory[int(name.split("/")[1])]
        assert set(record) == set(truth) == {"image", "label", "identity", "task_mask", "identity_mask"}
        for key in record:
            assert record[key].dtype == truth[key].dtype and record[key].shape == truth[key].shape, key
            np.testing.assert_array_equal(record[key], truth[key], err_msg=f"{name} {key}")


def test_decoded_record_contract(synth_dir):
    record = pipeline.get_source(synth_config(synth_dir), "train")[0]
    assert record["image"].dtype == np.float32 and record["image"].shape == (32, 32, 3)
    assert 0.0 <= record["image"].min() and record["image"].max() <= 1.0
    assert record["label"].dtype == np.int32 and record["identity"].dtype == np.int32
    assert record["task_mask"].dtype == bool and record["task_mask"].shape == (32, 32)


def test_missing_variant_and_class_mismatch_are_clear_errors(synth_dir):
    config = synth_config(synth_dir)
    config.image_size = 48
    with pytest.raises(FileNotFoundError, match="jaxmask prepare --dataset synth_faces .*--image_size 48"):
        pipeline.get_source(config, "train")
    config = synth_config(synth_dir)
    config.num_classes = 3
    with pytest.raises(ValueError, match="num_classes=3 .* 4 classes"):
        pipeline.get_source(config, "train")


def test_restored_iterator_yields_exactly_the_next_batches(synth_dir):
    source = pipeline.get_source(synth_config(synth_dir), "train")
    make = lambda: pipeline.train_iterator(source, global_batch=4, steps_per_round=2, seed=7)
    iterator = make()
    for _ in range(5):           # 40 records: past the first epoch boundary (24)
        next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))      # what a checkpoint stores
    expected = [next(iterator) for _ in range(4)]
    restored = make()
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        assert got["image"].shape == (2, 4, 32, 32, 3) and set(got) == {"image", "label", "identity"}
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    # A fresh iterator starts elsewhere: the restore is what made them equal.
    assert not np.array_equal(next(make())["image"], expected[0]["image"])


def test_two_processes_see_disjoint_shards_that_cover_the_split(synth_dir):
    source = pipeline.get_source(synth_config(synth_dir), "train")
    everything = {_digest(source[i]["image"]) for i in range(len(source))}
    assert len(everything) == 24
    seen = []
    for process in (0, 1):
        iterator = pipeline.train_iterator(source, global_batch=4, steps_per_round=1, seed=0,
                                           process_index=process, process_count=2)
        # 12 records per shard, 2 per local batch: 6 batches are one epoch.
        images = [image for _ in range(6) for image in next(iterator)["image"][0]]
        seen.append({_digest(image) for image in images})
        assert len(seen[-1]) == 12
    assert not seen[0] & seen[1] and seen[0] | seen[1] == everything
    evaluated = [{_digest(image) for batch in pipeline.eval_batches(source, global_batch=4, process_index=p,
                                                                     process_count=2)
                  for image in batch["image"]} for p in (0, 1)]
    assert not evaluated[0] & evaluated[1] and evaluated[0] | evaluated[1] == everything


@pytest.mark.parametrize("name", ["celeba_hair", "ferplus", "image_folder"])
def test_configs_share_the_keys_of_synth_hair(name):
    reference = set(load_config("synth_hair").to_dict()) | {
        f"data.{k}" for k in load_config("synth_hair").data.to_dict()}
    for arg in (None, "smoke"):
        config = load_config(name, arg)
        assert set(config.to_dict()) | {f"data.{k}" for k in config.data.to_dict()} == reference
        assert config.dataset == name
        params = prepare.params_for_experiment(config)
        params.pop("data_dir")
        params.update(classes=("a", "b"))      # image_folder would otherwise scan manual_dir
        assert prepare.make_builder_config(**params).name == prepare.variant_for_experiment(config)
    paper = load_config(name)
    assert paper.image_size == 64 and tuple(paper.masker_widths) == (32, 64, 128, 256)


def test_smoke_configs_read_the_prepared_fixtures(tmp_path):
    write_celeba(str(tmp_path / "celeba"), bad=False)
    write_ferplus(str(tmp_path / "fer"), bad=False)
    write_image_folder(str(tmp_path / "folder"), bad=False)
    data_dir = tmp_path / "tfds"
    for name, raw in (("celeba_hair", "celeba"), ("ferplus", "fer"), ("image_folder", "folder")):
        config = load_config(name, "smoke")
        config.data.data_dir = str(data_dir)
        params = prepare.params_for_experiment(config)
        params.update(manual_dir=str(tmp_path / raw))
        build(**params)
        train = pipeline.get_source(config, "train")
        assert len(pipeline.get_source(config, "validation")) >= config.batch_size
        steps = config.predictor_steps + config.obfuscator_steps
        batch = next(pipeline.train_iterator(train, global_batch=config.batch_size, steps_per_round=steps,
                                             seed=0, worker_count=config.data.worker_count))
        assert batch["image"].shape == (steps, config.batch_size, 32, 32, config.channels), name


def test_prepare_command(tmp_path):
    raw = tmp_path / "raw"
    write_ferplus(str(raw))
    command = [sys.executable, "-m", "jaxmask.cli", "prepare", "--dataset", "ferplus", "--manual_dir", str(raw),
               "--data_dir", str(tmp_path / "tfds"), "--image_size", "16"]
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ferplus/16px_1ch" in done.stdout and "skipped bad inputs: 3" in done.stdout
    assert re.search(r"\ntrain +25 +8 +9 +8\n", done.stdout), done.stdout    # total, then per class
    (raw / "fer2013.csv").unlink()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "missing" in done.stderr and "fer2013.csv" in done.stderr


# ---- the decode-once cache and batches placed on the mesh (jaxmask/data/cache.py, device.py)

def _take(iterator, n):
    return [jax.device_get(next(iterator)) for _ in range(n)]


@pytest.mark.parametrize("prepared", [False, True], ids=["in_memory", "tfds"])
def test_cached_batches_equal_the_per_record_batches(prepared, synth_dir):
    source = pipeline.get_source(synth_config(synth_dir if prepared else ""), "train")
    cache = cache_lib.ShardCache.build(source)
    assert cache.images.dtype == np.uint8 and cache.images.shape == (24, 32, 32, 3)
    make = functools.partial(pipeline.train_iterator, source, global_batch=4, steps_per_round=2, seed=7)
    # 8 rounds of 8 records: past two epoch boundaries (24 records).
    for want, got in zip(_take(make(cache=False), 8), _take(make(cache=cache), 8)):
        assert got["image"].dtype == np.float32 and got["image"].shape == (2, 4, 32, 32, 3)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    evaluated = [list(pipeline.eval_batches(source, global_batch=8, cache=c)) for c in (None, cache)]
    assert len(evaluated[0]) == len(evaluated[1]) == 3
    for want, got in zip(*evaluated):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_shard_caches_of_two_processes_are_disjoint_and_cover_the_split(synth_dir):
    source = pipeline.get_source(synth_config(synth_dir), "train")
    shards = [cache_lib.ShardCache.build(source, process, 2) for process in (0, 1)]
    digests = [{_digest(cache_lib.to_float(image)) for image in shard.images} for shard in shards]
    assert [len(d) for d in digests] == [12, 12]
    assert not digests[0] & digests[1]
    assert digests[0] | digests[1] == {_digest(source[i]["image"]) for i in range(24)}
    assert list(shards[1].labels) == [int(source[i]["label"]) for i in range(1, 24, 2)]


def test_batches_placed_on_the_mesh_are_the_host_batches_sharded(synth_dir):
    source = pipeline.get_source(synth_config(synth_dir), "train")
    cache = cache_lib.ShardCache.build(source)
    mesh = parallel.make_mesh(jax.devices())                  # 8 fake CPU devices
    make = functools.partial(pipeline.train_iterator, source, global_batch=8, steps_per_round=2,
                             seed=1, cache=cache)
    placed = make(mesh=mesh)
    for want in _take(make(), 4):
        got = next(placed)
        assert isinstance(got["image"], jax.Array) and got["image"].dtype == np.float32
        assert got["image"].sharding == NamedSharding(mesh, P(None, "data"))
        assert len(got["image"].sharding.device_set) == 8
        # uint8 moved, converted on device: the same bits as the host conversion.
        np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
        np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])
    placed.close()


def test_prefetched_iterator_saves_the_position_of_the_batches_used(synth_dir):
    source = pipeline.get_source(synth_config(synth_dir), "train")
    mesh = parallel.make_mesh(jax.devices())
    make = lambda: pipeline.train_iterator(source, global_batch=8, steps_per_round=1, seed=5,
                                           cache=cache_lib.ShardCache.build(source), mesh=mesh, prefetch=3)
    iterator = make()
    _take(iterator, 4)
    time.sleep(0.2)              # let the prefetch threads run ahead of the loop
    state = json.loads(json.dumps(iterator.get_state()))      # what a checkpoint stores
    expected = _take(iterator, 4)
    restored = make()
    restored.set_state(state)
    for want, got in zip(expected, _take(restored, 4)):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    assert not np.array_equal(_take(make(), 1)[0]["image"], expected[0]["image"])
    iterator.close(), restored.close()
