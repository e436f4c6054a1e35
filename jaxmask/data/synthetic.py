"""SynthFaces: procedural faces whose task and identity live in known, disjoint pixels.

Every image is a face on a random background with an identity (fixed face
attributes), a hair colour and a mouth shape. For ``task="hair"`` the label is
the hair colour class; for ``task="expression"`` it is the mouth shape. Both
attributes are always sampled independently (uniform) and the rendering is the
same for both tasks, so with equal seeds the two tasks give identical images and
differ only in ``label`` and ``task_mask``.

``task="earring"`` is the small-region task: the same images plus one small
earring disc beside the face (about 1% of the pixels), whose colour is the
label. Its parameters come from a stream of their own, so the hair and
expression images are unchanged by it; the earring sits outside the face
ellipse (never over identity pixels) and is painted last (never hidden).

How "task only in the task region, identity only outside it" is guaranteed
(the benchmark's ground truth depends on it):

* Images are painted in layers with hard edges (no blending), so each pixel's
  value is a function of exactly one layer's parameters plus the per-image
  global lighting factor and independent pixel noise, neither of which carries
  task or identity information.
* Identity attributes (skin colour, face size, eyes, brows, nose, mole) are
  painted only into face pixels. The task region never shows them: hair and the
  mouth patch are painted *over* the face, in identity-independent colours.
* Every shape that bounds the task region is identity-free: the hair cap,
  fringe and side locks use per-image random parameters around the per-image
  face centre (not the identity's face outline), and the mouth patch is a fixed
  ellipse (times the per-image pose scale) around the mouth. The task mask's
  shape therefore carries no identity either.
* Task region pixels: hair colour (hair task) or mouth shape on a skin-toned
  patch whose tone is random per image (expression task). The other attribute
  (mouth shape for hair, hair colour for expression) is random, independent of
  the label, so outside the task region the label is at chance.
* Background: a smooth random colour field per image (bilinear upsampling of a
  random 4x4 grid of colours), independent of everything else.

Masks: ``task_mask`` is the visible hair (hair task) or the mouth patch with the
mouth (expression task); ``identity_mask`` is the visible skin, nose, brows,
eyes and mole, i.e. face pixels minus hair and mouth patch. They are disjoint.
The hair cap is wider and taller than any face (no skin shows above it), the
fringe stays above the brows and the locks outside the eyes, so hair never
hides the eyes, brows or nose; the mouth patch starts below the nose tip.

Geometry is in normalised image coordinates (0..1), so it scales with
``image_size``. Images are rendered vectorised over blocks of images; each block
draws from its own seed derived from (seed, split, block index), so
``generate(spec, split, n)`` is a prefix of ``generate(spec, split, m)`` for n < m.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TASK_CLASSES = {"hair": ("black", "blond", "brown", "gray"),
                "expression": ("neutral", "happy", "surprised"),
                "earring": ("red", "green", "blue", "yellow")}
SPLITS = ("train", "validation", "test")

# Hair colour classes (RGB in [0,1]); far enough apart (in hue and brightness)
# to stay separable under shade jitter x lighting jitter.
_HAIR_RGB = np.array([[0.09, 0.07, 0.06], [0.93, 0.78, 0.38],
                      [0.45, 0.27, 0.13], [0.62, 0.64, 0.70]], np.float32)
_SKIN_LIGHT = np.array([0.98, 0.84, 0.72], np.float32)
_SKIN_DARK = np.array([0.45, 0.30, 0.20], np.float32)
_IRIS_RGB = np.array([[0.35, 0.20, 0.08], [0.20, 0.40, 0.75], [0.25, 0.55, 0.30],
                      [0.50, 0.50, 0.55], [0.08, 0.06, 0.05]], np.float32)
# Layer ids of the paint-by-numbers map; later layers are painted over earlier ones.
_BG, _SKIN, _NOSE, _BROW, _SCLERA, _IRIS, _MOLE, _PATCH, _MOUTH, _HAIR, _EARRING = range(11)
_LAYERS = 11
_FACE_LAYERS = (_SKIN, _NOSE, _BROW, _SCLERA, _IRIS, _MOLE)   # the identity region
_MOUTH_Y = 0.245            # mouth centre below the face centre
_PATCH_AX, _PATCH_AY = 0.19, 0.15   # mouth patch half-axes (task region for expression)
_FACE_CY = 0.53            # face centre height (image fraction), before pose jitter
# Earring colour classes (the small-region task): saturated, far from skin, hair and each other.
_EARRING_RGB = np.array([[0.85, 0.10, 0.12], [0.10, 0.70, 0.20], [0.12, 0.25, 0.90],
                         [0.95, 0.85, 0.10]], np.float32)


@dataclasses.dataclass(frozen=True)
class SynthFacesSpec:
    """What to generate. Identities derive from ``seed`` only (shared by splits)."""

    task: str = "hair"          # "hair" (4 hair colours) | "expression" (3 mouth shapes) | "earring" (4 colours)
    image_size: int = 64        # square images, 32..256; all geometry scales with it
    num_identities: int = 20
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASK_CLASSES:
            raise ValueError(f"SynthFaces task must be one of {sorted(TASK_CLASSES)}, got {self.task!r}")
        if not isinstance(self.image_size, (int, np.integer)) or not 32 <= self.image_size <= 256:
            raise ValueError(f"SynthFaces image_size must be an int in [32, 256], got {self.image_size!r}")
        if not isinstance(self.num_identities, (int, np.integer)) or self.num_identities < 1:
            raise ValueError(f"SynthFaces num_identities must be a positive int, got {self.num_identities!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"SynthFaces seed must be a non-negative int, got {self.seed!r}")


def _skin_tone(t, rng, n):
    """Skin colours along a light..dark axis with a small per-sample hue tilt."""
    rgb = _SKIN_LIGHT * (1 - t[:, None]) + _SKIN_DARK * t[:, None]
    tilt = rng.uniform(-0.04, 0.04, n).astype(np.float32)
    return np.clip(rgb + tilt[:, None] * np.array([1, 0, -1], np.float32), 0, 1)


def _identities(spec: SynthFacesSpec) -> dict[str, np.ndarray]:
    """Per-identity face attributes; they depend on spec.seed only (shared by all splits)."""
    n = spec.num_identities
    rng = np.random.default_rng([spec.seed, 0])
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n, *shape)).astype(np.float32)
    # Stratified skin tones spread the identities over the whole range.
    tone = (rng.permutation(n) + rng.uniform(0.1, 0.9, n)) / n
    skin = _skin_tone(tone.astype(np.float32), rng, n)
    iris = _IRIS_RGB[rng.integers(0, len(_IRIS_RGB), n)] * u(0.8, 1.2, 1)
    mole_side = rng.choice([-1.0, 1.0], n).astype(np.float32)
    return dict(
        skin=skin, nose_rgb=skin * u(0.72, 0.88, 1), brow_rgb=skin * u(0.15, 0.45, 1),
        iris=np.clip(iris, 0, 1), face_ax=u(0.26, 0.31), face_ay=u(0.33, 0.39),
        eye_dx=u(0.085, 0.13), eye_dy=u(-0.045, -0.02), eye_r=u(0.028, 0.05),
        brow_gap=u(0.05, 0.065), brow_len=u(0.045, 0.07), brow_thick=u(0.012, 0.03),
        brow_tilt=u(-0.2, 0.2), nose_len=u(0.05, 0.10), nose_w=u(0.025, 0.055),
        has_mole=(rng.random(n) < 0.6), mole_dx=mole_side * u(0.08, 0.2), mole_dy=u(0.0, 0.07),
        mole_r=u(0.014, 0.024))


def _block_size(image_size: int) -> int:
    # ~128K pixels per block keeps the temporaries cache-sized (measured fastest);
    # also the unit of seed derivation.
    return max(8, 2 ** 17 // image_size ** 2)


def _render_block(rng, n, size, ids, earring_rng=None):
    """Renders n images. Returns (image uint8, hair_class, mouth_class, earring_class, identity, layer map).

    ``earring_rng``: draw and paint an earring per image from this stream (the
    earring task); None: no earring, and earring_class is None.
    """
    f32 = np.float32
    u = lambda lo, hi: rng.uniform(lo, hi, (n, 1, 1)).astype(f32)
    identity = rng.integers(0, len(ids["skin"]), n)
    hair_class = rng.integers(0, len(_HAIR_RGB), n)
    mouth_class = rng.integers(0, 3, n)
    g = lambda key: ids[key][identity].reshape(n, 1, 1)      # identity attribute per image
    x = ((np.arange(size, dtype=f32) + 0.5) / size).reshape(1, 1, size)
    y = x.reshape(1, size, 1)
    # Per-image pose: shift of about +-2 px at 64 px, small scale change.
    s = u(0.95, 1.05)
    du = (x - 0.5 - u(-0.03, 0.03)) / s          # face-centred coordinates in face units
    dv = (y - _FACE_CY - u(-0.03, 0.03)) / s
    layer = np.zeros((n, size, size), np.uint8)

    def paint(mask, lid):
        layer[mask] = lid

    # Face and its identity features.
    paint((du / g("face_ax")) ** 2 + (dv / g("face_ay")) ** 2 <= 1, _SKIN)
    nose_t = (dv - g("eye_dy") - 0.01) / g("nose_len")       # 0 at the bridge, 1 at the tip
    paint((nose_t >= 0) & (nose_t <= 1) & (np.abs(du) <= g("nose_w") * nose_t), _NOSE)
    # Both eyes and brows at once via |du| (mirror-symmetric; they never cross the midline).
    ex, ey, r = np.abs(du) - g("eye_dx"), dv - g("eye_dy"), g("eye_r")
    brow_v = dv - (g("eye_dy") - g("brow_gap")) - g("brow_tilt") * ex
    paint((np.abs(ex) <= g("brow_len")) & (np.abs(brow_v) <= g("brow_thick") / 2), _BROW)
    sclera = (ex / (1.3 * r)) ** 2 + (ey / (0.85 * r)) ** 2 <= 1
    paint(sclera, _SCLERA)
    paint(sclera & (ex ** 2 + ey ** 2 <= (0.7 * r) ** 2), _IRIS)
    mole = (du - g("mole_dx")) ** 2 + (dv - g("mole_dy")) ** 2 <= g("mole_r") ** 2
    paint(mole & ids["has_mole"][identity].reshape(n, 1, 1), _MOLE)

    # Mouth patch: identity-free skin tone, fixed shape around the mouth.
    mu, mv = du, dv - _MOUTH_Y
    paint((mu / _PATCH_AX) ** 2 + (mv / _PATCH_AY) ** 2 <= 1, _PATCH)
    half_w, thick = u(0.07, 0.10), u(0.02, 0.026)
    curve = np.where(mouth_class == 1, rng.uniform(0.04, 0.06, n), 0).astype(f32).reshape(n, 1, 1)
    tilt = u(-0.1, 0.1)
    # Neutral (curve 0) is a straight line, happy a smile parabola (corners up).
    line_v = curve * (0.5 - (mu / half_w) ** 2) + tilt * mu
    slope = -2 * curve * mu / half_w ** 2 + tilt
    stroke = (np.abs(mu) <= half_w) & (np.abs(mv - line_v) <= 0.5 * thick * np.sqrt(1 + slope ** 2))
    open_o = (mu / (0.45 * half_w)) ** 2 + (mv / (0.6 * half_w)) ** 2 <= 1
    is_o = (mouth_class == 2).reshape(n, 1, 1)
    paint(np.where(is_o, open_o, stroke), _MOUTH)

    # Hair: cap + fringe + side locks, all per-image random (never the identity's
    # outline), painted over the face, so the hair mask is independent of identity.
    cap_cy, cap_rx, cap_ry = -u(0.05, 0.08), u(0.38, 0.41), u(0.35, 0.38)
    cap = (du / cap_rx) ** 2 + ((dv - cap_cy) / cap_ry) ** 2 <= 1
    period, phase = u(0.06, 0.12), u(0, np.pi)
    fringe = -u(0.175, 0.20) + u(0, 0.025) * np.abs(np.sin(np.pi * du / period + phase))
    adu = np.abs(du)
    lock_in, lock_out = u(0.21, 0.24), cap_rx - u(0, 0.02)
    lock_bottom = u(0.13, 0.22) + u(-0.3, 0.3) * (adu - lock_in)
    locks = (adu >= lock_in) & (adu <= lock_out) & (cap | (dv >= cap_cy)) & (dv <= lock_bottom)
    paint((cap & (dv <= fringe)) | locks, _HAIR)
    earring_class = None
    if earring_rng is not None:
        # Beside the face at ear height, on a random side, outside every face ellipse (|du| − r ≥
        # 0.33 > the widest face's 0.31): task pixels never cover identity pixels.
        e = lambda lo, hi: earring_rng.uniform(lo, hi, (n, 1, 1)).astype(f32)
        earring_class = earring_rng.integers(0, len(_EARRING_RGB), n)
        side = earring_rng.choice([-1.0, 1.0], (n, 1, 1)).astype(f32)
        ex_c, ey_c, er = side * e(0.39, 0.43), e(0.02, 0.14), e(0.05, 0.065)
        paint((du - ex_c) ** 2 + (dv - ey_c) ** 2 <= er ** 2, _EARRING)
    is_hair, is_bg = layer == _HAIR, layer == _BG

    # Colours of every layer per image, gathered through the layer map (channel-first).
    palette = np.zeros((n, _LAYERS, 3), f32)
    palette[:, _SKIN], palette[:, _NOSE] = ids["skin"][identity], ids["nose_rgb"][identity]
    palette[:, _BROW], palette[:, _IRIS] = ids["brow_rgb"][identity], ids["iris"][identity]
    palette[:, _SCLERA] = 0.95
    palette[:, _MOLE] = ids["skin"][identity] * 0.45
    palette[:, _PATCH] = _skin_tone(rng.uniform(0, 1, n).astype(f32), rng, n)
    palette[:, _MOUTH] = np.array([0.45, 0.08, 0.10], f32) * rng.uniform(0.8, 1.1, (n, 1))
    shade = rng.uniform(0.88, 1.12, (n, 1)) + rng.uniform(-0.03, 0.03, (n, 3))
    palette[:, _HAIR] = np.clip(_HAIR_RGB[hair_class] * shade, 0, 1)
    if earring_class is not None:
        palette[:, _EARRING] = np.clip(_EARRING_RGB[earring_class] * earring_rng.uniform(0.9, 1.1, (n, 1)), 0, 1)
    flat = layer + _LAYERS * np.arange(n)[:, None, None]     # intp: np.take needs no conversion

    # Background: smooth random colour field (bilinear upsampling of a random 4x4 grid).
    grid = rng.uniform(0.15, 0.9, (3, n, 1, 1)) + rng.uniform(-0.25, 0.25, (3, n, 4, 4))
    weights = np.maximum(0, 1 - np.abs(x.reshape(size, 1) * 3 - np.arange(4))).astype(f32)
    background = weights @ grid.astype(f32) @ weights.T                     # (3, n, S, S)

    # Brightness: global lighting (same factor everywhere, so it carries nothing)
    # times wavy hair strands; separable: sin(a + b) = sin a cos b + cos a sin b.
    a = 2 * np.pi * u(12, 20) * du + u(0, 6.3)
    b = 0.8 * np.pi * np.sin(4 * np.pi * dv + u(0, 2 * np.pi))
    strands = np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b)
    bright = u(0.85 * 255, 1.15 * 255) * np.where(is_hair, 1 + 0.1 * strands, 1)
    # Sensor noise in grey levels, cheap and near-Gaussian: two uniform integers
    # from one random byte, std 5.15 (0.02); doubled on hair as fine texture grain.
    raw = np.frombuffer(rng.bytes(3 * layer.size), np.uint8).reshape(3, *layer.shape)
    noise = ((raw & 15) + (raw >> 5)).astype(f32) - f32(10.5)   # mean 11, less 0.5 to round
    noise *= np.where(is_hair, f32(2), f32(1))
    image = np.empty((n, size, size, 3), np.uint8)
    channel = np.empty(layer.shape, f32)
    for c in range(3):
        np.take(palette[:, :, c].ravel(), flat, out=channel, mode="wrap")  # unbuffered
        np.copyto(channel, background[c], where=is_bg)
        channel *= bright
        channel += noise[c]
        image[..., c] = np.clip(channel, 0, 255, out=channel)
    return image, hair_class, mouth_class, earring_class, identity, layer


_TASK_LAYERS = {"hair": (_HAIR,), "expression": (_PATCH, _MOUTH), "earring": (_EARRING,)}


def generate(spec: SynthFacesSpec, split: str, num_images: int) -> dict[str, np.ndarray]:
    """Returns {'image': uint8 (N,S,S,3), 'label': int32 (N,), 'identity': int32 (N,),
    'task_mask': bool (N,S,S), 'identity_mask': bool (N,S,S)}.

    Deterministic in (spec, split, num_images); the splits use different derived
    seeds; identities (their face attributes) derive from spec.seed only.
    """
    if split not in SPLITS:
        raise ValueError(f"SynthFaces split must be one of {SPLITS}, got {split!r}")
    if int(num_images) < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    num_images, size = int(num_images), spec.image_size
    ids, block = _identities(spec), _block_size(size)
    out = {"image": np.empty((num_images, size, size, 3), np.uint8),
           "label": np.empty(num_images, np.int32), "identity": np.empty(num_images, np.int32),
           "task_mask": np.empty((num_images, size, size), bool),
           "identity_mask": np.empty((num_images, size, size), bool)}
    for b, start in enumerate(range(0, num_images, block)):
        n = min(block, num_images - start)
        # A full block is always drawn so that the stream per block never depends on N.
        rng = np.random.default_rng([spec.seed, 1 + SPLITS.index(split), b])
        earring_rng = (np.random.default_rng([spec.seed, 1 + SPLITS.index(split), b, 1])
                       if spec.task == "earring" else None)
        image, hair_class, mouth_class, earring_class, identity, layer = _render_block(
            rng, block, size, ids, earring_rng)
        sl = slice(start, start + n)
        out["image"][sl] = image[:n]
        out["label"][sl] = {"hair": hair_class, "expression": mouth_class, "earring": earring_class}[spec.task][:n]
        out["identity"][sl] = identity[:n]
        task_layers = _TASK_LAYERS[spec.task]
        out["task_mask"][sl] = np.isin(layer[:n], task_layers)
        out["identity_mask"][sl] = np.isin(layer[:n], _FACE_LAYERS)
    return out


def task_region_fraction(spec: SynthFacesSpec, num_images: int = 512, statistic: str = "mean") -> float:
    """The fraction of image pixels inside the task region, over generated train images: its
    ``"mean"`` or its ``"max"`` (the K at which every image's task region fits in the reveal)."""
    masks = generate(spec, "train", num_images)["task_mask"]
    per_image = masks.reshape(len(masks), -1).mean(axis=1)
    if statistic not in ("mean", "max"):
        raise ValueError(f"statistic={statistic!r}: expected 'mean' or 'max'")
    return float(per_image.mean() if statistic == "mean" else per_image.max())


class SynthFacesSource:
    """grain-compatible random-access source over ``generate``'s arrays.

    Records: 'image' float32 HWC in [0, 1], 'label' and 'identity' int32 scalars,
    'task_mask' and 'identity_mask' bool (S, S).
    """

    def __init__(self, spec: SynthFacesSpec = SynthFacesSpec(), split: str = "train",
                 num_images: int = 1000, arrays: dict[str, np.ndarray] | None = None):
        self.spec, self.split = spec, split
        self.arrays = arrays if arrays is not None else generate(spec, split, num_images)

    def __len__(self) -> int:
        return len(self.arrays["label"])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        a = self.arrays
        return {"image": a["image"][index].astype(np.float32) / 255.0,
                "label": a["label"][index], "identity": a["identity"][index],
                "task_mask": a["task_mask"][index], "identity_mask": a["identity_mask"][index]}

    def __repr__(self) -> str:
        return f"SynthFacesSource({self.spec}, split={self.split!r}, len={len(self)})"
