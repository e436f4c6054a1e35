"""The evaluation's own network: the independent task evaluator and the identity attacker.

``EvalNet`` is a small ResNet, deliberately unlike Φ (DESIGN.md §5): a
stride-2 stem, residual blocks with ReZero gains instead of BatchNorm (no
running statistics, so a network trained on originals sees a released image
exactly as it is), global average pooling instead of a dense layer over the
flattened map, and one linear *head* per label. The evaluation trains one
EvalNet with a ``task`` head (the evaluator) and an ``identity`` head (the
attacker) on a shared backbone: one training per release instead of two,
which is what lets the full evaluation run in minutes on a CPU. The pooled
vector is the embedding that the face-similarity column compares.

``train_classifier`` is a plain Adam loop over in-memory arrays (a few
thousand small images); the compiled step is cached per network and takes
the learning rate as an argument, so the evaluation's many retrainings, of
any length, compile once.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Progress = Callable[[str], None]


class _ResidualBlock(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(nn.Conv(self.features, (3, 3), self.stride)(x))
        y = nn.Conv(self.features, (3, 3))(y)
        # ReZero: the block starts as the identity, so no normalisation is needed to train.
        y = y * self.param("gain", nn.initializers.zeros, ())
        if x.shape[-1] != self.features or self.stride != 1:
            x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x)
        return nn.relu(x + y)


class EvalNet(nn.Module):
    """Small ResNet: stride-2 stem, one residual block per width (stride 2 after the first).

    ``heads``: ((name, num_classes), …), one linear classifier each on the
    pooled embedding. Input (B, H, W, C) float in [0, 1]; output
    ({name: (B, num_classes) float32 logits}, (B, widths[-1]) embedding).
    """
    heads: tuple[tuple[str, int], ...]
    widths: Sequence[int] = (32, 32, 64, 128)

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.widths[0], (3, 3), 2)(x.astype(jnp.float32) - 0.5))
        for i, width in enumerate(self.widths):
            x = _ResidualBlock(width, 1 if i == 0 else 2)(x)
        embedding = x.mean(axis=(1, 2))
        logits = {name: nn.Dense(classes, name=f"head_{name}")(embedding) for name, classes in self.heads}
        return logits, embedding


class PlainCNN(nn.Module):
    """A second probe architecture, unlike EvalNet: plain conv → ReLU → 2×2 max-pool
    stages (no residuals, no stride-2 stem, full resolution first), then a dense
    layer on the flattened map. Same interface as ``EvalNet``.
    """
    heads: tuple[tuple[str, int], ...]
    widths: Sequence[int] = (32, 64, 128)

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32) - 0.5
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        embedding = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        logits = {name: nn.Dense(classes, name=f"head_{name}")(embedding) for name, classes in self.heads}
        return logits, embedding


ARCHITECTURES = {"resnet": EvalNet, "plain": PlainCNN}


@dataclasses.dataclass
class TrainedNet:
    """A trained ``EvalNet`` and its parameters; predictions in fixed-size batches on the host."""
    module: nn.Module
    params: Any
    batch_size: int = 256

    def outputs(self, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({head: (N, classes) logits}, (N, widths[-1]) embedding) of (N, H, W, C) images."""
        images = np.asarray(images, np.float32)
        apply = _apply_fn(self.module)
        n, size = len(images), self.batch_size
        logits, embeddings = [], []
        for i in range(0, n, size):
            batch = images[i:i + size]
            if len(batch) < size:   # one compiled shape: pad the last batch
                batch = np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])
            out_logits, out_embedding = jax.device_get(apply(self.params, batch))
            logits.append(out_logits)
            embeddings.append(out_embedding)
        return ({name: np.concatenate([chunk[name] for chunk in logits])[:n] for name in logits[0]},
                np.concatenate(embeddings)[:n])

    def predict(self, images: np.ndarray, head: str) -> np.ndarray:
        """(N,) int class predictions of ``head``."""
        return self.outputs(images)[0][head].argmax(-1)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, widths[-1]) float32 pooled embeddings."""
        return self.outputs(images)[1]

    def accuracy(self, images: np.ndarray, labels: np.ndarray, head: str) -> float:
        return float(np.mean(self.predict(images, head) == labels))

    def accuracies(self, images: np.ndarray, labels: Mapping[str, np.ndarray]) -> dict[str, float]:
        """{head: accuracy} for every head in ``labels``, from one pass over the images."""
        logits = self.outputs(images)[0]
        return {head: float(np.mean(logits[head].argmax(-1) == y)) for head, y in labels.items()}


@functools.lru_cache(maxsize=16)
def _apply_fn(module: EvalNet):
    return jax.jit(module.apply)


# Adam's direction with the learning rate applied outside: the rate is an
# argument of the compiled step, so every training of one network shape (the
# evaluation retrains the same one many times, for any number of epochs)
# reuses one compilation (compiling is the slow part on a CPU).
_ADAM = optax.scale_by_adam()


@functools.lru_cache(maxsize=16)
def _step_fn(module: EvalNet):
    def loss_fn(params, images, labels):
        logits, _ = module.apply(params, images)
        return sum(optax.softmax_cross_entropy_with_integer_labels(logits[name], labels[name]).mean()
                   for name, _ in module.heads)

    # Donate params and optimiser state: the old ones are dead after the step.
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, images, labels, learning_rate):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        direction, opt_state = _ADAM.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, d: p - learning_rate * d, params, direction)
        return params, opt_state, loss

    return step


def cosine_learning_rate(base: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at ``total_steps``."""
    return 0.5 * base * (1 + np.cos(np.pi * min(step, total_steps) / max(total_steps, 1)))


