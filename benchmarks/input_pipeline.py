r"""Input pipeline throughput: prepared tfds ArrayRecord → decode → grain batches, in img/s.

    python benchmarks/input_pipeline.py                        # synth_faces 64 px, 4096 train images
    python benchmarks/input_pipeline.py --image_size 32 --workers 0,2 --batch_size 128

Prepares ``synth_faces`` (once; reused) under --data_dir, then times, after a
warm-up: the raw tfds data source (read + PNG decode, one thread), and
``pipeline.train_iterator`` over ``pipeline.get_source`` for each worker
count (the path ``jaxmask train`` uses), and the in-memory SynthFaces source
for reference. Images per second counts every image of every stacked batch.
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("data_dir", os.path.join(tempfile.gettempdir(), "jaxmask_bench_tfds"),
                    "tfds data dir (the dataset is prepared there once)")
flags.DEFINE_integer("image_size", 64, "SynthFaces image size")
flags.DEFINE_integer("num_train", 4096, "train images to prepare")
flags.DEFINE_integer("batch_size", 128, "global batch")
flags.DEFINE_integer("steps_per_round", 4, "batches per stacked round (predictor + obfuscator steps)")
flags.DEFINE_list("workers", ["0", "2"], "grain worker counts to time")
flags.DEFINE_float("seconds", 5.0, "timing window per measurement")
FLAGS = flags.FLAGS


def _config():
    import ml_collections
    config = ml_collections.ConfigDict()
    config.dataset, config.task, config.seed = "synth_faces", "hair", 0
    config.image_size, config.channels, config.num_classes = FLAGS.image_size, 3, 4
    config.data = ml_collections.ConfigDict(dict(
        num_identities=20, num_train=FLAGS.num_train, num_validation=64, num_test=64,
        data_dir=FLAGS.data_dir, manual_dir="", worker_count=0, prefetch=2))
    return config


def _rate(next_item, images_per_item: int, seconds: float) -> float:
    next_item()                       # warm-up: threads/workers started, files opened
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        next_item()
        count += images_per_item
    return count / (time.perf_counter() - start)


def main(argv):
    del argv
    import tensorflow_datasets as tfds
    from jaxmask.data import pipeline, prepare
    tfds.disable_progress_bar()
    config = _config()
    result = prepare.prepare("synth_faces", data_dir=FLAGS.data_dir, image_size=FLAGS.image_size,
                             num_train=FLAGS.num_train, num_validation=64, num_test=64)
    print(f"dataset: {result.dataset}/{result.variant} ({result.split_counts['train']} train) in {result.path}")
    print(f"host: {os.cpu_count()} CPUs; batch {FLAGS.batch_size} x {FLAGS.steps_per_round} steps/round")

    source = pipeline.get_source(config, "train")
    for fields, what in ((source.fields, "all fields (image + 2 masks)"),
                         (pipeline.TRAIN_FIELDS, "image + label (training)")):
        narrowed, index = source.with_fields(fields), iter(range(10 ** 9))
        rate = _rate(lambda: narrowed[next(index) % len(narrowed)], 1, FLAGS.seconds)
        print(f"tfds source, read + decode {what}, 1 thread: {rate:9.0f} img/s")

    images_per_round = FLAGS.batch_size * FLAGS.steps_per_round
    for workers in map(int, FLAGS.workers):
        iterator = pipeline.train_iterator(source, global_batch=FLAGS.batch_size,
                                           steps_per_round=FLAGS.steps_per_round, seed=0,
                                           worker_count=workers, prefetch=config.data.prefetch)
        rate = _rate(lambda: next(iterator), images_per_round, FLAGS.seconds)
        print(f"train_iterator (tfds synth_faces), workers={workers}: {rate:9.0f} img/s")
        del iterator

    config.data.data_dir = ""
    memory = pipeline.get_source(config, "train")
    iterator = pipeline.train_iterator(memory, global_batch=FLAGS.batch_size,
                                       steps_per_round=FLAGS.steps_per_round, seed=0)
    rate = _rate(lambda: next(iterator), images_per_round, FLAGS.seconds)
    print(f"train_iterator (in-memory synth_faces), workers=0: {rate:9.0f} img/s")


if __name__ == "__main__":
    app.run(main)
