"""grain input pipelines: random-access source → shard → shuffle → batch → prefetch.

Every dataset reaches training through ``train_iterator`` and evaluation
through ``eval_batches``. A source is anything random-access (``__len__``,
``__getitem__``) whose records are dicts holding at least ``image`` (float32
HWC in [0, 1]), ``label`` and ``identity`` (int32, -1 when unknown);
``get_source`` picks it from the config: SynthFaces generated in memory (the
default), or a dataset prepared by ``jaxmask prepare`` read with
``tfds.data_source`` (ArrayRecord) and decoded per record by ``decode_record``.
Sources are lazy, so only the indices are sharded and shuffled. By default
(``config.data.cache``) each process decodes its shard once into a uint8
``cache.ShardCache`` and batches are index gathers from it; without the cache
each record is read and decoded when its batch is assembled (in grain workers
if any). Both give the same batches for the same seed. Under jit the loop
takes them already placed on the mesh (``device.prefetch_to_mesh``).

Each process reads only its own shard (``ShardByJaxProcess`` semantics:
process i of n takes records i, i + n, …) and batches ``global batch / n``
examples, so the global batch is assembled on device, never on one host.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from typing import Any, Iterator

import grain
import jax
import numpy as np
from PIL import Image

from jaxmask.data import cache as cache_lib
from jaxmask.data import device, synthetic

# What a training batch holds: the image, the task label and the person's identity (-1 where the
# dataset has none; the identity adversaries read it: jaxmask/games/adversaries.py).
TRAIN_FIELDS = ("image", "label", "identity")
UNKNOWN_IDENTITY = -1


def process_shard(process_index: int | None = None, process_count: int | None = None) -> tuple[int, int]:
    """(index, count) of this process; defaults from the JAX distributed runtime."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index={index} must lie in [0, process_count={count})")
    return index, count


def _shard(dataset: grain.MapDataset, index: int, count: int) -> grain.MapDataset:
    return dataset[index::count] if count > 1 else dataset


def _select(fields, record):
    return {name: (record[name] if name in record or name != "identity" else np.int32(UNKNOWN_IDENTITY))
            for name in fields}


def _narrow(source, fields):
    # Sources that decode lazily (TfdsSource) then decode only these fields (an identity it lacks: -1).
    if not hasattr(source, "with_fields"):
        return source
    return source.with_fields(tuple(f for f in fields if f != "identity" or f in source.available))


def train_iterator(source, *, global_batch: int, steps_per_round: int, seed: int,
                   worker_count: int = 0, prefetch: int = 2, cache=None, mesh=None,
                   process_index: int | None = None, process_count: int | None = None):
    """Endless iterator of stacked batches ``{"image": (S, b, H, W, C), "label": (S, b)}``.

    S = ``steps_per_round`` (one batch per step of a round), b = global_batch /
    process_count. Reshuffled every epoch from ``seed``. The returned grain
    iterator has ``get_state()``/``set_state()`` to resume at the exact next batch.

    ``cache``: a ``cache.ShardCache`` of this process's shard of ``source``
    (or True to build one): batches are gathered from it by index, the same
    batches as without it, and ``worker_count`` is not used. ``mesh``: batches
    come out as global arrays on it, ``prefetch`` of them placed ahead
    (``jaxmask.data.device``); None: host numpy arrays.
    """
    index, count = process_shard(process_index, process_count)
    if global_batch % count:
        raise ValueError(f"global batch {global_batch} is not divisible by the {count} processes")
    local_batch = global_batch // count
    if cache is True or isinstance(cache, cache_lib.ShardCache):
        if cache is True:
            cache = cache_lib.ShardCache.build(source, index, count)
        iterable = cache_lib.train_dataset(cache, local_batch=local_batch, steps_per_round=steps_per_round,
                                           seed=seed, float_images=mesh is None)
    else:
        iterable = _record_dataset(source, local_batch, steps_per_round, seed, worker_count, prefetch,
                                   index, count)
    if mesh is not None:
        iterable = device.prefetch_to_mesh(iterable, mesh, host_buffer=prefetch, device_buffer=prefetch)
    return iter(iterable)


def _record_dataset(source, local_batch, steps_per_round, seed, worker_count, prefetch, index, count):
    """Stacked batches read and decoded record by record (in grain workers if ``worker_count``)."""
    dataset = _shard(grain.MapDataset.source(_narrow(source, TRAIN_FIELDS)), index, count)
    if len(dataset) < local_batch:
        raise ValueError(
            f"this process's shard has {len(dataset)} examples, fewer than one batch of "
            f"{local_batch}: use more data or a smaller batch_size")
    dataset = (dataset.seed(seed).shuffle().repeat(None)
               .map(functools.partial(_select, TRAIN_FIELDS)))
    # Read threads help only sources that decode: in-memory records are cheap
    # copies, and grain's threads only add GIL contention (measured on a
    # 16-core host: 12.5k img/s with none vs 4.1k with 16). Two threads
    # overlap PNG decoding (1.3k → 2.0k img/s); more comes from worker_count.
    threads = 2 if hasattr(source, "with_fields") else 0
    records_ahead = max(1, prefetch) * local_batch if threads else 1
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                         prefetch_buffer_size=records_ahead))
    iterable = iterable.batch(local_batch, drop_remainder=True).batch(steps_per_round, drop_remainder=True)
    if worker_count > 0:
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iterable


