"""Batches onto the mesh ahead of use: uint8 transfer, float conversion on device, prefetch.

``prefetch_to_mesh`` wraps the input ``IterDataset`` in grain's
thread-prefetch stages (``grain.experimental.ThreadPrefetchIterDataset``):
one thread assembles host batches ahead, a second places them on the mesh
as global arrays sharded ``P(None, 'data')`` (what the jit round expects),
so the loop's ``next()`` returns batches already on device. Each stage
records the iterator state of the element it hands out, so a checkpoint
saves the position of the last batch the loop *used*, not of the last one
prefetched: resuming stays exact.

Images travel as uint8 (4× fewer bytes than float32) and become float32 in
[0, 1] on their own device, in a per-device program with no collectives, so
a background thread may launch it on a multi-host mesh without ordering
constraints against the round.
"""

from __future__ import annotations

import functools

import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmask.data import cache as cache_lib

AXIS = "data"   # parallel.AXIS: the mesh axis the batch is split over


# uint8 → float32 as a 256-entry table computed by the host decoder's own
# arithmetic: XLA rewrites x / 255 as x · (1/255), which differs in the last bit
# for half the values, and the two paths must give the same batches.
_FLOAT_OF_UINT8 = cache_lib.to_float(np.arange(256, dtype=np.uint8))


@jax.jit
def _to_float(images):
    return jnp.take(jnp.asarray(_FLOAT_OF_UINT8), images.astype(jnp.int32), axis=0)


def place_batch(sharding: NamedSharding, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's share of a stacked batch → global arrays; uint8 images become float32 on device."""
    out = {}
    for name, local in batch.items():
        array = jax.make_array_from_process_local_data(sharding, np.asarray(local))
        if name == "image" and array.dtype == jnp.uint8:
            shards = [_to_float(shard.data) for shard in array.addressable_shards]
            array = jax.make_array_from_single_device_arrays(array.shape, sharding, shards)
        out[name] = array
    return out


def prefetch_to_mesh(dataset: grain.IterDataset, mesh: jax.sharding.Mesh, *,
                     host_buffer: int = 2, device_buffer: int = 2) -> grain.IterDataset:
    """``dataset`` of stacked host batches (S, b, ...) → the same batches as global arrays on ``mesh``.

    ``host_buffer`` batches are assembled ahead on the host and
    ``device_buffer`` more already sit on the devices.
    """
    sharding = NamedSharding(mesh, P(None, AXIS))
    prefetch = grain.experimental.ThreadPrefetchIterDataset
    dataset = prefetch(dataset, prefetch_buffer_size=max(1, host_buffer))
    dataset = dataset.map(functools.partial(place_batch, sharding))
    return prefetch(dataset, prefetch_buffer_size=max(1, device_buffer))
