"""Decode once, then batch by index: a process's shard of a split as one uint8 array in memory.

Per-record decoding is what limits the tfds path (PNG: ~2k img/s per process
through grain, benchmarks/RESULTS.md), and at 64×64 a decoded image is 12 KB
(CelebA's ~200k images: 2.4 GB). So ``ShardCache`` decodes the shard of this
process (records i, i + n, … as ``ShardByJaxProcess`` takes them) once, on
all cores, into ``images`` (N, H, W, C) uint8 and ``labels`` (N,) int32;
after that a batch is one numpy gather of shuffled indices, with no Python
work per image.

The index stream is grain's (``MapDataset.range → seed → shuffle →
repeat → batch``), so shuffling, epochs and the checkpointed iterator state
are grain's own, and the batches are exactly those of the per-record path
(``pipeline.train_iterator(cache=False)``) for the same seed.

Images stay uint8 until ``to_float``: on the host (``images / 255`` in
float32, the per-record decoder's arithmetic) or, with
``jaxmask.data.device``, on the device after a 4× smaller transfer.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import time

import grain
import numpy as np
from absl import logging
from PIL import Image


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 → float32 in [0, 1], bit-identical to ``pipeline.decode_record``'s conversion."""
    return images.astype(np.float32) / 255.0


def _decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def _identities(records) -> np.ndarray:
    """The records' identities, int32 (-1 where a record has none: no identity adversary reads them)."""
    return np.asarray([r["identity"] if "identity" in r else -1 for r in records], np.int32)


def _reader(source):
    """``indices → (uint8 images (n, H, W, C), int32 labels (n,), int32 identities (n,))`` of ``source``."""
    arrays = getattr(source, "arrays", None)
    if isinstance(arrays, dict) and getattr(arrays.get("image"), "dtype", None) == np.uint8:
        # SynthFacesSource: generated as uint8 in memory already.
        return lambda indices: (arrays["image"][indices], arrays["label"][indices].astype(np.int32),
                                arrays["identity"][indices].astype(np.int32))
    data_source = getattr(source, "data_source", None)
    if data_source is not None:
        # TfdsSource: ArrayRecord records with the PNG still encoded.
        def read_tfds(indices):
            getitems = getattr(data_source, "__getitems__", None)
            records = getitems(list(indices)) if getitems else [data_source[i] for i in indices]
            return (np.stack([_decode_png(r["image"]) for r in records]),
                    np.asarray([r["label"] for r in records], np.int32), _identities(records))
        return read_tfds

    def read_any(indices):   # any other source: its float images, back to the uint8 they came from
        records = [source[int(i)] for i in indices]
        images = np.stack([np.asarray(r["image"]) for r in records])
        if images.dtype != np.uint8:
            images = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
        return images, np.asarray([r["label"] for r in records], np.int32), _identities(records)
    return read_any


@dataclasses.dataclass(frozen=True)
class ShardCache:
    """This process's shard of a split, decoded: images (N, H, W, C) uint8, labels and identities (N,)
    int32 (identity -1 where the dataset has none)."""
    images: np.ndarray
    labels: np.ndarray
    identities: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes + self.identities.nbytes

    def gather(self, indices) -> dict[str, np.ndarray]:
        """``indices`` of any shape → {"image": uint8 (*shape, H, W, C), "label", "identity": int32 (*shape)}."""
        indices = np.asarray(indices)
        return {"image": self.images[indices], "label": self.labels[indices], "identity": self.identities[indices]}

    @classmethod
    def build(cls, source, process_index: int = 0, process_count: int = 1,
              threads: int | None = None, chunk: int = 256) -> "ShardCache":
        """Reads and decodes records ``process_index::process_count`` of ``source`` once.

        Decoding runs on ``threads`` threads (default: every core; Pillow
        releases the GIL while it decodes).
        """
        start = time.perf_counter()
        indices = np.arange(process_index, len(source), process_count)
        if not len(indices):
            raise ValueError(f"process {process_index} of {process_count} has no records of {source!r}")
        read = _reader(source)
        if getattr(source, "data_source", None) is None:
            images, labels, identities = read(indices)     # in memory already: one gather, no threads
        else:
            chunks = [indices[i:i + chunk] for i in range(0, len(indices), chunk)]
            with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
                parts = list(pool.map(read, chunks))
            images, labels, identities = (np.concatenate([p[i] for p in parts]) for i in range(3))
        cache = cls(images=images, labels=labels, identities=identities)
        logging.info("decoded %d records of %s into a %.1f MB uint8 cache in %.1f s", len(cache),
                     getattr(source, "description", type(source).__name__), cache.nbytes / 1e6,
                     time.perf_counter() - start)
        return cache


def train_dataset(cache: ShardCache, *, local_batch: int, steps_per_round: int, seed: int,
                  float_images: bool = True) -> grain.IterDataset:
    """Endless stacked batches {"image": (S, b, H, W, C), "label": (S, b)} by index from ``cache``.

    ``float_images``: float32 in [0, 1] (converted on the host); False keeps
    uint8 for a conversion on the device.
    """
    if len(cache) < local_batch:
        raise ValueError(f"this process's shard has {len(cache)} examples, fewer than one batch of "
                         f"{local_batch}: use more data or a smaller batch_size")
    indices = (grain.MapDataset.range(len(cache)).seed(seed).shuffle().repeat(None)
               .batch(local_batch, drop_remainder=True)
               .batch(steps_per_round, drop_remainder=True))

    def assemble(batch_indices):
        batch = cache.gather(batch_indices)
        if float_images:
            batch["image"] = to_float(batch["image"])
        return batch

    # No read threads: a batch is one gather (microseconds per image), and
    # grain's threads would only add GIL contention.
    return indices.map(assemble).to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=1))


def eval_batches(cache: ShardCache, *, local_batch: int, num_batches: int):
    """``num_batches`` ordered float32 batches of ``local_batch`` from ``cache``'s start."""
    for i in range(num_batches):
        rows = slice(i * local_batch, (i + 1) * local_batch)
        yield {"image": to_float(cache.images[rows]), "label": cache.labels[rows], "identity": cache.identities[rows]}
