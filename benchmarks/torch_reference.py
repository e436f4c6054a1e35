"""The jaxmask game written plainly in PyTorch: a benchmark reference only.

Same Masker (U-Net), Φ, exact-k top-K split (binary values, straight-through
gradient), 3 predictor + 1 obfuscator round and Adam as jaxmask (DESIGN.md
§1), so ``jaxmask bench --compare-torch`` compares the same computation.
PyTorch is an optional, benchmark-only dependency: nothing in the jaxmask
package imports this file except the bench harness under --compare-torch.

Layout: NCHW by default (what a PyTorch user writes); ``channels_last=True``
switches to NHWC memory format, which oneDNN often prefers on CPU.

``load_flax_weights`` copies a jaxmask ``TrainState``'s parameters and batch
statistics into these modules, so ``check_equivalence`` can show both
frameworks compute the same function on the same weights.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_BN_MOMENTUM = 0.1   # torch convention: flax momentum 0.9 keeps 0.9 of the old average
_BN_EPS = 1e-5       # flax.linen.BatchNorm default


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Masker(nn.Module):
    """U-Net with widths[:-1] encoder levels and a widths[-1] bottleneck; sigmoid output (B, 1, H, W)."""

    def __init__(self, channels: int, widths: Sequence[int] = (32, 64, 128, 256)):
        super().__init__()
        widths = tuple(widths)

        def block(cin, cout):
            return nn.Sequential(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout))

        self.down = nn.ModuleList()
        cin = channels
        for w in widths[:-1]:
            self.down.append(block(cin, w))
            cin = w
        self.bottleneck = block(cin, widths[-1])
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        cin = widths[-1]
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.up_blocks.append(block(2 * w, w))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return torch.sigmoid(self.head(x))


class Classifier(nn.Module):
    """Φ: len(widths) × [conv3×3 → BN → ReLU → maxpool] → dense → BN → ReLU → dense."""

    def __init__(self, channels: int, image_size: int, num_classes: int,
                 widths: Sequence[int] = (32, 64, 128, 256), hidden: int = 256):
        super().__init__()
        layers, cin = [], channels
        for w in widths:
            layers.append(ConvBNReLU(cin, w))
            cin = w
        self.convs = nn.ModuleList(layers)
        side = image_size // 2 ** len(widths)
        self.dense = nn.Linear(cin * side * side, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        for layer in self.convs:
            x = F.max_pool2d(layer(x), 2)
        x = torch.flatten(x, 1)
        return self.out(F.relu(self.bn(self.dense(x))))


class _BinarySplit(torch.autograd.Function):
    """keep = h, rest = 1 − h with ∂L/∂m = ḡ_keep − ḡ_rest (straight-through)."""

    @staticmethod
    def forward(ctx, m, k):
        flat = m.reshape(m.shape[0], -1)
        idx = torch.topk(flat, k, dim=1, sorted=False).indices
        h = torch.zeros_like(flat).scatter_(1, idx, 1.0).reshape(m.shape)
        return h, 1.0 - h

    @staticmethod
    def backward(ctx, g_keep, g_rest):
        return g_keep - g_rest, None


def topk_split(m: torch.Tensor, k: int):
    """(keep, rest) of the k largest entries of each image's mask (binary values)."""
    return _BinarySplit.apply(m, k)


class Game:
    """Both players, their Adam optimisers and the round (3 predictor + 1 obfuscator steps)."""

    def __init__(self, *, channels, image_size, num_classes, masker_widths, phi_widths,
                 phi_hidden, k, lr=1e-3, predictor_steps=3, obfuscator_steps=1,
                 channels_last=False, dtype=torch.float32, seed=0):
        torch.manual_seed(seed)
        self.k = k
        self.predictor_steps, self.obfuscator_steps = predictor_steps, obfuscator_steps
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = dtype
        self.masker = Masker(channels, masker_widths).to(memory_format=self.memory_format)
        self.phi = Classifier(channels, image_size, num_classes, phi_widths, phi_hidden).to(
            memory_format=self.memory_format)
        self.masker_opt = torch.optim.Adam(self.masker.parameters(), lr=lr)
        self.phi_opt = torch.optim.Adam(self.phi.parameters(), lr=lr)
        self._predictor, self._obfuscator = self.predictor_step, self.obfuscator_step

    def compile(self, **kwargs) -> "Game":
        """Wraps the two steps' forward/backward in torch.compile (optimiser stays eager)."""
        self._predictor_loss = torch.compile(self._predictor_loss_eager, **kwargs)
        self._obfuscator_loss = torch.compile(self._obfuscator_loss_eager, **kwargs)
        return self

    def to_input(self, images_nhwc: np.ndarray) -> torch.Tensor:
        """(B, H, W, C) numpy float32 → (B, C, H, W) tensor in this game's memory format."""
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2)
        return x.contiguous(memory_format=self.memory_format)

    def _autocast(self):
        return torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype != torch.float32)

    # The losses; kept as methods so torch.compile can wrap them.
    def _predictor_loss_eager(self, x, y):
        with self._autocast():
            m = self.masker(x)
            keep, _ = topk_split(m.float(), self.k)
            logits = self.phi(keep * x).float()
        return F.cross_entropy(logits, y), m

    def _obfuscator_loss_eager(self, x):
        with self._autocast():
            m = self.masker(x)
            _, rest = topk_split(m.float(), self.k)
            logits = self.phi(rest * x).float()
        return -F.log_softmax(logits, dim=-1).mean()

    _predictor_loss = _predictor_loss_eager
    _obfuscator_loss = _obfuscator_loss_eager

    def predictor_step(self, x, y):
        """CE(y, Φ(keep ⊙ x)) over masker and Φ; both BatchNorm states update."""
        self.masker.train(), self.phi.train()
        self.masker_opt.zero_grad(set_to_none=True)
        self.phi_opt.zero_grad(set_to_none=True)
        loss, _ = self._predictor_loss(x, y)
        loss.backward()
        self.masker_opt.step()
        self.phi_opt.step()
        return loss.detach()

    def obfuscator_step(self, x):
        """CE(uniform, Φ(rest ⊙ x)) over the masker only; Φ in train mode, unchanged."""
        self.masker.train(), self.phi.train()
        saved = [(b, b.clone()) for b in self.phi.buffers()]  # Φ's batch-stat updates are discarded
        for p in self.phi.parameters():
            p.requires_grad_(False)   # no weight gradients for Φ (XLA drops them too)
        self.masker_opt.zero_grad(set_to_none=True)
        loss = self._obfuscator_loss(x)
        loss.backward()
        self.masker_opt.step()
        for p in self.phi.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            for b, old in saved:
                b.copy_(old)
        return loss.detach()

    def train_round(self, xs, ys):
        """xs: predictor_steps + obfuscator_steps input tensors; ys: their labels."""
        losses = []
        for i in range(self.predictor_steps):
            losses.append(self.predictor_step(xs[i], ys[i]))
        for i in range(self.predictor_steps, self.predictor_steps + self.obfuscator_steps):
            losses.append(self.obfuscator_step(xs[i]))
        return losses

    @torch.no_grad()
    def mask_images(self, x):
        """The release path: h ⊙ x with exactly k revealed pixels per image."""
        self.masker.eval()
        with self._autocast():
            m = self.masker(x).float()
        keep, _ = topk_split(m, self.k)
        return keep * x