def train_classifier(images: np.ndarray, labels: Mapping[str, np.ndarray], *, num_classes: Mapping[str, int],
                     widths: Sequence[int] = (32, 32, 64, 128), epochs: int = 4, batch_size: int = 64,
                     learning_rate: float = 2e-3, seed: int = 0, init_params=None,
                     progress: Progress | None = None, name: str = "network",
                     arch: str = "resnet") -> TrainedNet:
    """Trains an ``EvalNet`` with one head per label (summed cross-entropies), Adam, cosine decay.

    Args:
      images: (N, H, W, C) float32 in [0, 1].
      labels: {head: (N,) int class ids}; num_classes: {head: number of classes}.
      epochs: passes over the data (reshuffled from ``seed`` each epoch; the
        last partial batch is dropped).
      init_params: start from these parameters (fine-tuning) instead of a fresh init.
      arch: "resnet" (``EvalNet``) or "plain" (``PlainCNN``, a second probe architecture).
      progress: called with one line per epoch (loss, elapsed time).
    """
    images = np.asarray(images, np.float32)
    labels = {head: np.asarray(y, np.int32) for head, y in labels.items()}
    if set(labels) != set(num_classes):
        raise ValueError(f"{name}: labels for heads {sorted(labels)} but num_classes for {sorted(num_classes)}")
    if len(images) < batch_size:
        raise ValueError(f"{name}: {len(images)} training images are fewer than one batch of {batch_size}")
    for head, y in labels.items():
        if len(y) != len(images):
            raise ValueError(f"{name}: {len(y)} {head} labels for {len(images)} images")
        if y.min() < 0 or y.max() >= num_classes[head]:
            raise ValueError(f"{name}: {head} labels must lie in [0, {num_classes[head]}); "
                             f"got [{y.min()}, {y.max()}]")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{name}: arch={arch!r}: expected one of {sorted(ARCHITECTURES)}")
    module = ARCHITECTURES[arch](heads=tuple((head, int(num_classes[head])) for head in labels),
                                 widths=tuple(int(w) for w in widths))
    steps_per_epoch = len(images) // batch_size
    total_steps = epochs * steps_per_epoch
    step = _step_fn(module)
    if init_params is None:
        # One compiled init (eager init would compile every layer's ops one by one).
        init_params = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, *images.shape[1:]), jnp.float32))
    # Our own copy: the step donates its inputs.
    params = jax.tree.map(jnp.array, init_params)
    opt_state = _ADAM.init(params)
    rng = np.random.default_rng(seed)
    start = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        losses = []
        for i in range(steps_per_epoch):
            batch = order[i * batch_size:(i + 1) * batch_size]
            rate = np.float32(cosine_learning_rate(learning_rate, epoch * steps_per_epoch + i, total_steps))
            params, opt_state, loss = step(params, opt_state, images[batch],
                                           {head: y[batch] for head, y in labels.items()}, rate)
            losses.append(loss)
        if progress is not None:
            mean_loss = float(jnp.mean(jnp.stack(losses)))
            progress(f"{name}: epoch {epoch + 1}/{epochs} loss {mean_loss:.3f} ({time.time() - start:.0f} s)")
    return TrainedNet(module, jax.device_get(params))
