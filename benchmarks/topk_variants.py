"""Alternatives to jaxmask.topk.topk_indicator (top_k indices → scatter), checked and timed.

    python benchmarks/topk_variants.py --batch_sizes=64,1024 --image_size=64

Every variant must give exactly the same indicator as the reference — k ones
per image, ties to the lower flat index — on random, constant and
heavily tied masks; a variant that does not is reported and not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmask.topk import topk_indicator


def scatter(m, k):
    return topk_indicator(m, k)


def threshold_cumsum(m, k):
    """k-th value from top_k, then all entries above it plus the first ties (by flat index)."""
    batch = m.shape[0]
    flat = m.reshape(batch, -1)
    kth = lax.top_k(flat, k)[0][:, -1:]
    above = flat > kth
    ties = flat == kth
    room = k - jnp.sum(above, axis=1, keepdims=True)
    take = ties & (jnp.cumsum(ties, axis=1) <= room)
    return (above | take).astype(m.dtype).reshape(m.shape)


def one_hot_sum(m, k):
    """Indices from top_k, then a one-hot reduction instead of a scatter (memory: B·k·HW)."""
    batch = m.shape[0]
    flat = m.reshape(batch, -1)
    _, idx = lax.top_k(flat, k)
    h = jnp.zeros_like(flat)
    h = jax.vmap(lambda row, i: row.at[i].set(1))(h, idx)
    return h.reshape(m.shape)


def approx(m, k):
    """lax.approx_max_k with recall_target=1 (exact on CPU/GPU, where it lowers to top-k/sort)."""
    batch = m.shape[0]
    flat = m.reshape(batch, -1)
    _, idx = lax.approx_max_k(flat, k, recall_target=1.0)
    rows = jnp.arange(batch)[:, None]
    return jnp.zeros_like(flat).at[rows, idx].set(1).reshape(m.shape)


VARIANTS = {"scatter (jaxmask)": scatter, "threshold+cumsum": threshold_cumsum,
            "vmap scatter": one_hot_sum, "approx_max_k": approx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="64")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    s = args.image_size
    k = int(round(args.fraction * s * s))
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rng = np.random.default_rng(0)
        cases = {
            "random": rng.random((batch, s, s, 1), dtype=np.float32),
            "constant": np.full((batch, s, s, 1), 0.5, np.float32),
            "tied": np.round(rng.random((batch, s, s, 1)) * 4).astype(np.float32) / 4,
        }
        reference = {name: np.asarray(jax.jit(scatter, static_argnums=1)(x, k))
                     for name, x in cases.items()}
        fns = {}
        for name, fn in VARIANTS.items():
            jitted = jax.jit(fn, static_argnums=1)
            wrong = [c for c, x in cases.items()
                     if not np.array_equal(np.asarray(jitted(x, k)), reference[c])]
            if wrong:
                print(f"batch {batch} {name:<20} DIFFERS from the reference on {wrong}: not timed")
                continue
            fns[name] = jitted
        x = jnp.asarray(cases["random"])
        times = {name: [] for name in fns}
        for fn in fns.values():
            jax.block_until_ready(fn(x, k))
        for _ in range(args.repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(x, k))
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["scatter (jaxmask)"])
        for name, t in times.items():
            med = statistics.median(t)
            print(f"batch {batch} {s}x{s} k={k}: {name:<20} {1e3 * med:8.3f} ms  "
                  f"({base / med:.2f}x the reference's speed)")


if __name__ == "__main__":
    main()