# --- weights from jaxmask -------------------------------------------------------------

def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _conv_bn(module: ConvBNReLU, params, stats):
    module.conv.weight.copy_(_t(params["Conv_0"]["kernel"]).permute(3, 2, 0, 1))
    module.bn.weight.copy_(_t(params["BatchNorm_0"]["scale"]))
    module.bn.bias.copy_(_t(params["BatchNorm_0"]["bias"]))
    module.bn.running_mean.copy_(_t(stats["BatchNorm_0"]["mean"]))
    module.bn.running_var.copy_(_t(stats["BatchNorm_0"]["var"]))


@torch.no_grad()
def load_flax_weights(game: Game, state) -> None:
    """Copies a jaxmask TrainState's params and batch stats into ``game`` (NHWC → NCHW)."""
    mp, ms = state.masker.params, state.masker.batch_stats
    blocks = list(game.masker.down) + [game.masker.bottleneck] + list(game.masker.up_blocks)
    for i, block in enumerate(blocks):          # flax numbers _block's ConvBNReLUs in call order
        for j in range(2):
            name = f"ConvBNReLU_{2 * i + j}"
            _conv_bn(block[j], mp[name], ms[name])
    for i, up in enumerate(game.masker.up):
        # flax ConvTranspose (no kernel flip) = torch ConvTranspose2d with the kernel flipped.
        kernel = _t(mp[f"ConvTranspose_{i}"]["kernel"]).flip(0, 1)
        up.weight.copy_(kernel.permute(2, 3, 0, 1))
        up.bias.copy_(_t(mp[f"ConvTranspose_{i}"]["bias"]))
    game.masker.head.weight.copy_(_t(mp["Conv_0"]["kernel"]).permute(3, 2, 0, 1))
    game.masker.head.bias.copy_(_t(mp["Conv_0"]["bias"]))

    pp, ps = state.phi.params, state.phi.batch_stats
    for i, layer in enumerate(game.phi.convs):
        _conv_bn(layer, pp[f"ConvBNReLU_{i}"], ps[f"ConvBNReLU_{i}"])
    # flax flattens (h, w, c); torch flattens (c, h, w): reorder the dense rows.
    dense = _t(pp["Dense_0"]["kernel"])                       # (h*w*c, hidden)
    c = game.phi.convs[-1].conv.out_channels
    side = int(round((dense.shape[0] // c) ** 0.5))
    dense = dense.reshape(side, side, c, -1).permute(2, 0, 1, 3).reshape(dense.shape[0], -1)
    game.phi.dense.weight.copy_(dense.T)
    game.phi.bn.weight.copy_(_t(pp["BatchNorm_0"]["scale"]))
    game.phi.bn.bias.copy_(_t(pp["BatchNorm_0"]["bias"]))
    game.phi.bn.running_mean.copy_(_t(ps["BatchNorm_0"]["mean"]))
    game.phi.bn.running_var.copy_(_t(ps["BatchNorm_0"]["var"]))
    game.phi.out.weight.copy_(_t(pp["Dense_1"]["kernel"]).T)
    game.phi.out.bias.copy_(_t(pp["Dense_1"]["bias"]))


def masker_head_kernel_nchw(game: Game) -> np.ndarray:
    """The masker's first conv kernel back in flax layout (kh, kw, in, out), to compare updates."""
    return game.masker.down[0][0].conv.weight.detach().permute(2, 3, 1, 0).numpy()


def phi_out_kernel(game: Game) -> np.ndarray:
    """Φ's last dense kernel in flax layout (in, out)."""
    return game.phi.out.weight.detach().T.numpy()


def time_call(fn, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of fn (torch CPU ops are synchronous)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