@dataclasses.dataclass
class TrainingInputs:
    """A training's data, made once (``training_inputs``): both splits' sources, this process's
    decoded shard of each (``cache.ShardCache``, None with ``config.data.cache`` off) and the endless
    iterator of round batches (resumable: ``get_state``/``set_state``)."""
    train: Any
    validation: Any
    train_cache: Any
    validation_cache: Any
    batches: Any


def training_inputs(config, mesh=None) -> TrainingInputs:
    """The train and validation splits of ``config`` (each at least one batch: ValueError naming the
    split and the fix), decoded once into uint8 caches (``config.data.cache``: batches are then index
    gathers, no per-image work in the loop), and ``train_iterator`` over the train split."""
    sources = {split: get_source(config, split) for split in ("train", "validation")}
    for split, source in sources.items():
        if len(source) < config.batch_size:
            field = f"config.data.num_{split}" if config.dataset == "synth_faces" else f"the {split} split"
            raise ValueError(f"{field} has {len(source)} examples, fewer than one batch of config.batch_size="
                             f"{config.batch_size}: use more examples, or a smaller --config.batch_size")
    caches = {split: None for split in sources}
    if config.data.cache:
        shard = process_shard()
        caches = {split: cache_lib.ShardCache.build(source, *shard) for split, source in sources.items()}
    batches = train_iterator(
        sources["train"], global_batch=config.batch_size, steps_per_round=config.predictor_steps + config.obfuscator_steps,
        seed=config.seed, worker_count=config.data.worker_count, prefetch=config.data.prefetch,
        cache=caches["train"] if config.data.cache else False, mesh=mesh)
    return TrainingInputs(sources["train"], sources["validation"], caches["train"], caches["validation"], batches)


def eval_batches(source, *, global_batch: int, fields=TRAIN_FIELDS, cache=None,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over ``source`` in this process's share of ``global_batch``.

    The remainder that does not fill a global batch is dropped (the caller
    reports the count it evaluated). ``cache``: a ``cache.ShardCache`` of this
    process's shard of ``source`` to slice the same batches from (``TRAIN_FIELDS`` only).
    """
    index, count = process_shard(process_index, process_count)
    local_batch = global_batch // count
    if cache is not None:
        if set(fields) != set(TRAIN_FIELDS):
            raise ValueError(f"a cache holds {TRAIN_FIELDS}, not {tuple(fields)}")
        yield from cache_lib.eval_batches(cache, local_batch=local_batch,
                                          num_batches=len(source) // global_batch)
        return
    dataset = _shard(grain.MapDataset.source(_narrow(source, fields)), index, count)
    dataset = dataset.map(functools.partial(_select, tuple(fields)))
    num_batches = len(source) // global_batch
    yield from dataset.batch(local_batch, drop_remainder=True)[:num_batches]


@functools.lru_cache(maxsize=8)
def _synth_source(task, image_size, num_identities, seed, split, num_images):
    spec = synthetic.SynthFacesSpec(task=task, image_size=image_size,
                                    num_identities=num_identities, seed=seed)
    return synthetic.SynthFacesSource(spec=spec, split=split, num_images=num_images)


IMAGE_FEATURES = ("image", "task_mask", "identity_mask")   # stored as PNG


def _decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def decode_record(record: dict, fields=None) -> dict[str, np.ndarray]:
    """A tfds record read with PNGs undecoded → the pipeline's record contract.

    'image' float32 (H, W, C) in [0, 1]; 'label', 'identity' int32 scalars;
    'task_mask', 'identity_mask' bool (H, W) where the dataset has them.
    Only ``fields`` (default: all of these the record has) are produced, so
    training never pays for decoding masks it does not use. 'name' is for
    tracing, never decoded here.
    """
    fields = [f for f in ("image", "label", "identity", "task_mask", "identity_mask") if f in record] \
        if fields is None else fields
    out = {}
    for field in fields:
        if field == "image":
            image = _decode_png(record["image"])
            image = image[..., None] if image.ndim == 2 else image     # greyscale PNGs decode as (H, W)
            out["image"] = image.astype(np.float32) / 255.0
        elif field in ("label", "identity"):
            out[field] = np.int32(record[field])
        else:
            out[field] = _decode_png(record[field]) > 0
    return out


class TfdsSource:
    """Random-access view of one prepared tfds split (ArrayRecord), decoded by ``decode_record``.

    ``fields``: the record fields produced (default all); ``with_fields``
    narrows them, which ``train_iterator``/``eval_batches`` do. Picklable
    (grain worker processes reopen the ArrayRecord files), so decoding runs
    in the workers when ``worker_count > 0``.
    """

    def __init__(self, data_source, description: str, fields=None):
        self.data_source = data_source
        self.description = description
        features = data_source.dataset_info.features
        self.class_names = tuple(features["label"].names)
        self.image_shape = tuple(features["image"].shape)
        available = tuple(f for f in ("image", "label", "identity", "task_mask", "identity_mask")
                          if f in features)
        self.available = available
        self.fields = available if fields is None else tuple(fields)
        missing = set(self.fields) - set(available)
        if missing:
            raise KeyError(f"{description} has no field(s) {sorted(missing)}; it has {list(available)}")

    def with_fields(self, fields) -> "TfdsSource":
        return TfdsSource(self.data_source, self.description, fields)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return decode_record(self.data_source[index], self.fields)

    def __repr__(self) -> str:
        return f"TfdsSource({self.description}, len={len(self)})"


def tfds_source(dataset: str, variant: str, split: str, data_dir: str) -> TfdsSource:
    """The prepared ``dataset/variant`` split under ``data_dir`` (raises naming what is missing)."""
    import tensorflow_datasets as tfds   # the in-memory default path never pays for the import
    from jaxmask.data import prepare
    path = prepare.dataset_dir(data_dir, dataset, variant)
    if not os.path.exists(os.path.join(path, "dataset_info.json")):
        raise FileNotFoundError(f"{dataset}/{variant} is not prepared: {path} has no dataset_info.json")
    version = prepare.builder_class(dataset).VERSION
    # The explicit version makes tfds read the prepared files rather than
    # instantiate the builder code (which would want to generate them).
    name = f"{dataset}/{variant}:{version}"
    builder = tfds.builder(name, data_dir=data_dir)
    if split not in builder.info.splits:
        raise ValueError(f"{name} under {data_dir} has no split {split!r}; it has {sorted(builder.info.splits)}")
    # tfds only parses the records; PNGs stay bytes until decode_record
    # decodes the fields a consumer asked for.
    skip = {f: tfds.decode.SkipDecoding() for f in IMAGE_FEATURES if f in builder.info.features}
    data_source = tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=skip)
    return TfdsSource(data_source, f"{name} {split} in {data_dir}")


def get_source(config, split: str):
    """The random-access source of ``split`` for ``config.dataset``.

    ``synth_faces`` with an empty ``config.data.data_dir`` is generated in
    memory (the fast default); every other case reads the prepared tfds
    variant that ``prepare.variant_for_experiment(config)`` names, under
    ``config.data.data_dir`` (empty: the tfds default ~/tensorflow_datasets).
    """
    if config.dataset == "synth_faces" and not config.data.data_dir:
        counts = {"train": config.data.num_train, "validation": config.data.num_validation,
                  "test": config.data.num_test}
        if split not in counts:
            raise ValueError(f"split {split!r}: expected one of {sorted(counts)}")
        return _synth_source(config.task, config.image_size, config.data.num_identities,
                             config.seed, split, counts[split])
    from jaxmask.data import prepare     # tensorflow_datasets: the in-memory SynthFaces path never loads it
    if config.dataset not in prepare.BUILDERS:
        raise ValueError(f"config.dataset={config.dataset!r} is not known: expected one of "
                         f"{sorted(prepare.BUILDERS)}")
    data_dir = config.data.data_dir or prepare.default_data_dir()
    try:
        source = tfds_source(config.dataset, prepare.variant_for_experiment(config), split, data_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}\nbuild it with: {prepare.prepare_command_for(config, data_dir)}") from None
    if len(source.class_names) != config.num_classes:
        raise ValueError(f"config.num_classes={config.num_classes} but {source.description} has "
                         f"{len(source.class_names)} classes {list(source.class_names)}")
    return source


def load_split(config, split: str, limit: int = 0) -> dict[str, np.ndarray]:
    """The whole ``split`` of the experiment as host arrays.

    'image' float32 (N, H, W, C) in [0, 1]; 'label', 'identity' int32 (N,)
    (identity -1 where unknown); 'task_mask', 'identity_mask' bool (N, H, W)
    where the dataset has them. ``limit`` > 0 keeps the first ``limit``.
    """
    source = get_source(config, split)
    n = len(source) if limit <= 0 else min(limit, len(source))
    arrays = getattr(source, "arrays", None)
    if arrays is not None:      # SynthFaces: already arrays (uint8 images)
        out = {key: np.asarray(value[:n]) for key, value in arrays.items()}
        out["image"] = out["image"].astype(np.float32) / 255.0
        return out
    records = [source[i] for i in range(n)]
    out = {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]}
    out["image"] = out["image"].astype(np.float32)
    if "identity" not in out:
        out["identity"] = np.full(n, -1, np.int32)
    return out
